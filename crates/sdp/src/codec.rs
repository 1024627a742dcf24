//! The audio codecs baton speaks and how offered payload types map onto them.

use std::fmt;

/// Dynamic payload type we use for `telephone-event/8000` in our own offers.
pub(crate) const TELEPHONE_EVENT_PT_8000: u8 = 101;
/// Dynamic payload type we use for `telephone-event/48000` in our own offers.
pub(crate) const TELEPHONE_EVENT_PT_48000: u8 = 110;
/// Events we can receive: DTMF 0-9, *, #, A-D (0-15) and flash (16), RFC 4733 §3.2.
pub(crate) const TELEPHONE_EVENT_FMTP: &str = "0-16";
/// RFC 4733's encoding name.
pub(crate) const TELEPHONE_EVENT: &str = "telephone-event";

/// An audio codec baton can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// Opus (RFC 7587), always signalled as `opus/48000/2` on a dynamic payload type.
    Opus,
}

impl Codec {
    /// Every codec baton supports.
    pub const ALL: [Codec; 3] = [Self::Pcmu, Self::Pcma, Self::Opus];

    /// Encoding name as written in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::Opus => "opus",
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::Opus => 48000,
        }
    }

    /// Channel count as signalled in `a=rtpmap` (RFC 7587 mandates 2 for Opus).
    pub fn channels(self) -> u8 {
        match self {
            Self::Pcmu | Self::Pcma => 1,
            Self::Opus => 2,
        }
    }

    /// Payload type we put in our own offers (the static one where it exists).
    pub fn offer_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
            Self::Opus => 111,
        }
    }

    /// Format parameters we declare for what we are willing to receive.
    pub(crate) fn local_fmtp(self) -> Option<&'static str> {
        match self {
            Self::Pcmu | Self::Pcma => None,
            Self::Opus => Some("minptime=10;useinbandfec=1"),
        }
    }

    /// Recognises an offered encoding as one of ours. Names compare case-insensitively
    /// (RFC 4855 §3); Opus is accepted whatever channel count a sloppy peer writes.
    pub fn from_encoding(encoding: &Encoding) -> Option<Self> {
        Self::ALL.into_iter().find(|c| {
            encoding.name.eq_ignore_ascii_case(c.name())
                && encoding.clock_rate == c.clock_rate()
                && (*c == Self::Opus || encoding.channels == 1)
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name(), self.clock_rate())?;
        if self.channels() != 1 {
            write!(f, "/{}", self.channels())?;
        }
        Ok(())
    }
}

/// What a payload type stands for: encoding name, clock rate and channel count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Encoding name as the peer wrote it (`PCMU`, `opus`, `telephone-event`).
    pub name: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count (1 when `a=rtpmap` gives none).
    pub channels: u8,
}

impl Encoding {
    /// True for RFC 4733 named telephone events (DTMF).
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case(TELEPHONE_EVENT)
    }

    /// The RFC 3551 static assignment, used when an offer lists a static payload type
    /// without `a=rtpmap` (SIPp, older carriers).
    pub(crate) fn from_static_payload_type(payload_type: u8) -> Option<Self> {
        let (name, clock_rate) = match payload_type {
            0 => ("PCMU", 8000),
            3 => ("GSM", 8000),
            4 => ("G723", 8000),
            5 => ("DVI4", 8000),
            6 => ("DVI4", 16000),
            7 => ("LPC", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            15 => ("G728", 8000),
            18 => ("G729", 8000),
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            clock_rate,
            channels: 1,
        })
    }
}

/// One payload type of the remote audio stream, in the order the peer listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePayload {
    /// RTP payload type number (0..=127).
    pub payload_type: u8,
    /// From `a=rtpmap`, else the static assignment; `None` for an unmapped dynamic type.
    pub encoding: Option<Encoding>,
    /// The `a=fmtp` parameters for this payload type, verbatim.
    pub fmtp: Option<String>,
}

impl RemotePayload {
    /// The codec of ours this payload type carries, if any.
    pub fn codec(&self) -> Option<Codec> {
        self.encoding.as_ref().and_then(Codec::from_encoding)
    }

    /// True when this payload type carries telephone events at `clock_rate`.
    pub(crate) fn is_telephone_event_at(&self, clock_rate: u32) -> bool {
        self.encoding
            .as_ref()
            .is_some_and(|e| e.is_telephone_event() && e.clock_rate == clock_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(name: &str, clock_rate: u32, channels: u8) -> Encoding {
        Encoding {
            name: name.to_owned(),
            clock_rate,
            channels,
        }
    }

    #[test]
    fn recognises_our_codecs_case_insensitively() {
        assert_eq!(
            Codec::from_encoding(&enc("pcmu", 8000, 1)),
            Some(Codec::Pcmu)
        );
        assert_eq!(
            Codec::from_encoding(&enc("PCMA", 8000, 1)),
            Some(Codec::Pcma)
        );
        assert_eq!(
            Codec::from_encoding(&enc("OPUS", 48000, 2)),
            Some(Codec::Opus)
        );
    }

    #[test]
    fn rejects_wrong_rate_or_channels() {
        assert_eq!(Codec::from_encoding(&enc("PCMU", 16000, 1)), None);
        assert_eq!(Codec::from_encoding(&enc("PCMU", 8000, 2)), None);
        assert_eq!(Codec::from_encoding(&enc("opus", 16000, 2)), None);
        assert_eq!(Codec::from_encoding(&enc("G729", 8000, 1)), None);
    }

    #[test]
    fn static_payload_types_resolve_without_rtpmap() {
        let pcmu = Encoding::from_static_payload_type(0).map(|e| Codec::from_encoding(&e));
        assert_eq!(pcmu, Some(Some(Codec::Pcmu)));
        let pcma = Encoding::from_static_payload_type(8).map(|e| Codec::from_encoding(&e));
        assert_eq!(pcma, Some(Some(Codec::Pcma)));
        assert_eq!(Encoding::from_static_payload_type(96), None);
    }

    #[test]
    fn codec_display_matches_rtpmap_form() {
        assert_eq!(Codec::Pcmu.to_string(), "PCMU/8000");
        assert_eq!(Codec::Opus.to_string(), "opus/48000/2");
    }
}
