//! baton: a SIP endpoint for carrier trunks where a voice bot and human agents share one call.
//!
//! IO lives at the edges ([`transport`], [`server`]); the protocol state machines are in the
//! `baton-sip`, `baton-sdp` and `baton-media` crates; [`endpoint`] is the SIP user agent
//! core and [`call`] the per-call media task.

pub mod agents;
pub mod api;
pub mod call;
pub mod calls;
pub mod config;
pub mod context;
pub mod desk;
pub mod desktop;
pub mod dialog;
pub mod dialplan;
pub mod endpoint;
pub mod escalation;
pub mod followup;
pub mod metrics;
pub mod outbound;
pub mod plans;
pub mod ratelimit;
pub mod reports;
pub mod routing;
pub mod rtp_ports;
pub mod server;
pub mod speech;
pub mod transfer;
pub mod transport;
pub mod tts;
