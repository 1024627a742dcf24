//! Sans-IO SIP (RFC 3261) for baton: typed messages, a parser and serializer, transactions
//! and dialogs driven by inputs and an explicit clock. No sockets, no wall clock.
//!
//! Layers, bottom up: [`message`] (types), [`parse`] and [`mod@write`] (wire format),
//! [`transaction`] (RFC 3261 §17 + RFC 6026 state machines), [`dialog`] (RFC 3261 §12).

pub mod auth;
pub mod build;
pub mod dialog;
pub mod message;
pub mod parse;
pub mod transaction;
pub mod uri;
pub mod write;

pub use message::*;
