//! SDP offer/answer (RFC 3264) for baton's audio legs.
//!
//! Parsing and serialising lean on `ezk-sdp-types`; choosing a codec, answering directions,
//! rejecting extra streams and versioning `o=` are ours. A leg carries exactly one audio
//! stream over plain RTP (RTP/AVP or RTP/AVPF); every other m-line is answered with port 0.
//!
//! Typical use on an incoming INVITE with SDP:
//! [`RemoteDescription::parse`] the body, [`answer`] it against our [`LocalMedia`], then
//! [`SdpSession::write`] the answer's [`LocalDescription`] into the 200 OK and hand the
//! [`Negotiated`] result to the media layer.

mod codec;
mod direction;
mod negotiate;
mod parse;
mod session;

pub use codec::{Codec, Encoding, RemotePayload};
pub use direction::Direction;
pub use ezk_sdp_types::SrtpCrypto;
pub use negotiate::{
    accept_answer, answer, offer, Answer, AudioSection, LocalDescription, LocalMedia, MediaSection,
    Negotiated, NegotiatedCodec, NegotiationError, PayloadFormat, TelephoneEvent,
};
pub use parse::{Field, ParseError, RemoteAudio, RemoteDescription, RemoteMedia, MAX_SDP_LEN};
pub use session::SdpSession;
