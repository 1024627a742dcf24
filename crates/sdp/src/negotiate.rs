//! RFC 3264 offer/answer for one audio stream: answering offers, making offers (delayed
//! offer and our re-INVITEs) and accepting the answers to them.

use std::net::{IpAddr, SocketAddr};

use crate::codec::{
    Codec, RemotePayload, TELEPHONE_EVENT, TELEPHONE_EVENT_FMTP, TELEPHONE_EVENT_PT_48000,
    TELEPHONE_EVENT_PT_8000,
};
use crate::direction::Direction;
use crate::parse::{RemoteAudio, RemoteDescription};

/// Packetisation interval we use when the peer states none.
const DEFAULT_PTIME_MS: u32 = 20;
/// A peer's `a=ptime` outside this range is ignored rather than obeyed.
const PTIME_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=120;

/// Our side of an audio leg: where we receive, what we accept, whether we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address written in `c=` and `o=`: where the peer sends RTP to us.
    pub address: IpAddr,
    /// Our RTP port; RTCP is on the next port up.
    pub rtp_port: u16,
    /// Codecs we accept, most preferred first (the order of our own offers).
    pub codecs: Vec<Codec>,
    /// Whether we accept RFC 4733 telephone events (DTMF).
    pub telephone_event: bool,
    /// Packetisation interval we ask for, in milliseconds.
    pub ptime_ms: u32,
    /// Our hold state: `SendRecv` normally, `SendOnly` or `Inactive` while we hold the peer.
    pub direction: Direction,
}

impl LocalMedia {
    /// PCMU, PCMA and Opus in that order, DTMF on, 20 ms, sendrecv.
    pub fn new(address: IpAddr, rtp_port: u16) -> Self {
        Self {
            address,
            rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            telephone_event: true,
            ptime_ms: DEFAULT_PTIME_MS,
            direction: Direction::SendRecv,
        }
    }
}

/// One payload type we list in an audio m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    /// RTP payload type number.
    pub payload_type: u8,
    /// Encoding name for `a=rtpmap`.
    pub name: &'static str,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count (written in `a=rtpmap` only when not 1).
    pub channels: u8,
    /// Our `a=fmtp` parameters, if any.
    pub fmtp: Option<&'static str>,
}

impl PayloadFormat {
    fn codec(codec: Codec, payload_type: u8) -> Self {
        Self {
            payload_type,
            name: codec.name(),
            clock_rate: codec.clock_rate(),
            channels: codec.channels(),
            fmtp: codec.local_fmtp(),
        }
    }

    /// Which of our codecs this format is, if it is not telephone-event.
    pub fn as_codec(&self) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == self.name && c.clock_rate() == self.clock_rate)
    }

    fn telephone_event(payload_type: u8, clock_rate: u32) -> Self {
        Self {
            payload_type,
            name: TELEPHONE_EVENT,
            clock_rate,
            channels: 1,
            fmtp: Some(TELEPHONE_EVENT_FMTP),
        }
    }
}

/// Our audio m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSection {
    /// Our RTP port.
    pub port: u16,
    /// `RTP/AVP`, or `RTP/AVPF` when answering an AVPF offer.
    pub proto: String,
    /// Payload types in our order.
    pub formats: Vec<PayloadFormat>,
    /// `a=ptime` in milliseconds.
    pub ptime_ms: u32,
    /// Our direction attribute.
    pub direction: Direction,
}

/// One m-line of a description we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSection {
    /// The audio stream.
    Audio(AudioSection),
    /// A stream we decline: written with port 0, echoing the offer's type, proto and formats.
    Rejected {
        /// Media type token as offered.
        media: String,
        /// Transport protocol token as offered.
        proto: String,
        /// Format tokens as offered.
        formats: Vec<String>,
    },
}

/// A description we send (offer or answer), before `o=` versioning by [`crate::SdpSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDescription {
    /// Address for `c=` and `o=`.
    pub address: IpAddr,
    /// m-lines in order.
    pub media: Vec<MediaSection>,
}

impl LocalDescription {
    /// Our audio m-line and its index, if there is one.
    pub fn audio(&self) -> Option<(usize, &AudioSection)> {
        self.media.iter().enumerate().find_map(|(i, m)| match m {
            MediaSection::Audio(a) => Some((i, a)),
            MediaSection::Rejected { .. } => None,
        })
    }

    /// The same description with our audio direction changed: the re-offer for hold
    /// (`SendOnly`/`Inactive`) or unhold (`SendRecv`). It keeps every m-line and the
    /// negotiated payload types, as RFC 3264 §8 asks of a new offer.
    pub fn with_direction(&self, direction: Direction) -> Self {
        let mut next = self.clone();
        for section in &mut next.media {
            if let MediaSection::Audio(audio) = section {
                audio.direction = direction;
            }
        }
        next
    }
}

/// The codec both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// Which of our codecs it is.
    pub codec: Codec,
    /// Payload type to send and expect (the offerer's number).
    pub payload_type: u8,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count as signalled.
    pub channels: u8,
    /// The peer's `a=fmtp` for it, which constrains what we send (e.g. Opus `stereo=0`).
    pub fmtp: Option<String>,
}

impl NegotiatedCodec {
    /// Encoding name (`PCMU`, `PCMA`, `opus`).
    pub fn name(&self) -> &'static str {
        self.codec.name()
    }
}

/// The agreed RFC 4733 telephone-event payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Payload type number.
    pub payload_type: u8,
    /// Clock rate in Hz (the audio codec's).
    pub clock_rate: u32,
}

/// What the media layer needs once offer and answer agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP (unspecified IP when the peer holds us RFC 2543 style).
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP.
    pub remote_rtcp: SocketAddr,
    /// The audio codec.
    pub codec: NegotiatedCodec,
    /// DTMF payload type, when both sides do RFC 4733.
    pub telephone_event: Option<TelephoneEvent>,
    /// Packetisation interval to send with, in milliseconds (the peer's wish, else ours).
    pub ptime_ms: u32,
    /// Our direction after negotiation.
    pub direction: Direction,
}

impl Negotiated {
    /// True when we may send RTP.
    pub fn can_send(&self) -> bool {
        self.direction.sends()
    }

    /// True when we should expect RTP.
    pub fn can_receive(&self) -> bool {
        self.direction.receives()
    }
}

/// Our answer to an offer: the description to send and the agreed parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The description to write into the 200 OK (or ACK/PRACK).
    pub description: LocalDescription,
    /// What the media layer should use.
    pub negotiated: Negotiated,
}

/// Why offer and answer could not agree; [`NegotiationError::warning_code`] gives the
/// RFC 3261 §20.43 code for the 488's Warning header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// No `m=audio` line with a non-zero port.
    #[error("no active audio stream")]
    NoAudio,
    /// The audio stream uses a transport we do not speak (SRTP, DTLS, ...).
    #[error("audio transport {proto} is not supported; RTP/AVP and RTP/AVPF are")]
    UnsupportedTransport {
        /// The offered transport token.
        proto: String,
    },
    /// None of the offered payload types is a codec we accept.
    #[error("no common audio codec; we accept {}", list(.accepted))]
    NoCommonCodec {
        /// What we accept, for the 488's Warning text or SDP.
        accepted: Vec<Codec>,
    },
    /// The answer does not mirror our offer's m-lines (RFC 3264 §6).
    #[error("answer has {answered} media lines where the offer had {offered}")]
    MediaLineCount {
        /// m-lines in our offer.
        offered: usize,
        /// m-lines in the answer.
        answered: usize,
    },
    /// The answer declined our audio stream (port 0 or another media type in its place).
    #[error("the answer rejected the audio stream")]
    AudioRejected,
}

impl NegotiationError {
    /// Warning code (RFC 3261 §20.43) to send with a 488.
    pub fn warning_code(&self) -> u16 {
        match self {
            Self::NoAudio => 304,
            Self::UnsupportedTransport { .. } => 302,
            Self::NoCommonCodec { .. } => 305,
            Self::MediaLineCount { .. } | Self::AudioRejected => 399,
        }
    }
}

fn list(codecs: &[Codec]) -> String {
    let names: Vec<String> = codecs.iter().map(Codec::to_string).collect();
    names.join(", ")
}

/// Answers a peer's offer (RFC 3264 §6): the offerer's codec preference wins among those we
/// accept, its payload type numbers are kept, every other m-line is rejected in place, and
/// the direction is the mirror of the offer's, limited by our own hold state.
pub fn answer(offer: &RemoteDescription, local: &LocalMedia) -> Result<Answer, NegotiationError> {
    let audio = offer.audio.as_ref().ok_or(NegotiationError::NoAudio)?;
    if !is_plain_rtp(&audio.proto) {
        return Err(NegotiationError::UnsupportedTransport {
            proto: audio.proto.clone(),
        });
    }
    let (payload, codec) = audio
        .payloads
        .iter()
        .find_map(|p| {
            p.codec()
                .filter(|c| local.codecs.contains(c))
                .map(|c| (p, c))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            accepted: local.codecs.clone(),
        })?;
    let telephone_event = local
        .telephone_event
        .then(|| find_telephone_event(&audio.payloads, codec))
        .flatten();

    let remote = audio.effective_direction();
    let direction = Direction::from_flags(
        remote.receives() && local.direction.sends(),
        remote.sends() && local.direction.receives(),
    );

    let mut formats = vec![PayloadFormat::codec(codec, payload.payload_type)];
    if let Some(te) = telephone_event {
        formats.push(PayloadFormat::telephone_event(
            te.payload_type,
            te.clock_rate,
        ));
    }
    let ours = AudioSection {
        port: local.rtp_port,
        proto: audio.proto.clone(),
        formats,
        ptime_ms: local.ptime_ms,
        direction,
    };
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(index, m)| {
            if index == audio.index {
                MediaSection::Audio(ours.clone())
            } else {
                MediaSection::Rejected {
                    media: m.media.clone(),
                    proto: m.proto.clone(),
                    formats: m.formats.clone(),
                }
            }
        })
        .collect();

    Ok(Answer {
        description: LocalDescription {
            address: local.address,
            media,
        },
        negotiated: negotiated(
            audio,
            payload,
            codec,
            telephone_event,
            local.ptime_ms,
            direction,
        ),
    })
}

/// Our offer: one audio m-line listing our codecs in preference order, plus
/// telephone-event at each clock rate in use. Used for delayed offer (INVITE without SDP)
/// and for our first INVITE to a peer; re-offers within a dialog use
/// [`LocalDescription::with_direction`] on the last description instead.
pub fn offer(local: &LocalMedia) -> LocalDescription {
    let mut formats: Vec<PayloadFormat> = local
        .codecs
        .iter()
        .map(|c| PayloadFormat::codec(*c, c.offer_payload_type()))
        .collect();
    if local.telephone_event {
        if local.codecs.iter().any(|c| c.clock_rate() == 8000) {
            formats.push(PayloadFormat::telephone_event(
                TELEPHONE_EVENT_PT_8000,
                8000,
            ));
        }
        if local.codecs.contains(&Codec::Opus) {
            formats.push(PayloadFormat::telephone_event(
                TELEPHONE_EVENT_PT_48000,
                48000,
            ));
        }
    }
    LocalDescription {
        address: local.address,
        media: vec![MediaSection::Audio(AudioSection {
            port: local.rtp_port,
            proto: "RTP/AVP".to_owned(),
            formats,
            ptime_ms: local.ptime_ms,
            direction: local.direction,
        })],
    }
}

/// Checks the answer to our offer and extracts what was agreed. The codec is the first of
/// the answer's payload types that we offered; its number is the answerer's.
pub fn accept_answer(
    our_offer: &LocalDescription,
    answer: &RemoteDescription,
) -> Result<Negotiated, NegotiationError> {
    let (index, ours) = our_offer.audio().ok_or(NegotiationError::NoAudio)?;
    if answer.media.len() != our_offer.media.len() {
        return Err(NegotiationError::MediaLineCount {
            offered: our_offer.media.len(),
            answered: answer.media.len(),
        });
    }
    let audio = answer
        .audio
        .as_ref()
        .filter(|a| a.index == index)
        .ok_or(NegotiationError::AudioRejected)?;
    let offered: Vec<Codec> = ours
        .formats
        .iter()
        .filter_map(PayloadFormat::as_codec)
        .collect();
    let (payload, codec) = audio
        .payloads
        .iter()
        .find_map(|p| p.codec().filter(|c| offered.contains(c)).map(|c| (p, c)))
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            accepted: offered.clone(),
        })?;
    let we_offered_events = ours.formats.iter().any(|f| f.name == TELEPHONE_EVENT);
    let telephone_event = we_offered_events
        .then(|| find_telephone_event(&audio.payloads, codec))
        .flatten();

    let remote = audio.effective_direction();
    let direction = Direction::from_flags(
        remote.receives() && ours.direction.sends(),
        remote.sends() && ours.direction.receives(),
    );
    Ok(negotiated(
        audio,
        payload,
        codec,
        telephone_event,
        ours.ptime_ms,
        direction,
    ))
}

fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The peer's telephone-event at the codec's clock rate: RFC 4733 §2.1 ties event
/// timestamps to the audio clock, so a mismatched rate is not used.
fn find_telephone_event(payloads: &[RemotePayload], codec: Codec) -> Option<TelephoneEvent> {
    payloads
        .iter()
        .find(|p| p.is_telephone_event_at(codec.clock_rate()))
        .map(|p| TelephoneEvent {
            payload_type: p.payload_type,
            clock_rate: codec.clock_rate(),
        })
}

fn negotiated(
    audio: &RemoteAudio,
    payload: &RemotePayload,
    codec: Codec,
    telephone_event: Option<TelephoneEvent>,
    local_ptime_ms: u32,
    direction: Direction,
) -> Negotiated {
    let channels = payload
        .encoding
        .as_ref()
        .map_or(codec.channels(), |e| e.channels);
    Negotiated {
        remote_rtp: audio.rtp,
        remote_rtcp: audio.rtcp,
        codec: NegotiatedCodec {
            codec,
            payload_type: payload.payload_type,
            clock_rate: codec.clock_rate(),
            channels,
            fmtp: payload.fmtp.clone(),
        },
        telephone_event,
        ptime_ms: audio
            .ptime_ms
            .filter(|p| PTIME_RANGE_MS.contains(p))
            .unwrap_or(local_ptime_ms),
        direction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SdpSession;

    fn local() -> LocalMedia {
        LocalMedia::new([198, 51, 100, 7].into(), 40000)
    }

    fn remote(text: &str) -> RemoteDescription {
        RemoteDescription::parse(text.as_bytes()).expect("test SDP parses")
    }

    fn audio_of(description: &LocalDescription) -> &AudioSection {
        description.audio().expect("audio section").1
    }

    fn payload_types(description: &LocalDescription) -> Vec<u8> {
        audio_of(description)
            .formats
            .iter()
            .map(|f| f.payload_type)
            .collect()
    }

    const CARRIER: &str = "v=0\r\n\
        o=Sonus_UAC 245623 143267 IN IP4 203.0.113.10\r\n\
        s=SIP Media Capabilities\r\n\
        c=IN IP4 203.0.113.20\r\n\
        t=0 0\r\n\
        m=audio 23456 RTP/AVP 8 0 101\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=sendrecv\r\n\
        a=ptime:30\r\n";

    /// What SIPp's built-in uac scenario sends.
    const SIPP: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    /// A desktop softphone preferring Opus, with DTMF at several rates.
    const SOFTPHONE_OPUS: &str = "v=0\r\n\
        o=alice 2890 2890 IN IP4 192.0.2.33\r\n\
        s=Talk\r\n\
        c=IN IP4 192.0.2.33\r\n\
        t=0 0\r\n\
        a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
        m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 useinbandfec=1\r\n\
        a=rtpmap:97 speex/16000\r\n\
        a=fmtp:97 vbr=on\r\n\
        a=rtpmap:98 speex/8000\r\n\
        a=fmtp:98 vbr=on\r\n\
        a=rtpmap:101 telephone-event/48000\r\n\
        a=rtpmap:99 telephone-event/16000\r\n\
        a=rtpmap:100 telephone-event/8000\r\n\
        a=rtcp-fb:* trr-int 1000\r\n";

    /// A browser's offer as a WebRTC gateway relays it (ICE and DTLS stripped, AVPF kept).
    const BROWSER_LIKE: &str = "v=0\r\n\
        o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=msid-semantic: WMS\r\n\
        m=audio 50000 RTP/AVPF 9 111 63 0 8 13 110 126\r\n\
        c=IN IP4 192.0.2.50\r\n\
        a=rtcp:50001 IN IP4 192.0.2.50\r\n\
        a=mid:0\r\n\
        a=sendrecv\r\n\
        a=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=rtcp-fb:111 transport-cc\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:63 red/48000/2\r\n\
        a=fmtp:63 111/111\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:13 CN/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\n\
        a=rtpmap:126 telephone-event/8000\r\n\
        a=ssrc:1001 cname:4TOk42mSjXCkVIa6\r\n";

    /// A browser's own offer: DTLS-SRTP over ICE, which plain-RTP legs cannot take.
    const BROWSER_DTLS: &str = "v=0\r\n\
        o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        a=extmap-allow-mixed\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2113937151 192.0.2.50 54400 typ host generation 0\r\n\
        a=ice-ufrag:F7gI\r\n\
        a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
        a=fingerprint:sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:1E:15:54:39:0C:06:8B:ED:96:86:00:39\r\n\
        a=setup:actpass\r\n\
        a=mid:0\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    fn hold_offer(attribute: &str, address: &str) -> String {
        format!(
            "v=0\r\no=carrier 77 78 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n\
             m=audio 23456 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{attribute}"
        )
    }

    #[test]
    fn carrier_offer_gets_offerers_first_codec_and_dtmf() {
        let answer = answer(&remote(CARRIER), &local()).unwrap();
        // The offer prefers PCMA although we prefer PCMU: the offerer's order wins.
        assert_eq!(payload_types(&answer.description), [8, 101]);
        let n = &answer.negotiated;
        assert_eq!(n.codec.codec, Codec::Pcma);
        assert_eq!(n.codec.payload_type, 8);
        assert_eq!(n.codec.clock_rate, 8000);
        assert_eq!(
            n.telephone_event,
            Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 8000
            })
        );
        assert_eq!(n.remote_rtp, "203.0.113.20:23456".parse().unwrap());
        assert_eq!(n.remote_rtcp, "203.0.113.20:23457".parse().unwrap());
        assert_eq!(n.ptime_ms, 30);
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(n.can_send() && n.can_receive());
    }

    #[test]
    fn sipp_default_offer_is_answered_with_pcmu_only() {
        let answer = answer(&remote(SIPP), &local()).unwrap();
        assert_eq!(payload_types(&answer.description), [0]);
        assert_eq!(answer.negotiated.telephone_event, None);
        assert_eq!(answer.negotiated.ptime_ms, 20);
        assert_eq!(
            answer.negotiated.remote_rtp,
            "127.0.0.1:6000".parse().unwrap()
        );
    }

    #[test]
    fn softphone_opus_offer_keeps_dynamic_payload_types() {
        let answer = answer(&remote(SOFTPHONE_OPUS), &local()).unwrap();
        assert_eq!(payload_types(&answer.description), [96, 101]);
        let n = &answer.negotiated;
        assert_eq!(n.codec.codec, Codec::Opus);
        assert_eq!(n.codec.clock_rate, 48000);
        assert_eq!(n.codec.channels, 2);
        assert_eq!(n.codec.fmtp.as_deref(), Some("useinbandfec=1"));
        assert_eq!(n.telephone_event.map(|t| t.clock_rate), Some(48000));
    }

    #[test]
    fn our_codec_list_limits_the_choice() {
        let mut pcm_only = local();
        pcm_only.codecs = vec![Codec::Pcma, Codec::Pcmu];
        let answer = answer(&remote(SOFTPHONE_OPUS), &pcm_only).unwrap();
        // Opus is first in the offer but not ours; PCMU comes next in the offer's order.
        assert_eq!(answer.negotiated.codec.codec, Codec::Pcmu);
        assert_eq!(payload_types(&answer.description), [0, 100]);
    }

    #[test]
    fn browser_like_offer_with_many_codecs() {
        let answer = answer(&remote(BROWSER_LIKE), &local()).unwrap();
        let audio = audio_of(&answer.description);
        assert_eq!(audio.proto, "RTP/AVPF");
        assert_eq!(payload_types(&answer.description), [111, 110]);
        assert_eq!(
            answer.negotiated.remote_rtcp,
            "192.0.2.50:50001".parse().unwrap()
        );
    }

    #[test]
    fn browser_dtls_offer_is_refused_as_transport() {
        let err = answer(&remote(BROWSER_DTLS), &local()).unwrap_err();
        assert_eq!(
            err,
            NegotiationError::UnsupportedTransport {
                proto: "UDP/TLS/RTP/SAVPF".to_owned()
            }
        );
        assert_eq!(err.warning_code(), 302);
    }

    #[test]
    fn static_payload_type_without_rtpmap() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 18 8 0\r\n",
        );
        let answer = answer(&offer, &local()).unwrap();
        assert_eq!(answer.negotiated.codec.codec, Codec::Pcma);
        assert_eq!(payload_types(&answer.description), [8]);
    }

    #[test]
    fn ipv6_offer_and_ipv6_answer() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=rtcp:30011 IN IP6 2001:db8::11\r\n",
        );
        let mut ours = local();
        ours.address = "2001:db8::7".parse().unwrap();
        let answer = answer(&offer, &ours).unwrap();
        assert_eq!(
            answer.negotiated.remote_rtp,
            "[2001:db8::10]:30000".parse().unwrap()
        );
        assert_eq!(
            answer.negotiated.remote_rtcp,
            "[2001:db8::11]:30011".parse().unwrap()
        );
        let body = SdpSession::new(1).write(&answer.description);
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("c=IN IP6 2001:db8::7\r\n"), "{body}");
    }

    #[test]
    fn video_and_image_lines_are_rejected_in_place() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=video 9000 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\n\
             m=audio 9002 RTP/AVP 0\r\n\
             m=image 9004 udptl t38\r\n",
        );
        let answer = answer(&offer, &local()).unwrap();
        let media = &answer.description.media;
        assert_eq!(media.len(), 3);
        assert_eq!(
            media[0],
            MediaSection::Rejected {
                media: "video".to_owned(),
                proto: "RTP/AVP".to_owned(),
                formats: vec!["96".to_owned(), "97".to_owned()],
            }
        );
        assert!(matches!(media[1], MediaSection::Audio(_)));
        assert!(matches!(&media[2], MediaSection::Rejected { media, .. } if media == "image"));

        let body = SdpSession::new(1).write(&answer.description);
        let body = std::str::from_utf8(&body).unwrap();
        let m_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=video 0 RTP/AVP 96 97",
                "m=audio 40000 RTP/AVP 0",
                "m=image 0 udptl t38"
            ]
        );
    }

    #[test]
    fn offer_without_audio_is_refused() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=video 9000 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n",
        );
        let err = answer(&offer, &local()).unwrap_err();
        assert_eq!(err, NegotiationError::NoAudio);
        assert_eq!(err.warning_code(), 304);
    }

    #[test]
    fn no_common_codec_says_what_we_accept() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 18 9 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let err = answer(&offer, &local()).unwrap_err();
        assert_eq!(
            err,
            NegotiationError::NoCommonCodec {
                accepted: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus]
            }
        );
        assert_eq!(err.warning_code(), 305);
        assert_eq!(
            err.to_string(),
            "no common audio codec; we accept PCMU/8000, PCMA/8000, opus/48000/2"
        );
    }

    #[test]
    fn telephone_event_only_offer_has_no_codec() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        assert!(matches!(
            answer(&offer, &local()),
            Err(NegotiationError::NoCommonCodec { .. })
        ));
    }

    #[test]
    fn hold_variants_get_the_mirrored_direction() {
        let cases = [
            ("a=sendonly\r\n", "203.0.113.20", Direction::RecvOnly),
            ("a=inactive\r\n", "203.0.113.20", Direction::Inactive),
            ("a=recvonly\r\n", "203.0.113.20", Direction::SendOnly),
            ("a=sendrecv\r\n", "203.0.113.20", Direction::SendRecv),
            ("", "0.0.0.0", Direction::RecvOnly),
            ("a=inactive\r\n", "0.0.0.0", Direction::Inactive),
            ("a=recvonly\r\n", "0.0.0.0", Direction::Inactive),
        ];
        for (attribute, address, expected) in cases {
            let offer = remote(&hold_offer(attribute, address));
            let answer = answer(&offer, &local()).unwrap();
            assert_eq!(
                answer.negotiated.direction, expected,
                "offer {attribute:?} c={address}"
            );
            assert_eq!(audio_of(&answer.description).direction, expected);
            let held = offer.audio.as_ref().is_some_and(RemoteAudio::is_hold);
            assert_eq!(held, !expected.sends(), "hold detection for {attribute:?}");
        }
    }

    #[test]
    fn our_hold_state_limits_the_answer() {
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let answer = answer(&remote(CARRIER), &holding).unwrap();
        assert_eq!(answer.negotiated.direction, Direction::SendOnly);

        // Both sides hold: nothing flows.
        let offer = remote(&hold_offer("a=sendonly\r\n", "203.0.113.20"));
        let both = super::answer(&offer, &holding).unwrap();
        assert_eq!(both.negotiated.direction, Direction::Inactive);
    }

    #[test]
    fn hold_then_unhold_reinvites_move_the_version_once_each() {
        let mut session = SdpSession::new(4242);
        let initial = answer(&remote(&hold_offer("", "203.0.113.20")), &local()).unwrap();
        session.write(&initial.description);
        let v0 = session.version();

        // Session refresh: same offer, same answer, same version (RFC 3264 §8).
        let refresh = answer(&remote(&hold_offer("", "203.0.113.20")), &local()).unwrap();
        session.write(&refresh.description);
        assert_eq!(session.version(), v0);

        let hold = answer(
            &remote(&hold_offer("a=sendonly\r\n", "203.0.113.20")),
            &local(),
        )
        .unwrap();
        let body = session.write(&hold.description);
        assert_eq!(session.version(), v0 + 1);
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("a=recvonly\r\n"));

        let unhold = answer(
            &remote(&hold_offer("a=sendrecv\r\n", "203.0.113.20")),
            &local(),
        )
        .unwrap();
        let body = session.write(&unhold.description);
        assert_eq!(session.version(), v0 + 2);
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("a=sendrecv\r\n"));
        assert_eq!(session.session_id(), 4242);
    }

    #[test]
    fn our_offer_lists_codecs_in_preference_order_with_dtmf() {
        let mut ours = local();
        ours.codecs = vec![Codec::Opus, Codec::Pcmu];
        let offer = offer(&ours);
        assert_eq!(payload_types(&offer), [111, 0, 101, 110]);
        assert_eq!(audio_of(&offer).direction, Direction::SendRecv);

        let mut no_dtmf = local();
        no_dtmf.telephone_event = false;
        assert_eq!(payload_types(&super::offer(&no_dtmf)), [0, 8, 111]);
    }

    #[test]
    fn delayed_offer_answer_in_ack_is_accepted() {
        let our_offer = offer(&local());
        let answer_sdp = remote(
            "v=0\r\no=carrier 5 5 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.20\r\nt=0 0\r\n\
             m=audio 23456 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n",
        );
        let n = accept_answer(&our_offer, &answer_sdp).unwrap();
        assert_eq!(n.codec.codec, Codec::Pcma);
        assert_eq!(n.codec.payload_type, 8);
        assert_eq!(n.telephone_event.map(|t| t.payload_type), Some(101));
        assert_eq!(n.remote_rtp, "203.0.113.20:23456".parse().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn answer_may_renumber_dynamic_payload_types() {
        let our_offer = offer(&local());
        let answer_sdp = remote(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 96 97\r\na=rtpmap:96 opus/48000/2\r\n\
             a=rtpmap:97 telephone-event/48000\r\na=recvonly\r\n",
        );
        let n = accept_answer(&our_offer, &answer_sdp).unwrap();
        assert_eq!(n.codec.codec, Codec::Opus);
        assert_eq!(n.codec.payload_type, 96);
        assert_eq!(n.telephone_event.map(|t| t.payload_type), Some(97));
        assert_eq!(n.direction, Direction::SendOnly);
    }

    #[test]
    fn bad_answers_are_refused() {
        let our_offer = offer(&local());
        let two_lines = remote(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n",
        );
        assert_eq!(
            accept_answer(&our_offer, &two_lines).unwrap_err(),
            NegotiationError::MediaLineCount {
                offered: 1,
                answered: 2
            }
        );
        let rejected = remote(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 0 RTP/AVP 0\r\n",
        );
        assert_eq!(
            accept_answer(&our_offer, &rejected).unwrap_err(),
            NegotiationError::AudioRejected
        );
        let not_offered = remote(
            "v=0\r\no=- 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 18\r\n",
        );
        assert!(matches!(
            accept_answer(&our_offer, &not_offered),
            Err(NegotiationError::NoCommonCodec { .. })
        ));
    }

    #[test]
    fn reoffer_for_hold_keeps_lines_and_payload_types() {
        let offer = remote(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=video 9000 RTP/AVP 96\r\nm=audio 9002 RTP/AVP 96 101\r\n\
             a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n",
        );
        let answered = answer(&offer, &local()).unwrap();
        let hold = answered.description.with_direction(Direction::SendOnly);
        assert_eq!(hold.media.len(), 2);
        assert_eq!(audio_of(&hold).direction, Direction::SendOnly);
        assert_eq!(payload_types(&hold), [96, 101]);

        // The held peer answers recvonly: we send (music on hold), it does not.
        let reply = remote(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\nm=audio 9002 RTP/AVP 96 101\r\n\
             a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=recvonly\r\n",
        );
        let n = accept_answer(&hold, &reply).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.codec.payload_type, 96);
    }

    #[test]
    fn baton_answers_its_own_offer() {
        let mut caller = local();
        caller.codecs = vec![Codec::Opus, Codec::Pcma];
        let our_offer = offer(&caller);
        let body = SdpSession::new(9).write(&our_offer);
        let callee = LocalMedia::new([192, 0, 2, 99].into(), 50000);
        let answered = answer(&RemoteDescription::parse(&body).unwrap(), &callee).unwrap();
        assert_eq!(answered.negotiated.codec.codec, Codec::Opus);
        assert_eq!(answered.negotiated.codec.payload_type, 111);
        assert_eq!(
            answered.negotiated.telephone_event.map(|t| t.payload_type),
            Some(110)
        );
        assert_eq!(
            answered.negotiated.remote_rtp,
            "198.51.100.7:40000".parse().unwrap()
        );

        let reply = SdpSession::new(10).write(&answered.description);
        let n = accept_answer(&our_offer, &RemoteDescription::parse(&reply).unwrap()).unwrap();
        assert_eq!(n.codec.codec, Codec::Opus);
        assert_eq!(n.remote_rtp, "192.0.2.99:50000".parse().unwrap());
        assert_eq!(n.remote_rtcp, "192.0.2.99:50001".parse().unwrap());
    }
}
