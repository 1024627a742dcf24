//! Reading a peer's SDP (offer or answer) into what one audio leg needs.
//!
//! The body is untrusted: every failure is a [`ParseError`] naming the line, never a panic.
//! Lines are read one by one so that the error can point at the culprit; `ezk-sdp-types`
//! parses the fields we use (`o=`, `c=`, `a=rtpmap`, `a=fmtp`, `a=rtcp`, `a=crypto`).
//! `m=` lines are tokenised here because `ezk-sdp-types` has no `image` or `message` media
//! type, and T.38 or MSRP streams must still be answered in place with port 0.
//! Attributes of media sections other than the chosen audio stream are not interpreted, so a
//! quirk in a video section cannot fail a call we would answer audio-only anyway.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use ezk_sdp_types::{Connection, Fmtp, Origin, Rtcp, RtpMap, SrtpCrypto, TaggedAddress};

use crate::codec::{Encoding, RemotePayload};
use crate::direction::Direction;

/// Largest SDP body we read; real offers, even browsers' with candidates, stay far below.
pub const MAX_SDP_LEN: usize = 32 * 1024;

/// How much of an offending line an error quotes.
const MAX_EXCERPT_CHARS: usize = 80;

/// The kind of SDP line an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `v=`
    Version,
    /// `o=`
    Origin,
    /// `c=`
    Connection,
    /// `m=`
    Media,
    /// `a=rtpmap`
    RtpMap,
    /// `a=fmtp`
    Fmtp,
    /// `a=rtcp`
    Rtcp,
    /// `a=ptime`
    Ptime,
    /// `a=crypto`
    Crypto,
    /// A line that is not of the form `<letter>=<value>`.
    Line,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Version => "v=",
            Self::Origin => "o=",
            Self::Connection => "c=",
            Self::Media => "m=",
            Self::RtpMap => "a=rtpmap",
            Self::Fmtp => "a=fmtp",
            Self::Rtcp => "a=rtcp",
            Self::Ptime => "a=ptime",
            Self::Crypto => "a=crypto",
            Self::Line => "line",
        })
    }
}

/// Why an SDP body could not be read; maps to a 400 (or 488) for the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is larger than [`MAX_SDP_LEN`].
    #[error("SDP body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the body received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body has no lines at all.
    #[error("SDP body is empty")]
    Empty,
    /// A line is not valid UTF-8.
    #[error("SDP line {line} is not UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line we need could not be parsed.
    #[error("SDP line {line}: malformed {field}: {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// Which kind of line it is.
        field: Field,
        /// The start of the offending line.
        text: String,
    },
    /// An address is a host name; we do no DNS while negotiating media.
    #[error("SDP line {line}: host name in {field} is not supported: {text:?}")]
    HostName {
        /// 1-based line number.
        line: usize,
        /// `c=` or `a=rtcp`.
        field: Field,
        /// The start of the offending line.
        text: String,
    },
    /// A mandatory line is absent.
    #[error("SDP has no {0} line")]
    Missing(Field),
    /// The audio stream has neither a media-level nor a session-level `c=`.
    #[error("SDP line {line}: audio stream has no connection address (c=)")]
    NoConnection {
        /// Line of the audio `m=`.
        line: usize,
    },
}

/// One `m=` line of the peer's description, kept verbatim so it can be rejected in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Media type token (`audio`, `video`, `image`, ...).
    pub media: String,
    /// Transport port; 0 means the stream is disabled.
    pub port: u16,
    /// Transport protocol token (`RTP/AVP`, `RTP/SAVP`, `udptl`, ...).
    pub proto: String,
    /// Format tokens in the peer's order.
    pub formats: Vec<String>,
}

/// The audio stream we use: the first `m=audio` line with a non-zero port.
#[derive(Debug, Clone)]
pub struct RemoteAudio {
    /// Position of its `m=` line among all m-lines.
    pub index: usize,
    /// Where the peer wants RTP; an unspecified IP (`0.0.0.0`) is RFC 2543 hold.
    pub rtp: SocketAddr,
    /// Where the peer wants RTCP (`a=rtcp`, else the RTP port + 1).
    pub rtcp: SocketAddr,
    /// Transport protocol token (`RTP/AVP`, ...).
    pub proto: String,
    /// Payload types in the peer's preference order.
    pub payloads: Vec<RemotePayload>,
    /// `a=ptime` in milliseconds (media level, else session level).
    pub ptime_ms: Option<u32>,
    /// Direction attribute (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// SDES keys (`a=crypto`), kept for SRTP support.
    pub crypto: Vec<SrtpCrypto>,
}

impl RemoteAudio {
    /// Direction once RFC 2543 hold (`c=0.0.0.0`) is taken into account: the peer gave no
    /// address to send to, so it does not receive whatever its attribute says.
    pub fn effective_direction(&self) -> Direction {
        if self.rtp.ip().is_unspecified() {
            Direction::from_flags(self.direction.sends(), false)
        } else {
            self.direction
        }
    }

    /// True when the peer does not want media from us: sendonly, inactive or `c=0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        !self.effective_direction().receives()
    }
}

/// The parts of a peer's SDP that matter to one audio leg.
#[derive(Debug, Clone)]
pub struct RemoteDescription {
    /// `o=` session id; together with the version it tells a changed description apart.
    pub origin_session_id: String,
    /// `o=` session version (RFC 3264 §8: unchanged means the description is the same).
    pub origin_version: String,
    /// Every m-line in order.
    pub media: Vec<RemoteMedia>,
    /// The audio stream we use, if there is an active one.
    pub audio: Option<RemoteAudio>,
}

impl RemoteDescription {
    /// Parses an SDP body received from the network.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_SDP_LEN {
            return Err(ParseError::TooLarge {
                len: bytes.len(),
                max: MAX_SDP_LEN,
            });
        }
        // ezk's field parsers slice their results out of this buffer, so every `&str`
        // handed to them must point into it.
        let src = Bytes::copy_from_slice(bytes);
        let mut parser = Parser::default();
        for (index, raw) in src.split(|b| *b == b'\n').enumerate() {
            let number = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line =
                std::str::from_utf8(raw).map_err(|_| ParseError::NotUtf8 { line: number })?;
            parser.line(&src, number, line)?;
        }
        parser.finish()
    }
}

/// A `c=` (or `a=rtcp` address) as found, resolved to an error only if it is used.
#[derive(Debug, Clone)]
enum Address {
    Ip(IpAddr),
    Host {
        line: usize,
        field: Field,
        text: String,
    },
}

impl Address {
    fn from_tagged(tagged: TaggedAddress, line: usize, field: Field, text: &str) -> Self {
        match tagged {
            TaggedAddress::IP4(ip) => Self::Ip(IpAddr::V4(ip)),
            TaggedAddress::IP6(ip) => Self::Ip(IpAddr::V6(ip)),
            TaggedAddress::IP4FQDN(_) | TaggedAddress::IP6FQDN(_) => Self::Host {
                line,
                field,
                text: excerpt(text),
            },
        }
    }

    fn resolve(self) -> Result<IpAddr, ParseError> {
        match self {
            Self::Ip(ip) => Ok(ip),
            Self::Host { line, field, text } => Err(ParseError::HostName { line, field, text }),
        }
    }
}

/// What we collect for the chosen audio section while its lines go by.
#[derive(Debug)]
struct AudioSection {
    index: usize,
    line: usize,
    port: u16,
    proto: String,
    payload_types: Vec<u8>,
    connection: Option<Address>,
    rtpmaps: Vec<(u8, Encoding)>,
    fmtps: Vec<(u8, String)>,
    rtcp: Option<(u16, Option<Address>)>,
    ptime_ms: Option<u32>,
    direction: Option<Direction>,
    crypto: Vec<SrtpCrypto>,
}

#[derive(Debug, Default)]
struct Parser {
    seen_version: bool,
    origin: Option<(String, String)>,
    session_connection: Option<Address>,
    session_direction: Option<Direction>,
    session_ptime_ms: Option<u32>,
    media: Vec<RemoteMedia>,
    audio: Option<AudioSection>,
    in_audio: bool,
}

impl Parser {
    fn line(&mut self, src: &Bytes, number: usize, line: &str) -> Result<(), ParseError> {
        let malformed = |field| malformed(number, field, line);
        let kind = match line.as_bytes() {
            [kind @ b'a'..=b'z', b'=', ..] if !line.contains('\r') => *kind,
            _ => return Err(malformed(Field::Line)),
        };
        // Bytes 0 and 1 are ASCII, so 2 is a char boundary.
        let value = line.get(2..).ok_or_else(|| malformed(Field::Line))?;

        if !self.seen_version {
            // RFC 8866 §5: the description starts with `v=0`.
            if kind == b'v' && value.trim_end() == "0" {
                self.seen_version = true;
                return Ok(());
            }
            return Err(malformed(Field::Version));
        }

        match kind {
            b'o' if self.origin.is_none() => {
                let (_, origin) =
                    Origin::parse(src, value).map_err(|_| malformed(Field::Origin))?;
                self.origin = Some((
                    origin.session_id.to_string(),
                    origin.session_version.to_string(),
                ));
            }
            b'c' => self.connection(src, number, line, value)?,
            b'm' => self.media_line(number, line, value)?,
            b'a' => self.attribute(src, number, line, value)?,
            _ => {}
        }
        Ok(())
    }

    fn connection(
        &mut self,
        src: &Bytes,
        number: usize,
        line: &str,
        value: &str,
    ) -> Result<(), ParseError> {
        let at_session_level = self.media.is_empty();
        if !at_session_level && !self.in_audio {
            return Ok(());
        }
        let address = parse_address(src, number, line, value)?;
        if at_session_level {
            self.session_connection = Some(address);
        } else if let Some(audio) = self.audio.as_mut() {
            audio.connection = Some(address);
        }
        Ok(())
    }

    fn media_line(&mut self, number: usize, line: &str, value: &str) -> Result<(), ParseError> {
        let malformed = || malformed(number, Field::Media, line);
        let mut tokens = value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (tokens.next(), tokens.next(), tokens.next())
        else {
            return Err(malformed());
        };
        // `<port>/<number of ports>`: we only ever use the first port.
        let port = port.split_once('/').map_or(port, |(first, _)| first);
        let port: u16 = port.parse().map_err(|_| malformed())?;
        let formats: Vec<String> = tokens.map(str::to_owned).collect();

        let index = self.media.len();
        self.in_audio = media == "audio" && port != 0 && self.audio.is_none();
        if self.in_audio {
            let payload_types = formats
                .iter()
                .map(|f| f.parse::<u8>().ok().filter(|pt| *pt <= 127))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(malformed)?;
            self.audio = Some(AudioSection {
                index,
                line: number,
                port,
                proto: proto.to_owned(),
                payload_types,
                connection: None,
                rtpmaps: Vec::new(),
                fmtps: Vec::new(),
                rtcp: None,
                ptime_ms: None,
                direction: None,
                crypto: Vec::new(),
            });
        }
        self.media.push(RemoteMedia {
            media: media.to_owned(),
            port,
            proto: proto.to_owned(),
            formats,
        });
        Ok(())
    }

    fn attribute(
        &mut self,
        src: &Bytes,
        number: usize,
        line: &str,
        value: &str,
    ) -> Result<(), ParseError> {
        let malformed = |field| malformed(number, field, line);
        let (name, attr_value) = match value.split_once(':') {
            Some((name, attr_value)) => (name, Some(attr_value)),
            None => (value.trim_end(), None),
        };

        if self.media.is_empty() {
            match (name, attr_value) {
                (name, None) => {
                    if let Some(direction) = Direction::from_attribute(name) {
                        self.session_direction = Some(direction);
                    }
                }
                ("ptime", Some(v)) => {
                    self.session_ptime_ms = Some(parse_ptime(v).ok_or(malformed(Field::Ptime))?);
                }
                _ => {}
            }
            return Ok(());
        }

        let Some(audio) = self.audio.as_mut().filter(|_| self.in_audio) else {
            return Ok(());
        };
        match (name, attr_value) {
            (name, None) => {
                if let Some(direction) = Direction::from_attribute(name) {
                    audio.direction = Some(direction);
                }
            }
            ("rtpmap", Some(v)) => {
                let (_, rtpmap) = RtpMap::parse(src, v).map_err(|_| malformed(Field::RtpMap))?;
                let channels = match &rtpmap.params {
                    None => 1,
                    Some(p) => p
                        .trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or(malformed(Field::RtpMap))?,
                };
                audio.rtpmaps.push((
                    rtpmap.payload,
                    Encoding {
                        name: rtpmap.encoding.trim().to_owned(),
                        clock_rate: rtpmap.clock_rate,
                        channels,
                    },
                ));
            }
            ("fmtp", Some(v)) => {
                let (_, fmtp) = Fmtp::parse(src, v).map_err(|_| malformed(Field::Fmtp))?;
                audio
                    .fmtps
                    .push((fmtp.format, fmtp.params.trim().to_owned()));
            }
            ("rtcp", Some(v)) => {
                let (rest, rtcp) =
                    Rtcp::parse(src, v.trim()).map_err(|_| malformed(Field::Rtcp))?;
                if !rest.trim().is_empty() {
                    return Err(malformed(Field::Rtcp));
                }
                let address = rtcp
                    .address
                    .map(|a| Address::from_tagged(a, number, Field::Rtcp, line));
                audio.rtcp = Some((rtcp.port, address));
            }
            ("ptime", Some(v)) => {
                audio.ptime_ms = Some(parse_ptime(v).ok_or(malformed(Field::Ptime))?);
            }
            ("crypto", Some(v)) => {
                if !crypto_lifetimes_fit(v) {
                    return Err(malformed(Field::Crypto));
                }
                let (_, crypto) =
                    SrtpCrypto::parse(src, v.trim()).map_err(|_| malformed(Field::Crypto))?;
                audio.crypto.push(crypto);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<RemoteDescription, ParseError> {
        if !self.seen_version {
            return Err(ParseError::Empty);
        }
        let (origin_session_id, origin_version) =
            self.origin.ok_or(ParseError::Missing(Field::Origin))?;
        let audio = match self.audio {
            None => None,
            Some(section) => Some(section.finish(
                self.session_connection,
                self.session_direction,
                self.session_ptime_ms,
            )?),
        };
        Ok(RemoteDescription {
            origin_session_id,
            origin_version,
            media: self.media,
            audio,
        })
    }
}

impl AudioSection {
    fn finish(
        self,
        session_connection: Option<Address>,
        session_direction: Option<Direction>,
        session_ptime_ms: Option<u32>,
    ) -> Result<RemoteAudio, ParseError> {
        let ip = self
            .connection
            .or(session_connection)
            .ok_or(ParseError::NoConnection { line: self.line })?
            .resolve()?;
        let rtp = SocketAddr::new(ip, self.port);
        let rtcp = match self.rtcp {
            Some((port, Some(address))) => SocketAddr::new(address.resolve()?, port),
            Some((port, None)) => SocketAddr::new(ip, port),
            // RFC 3550 §11: RTCP on the next port up. Port 65535 has none; reuse it.
            None => SocketAddr::new(ip, self.port.checked_add(1).unwrap_or(self.port)),
        };

        let mut payloads: Vec<RemotePayload> = Vec::with_capacity(self.payload_types.len());
        for payload_type in self.payload_types {
            if payloads.iter().any(|p| p.payload_type == payload_type) {
                continue;
            }
            let encoding = self
                .rtpmaps
                .iter()
                .find(|(pt, _)| *pt == payload_type)
                .map(|(_, e)| e.clone())
                .or_else(|| Encoding::from_static_payload_type(payload_type));
            let fmtp = self
                .fmtps
                .iter()
                .find(|(pt, _)| *pt == payload_type)
                .map(|(_, f)| f.clone());
            payloads.push(RemotePayload {
                payload_type,
                encoding,
                fmtp,
            });
        }

        Ok(RemoteAudio {
            index: self.index,
            rtp,
            rtcp,
            proto: self.proto,
            payloads,
            ptime_ms: self.ptime_ms.or(session_ptime_ms),
            direction: self.direction.or(session_direction).unwrap_or_default(),
            crypto: self.crypto,
        })
    }
}

fn parse_address(
    src: &Bytes,
    number: usize,
    line: &str,
    value: &str,
) -> Result<Address, ParseError> {
    let malformed = || malformed(number, Field::Connection, line);
    let (rest, connection) = Connection::parse(src, value.trim()).map_err(|_| malformed())?;
    if !rest.trim().is_empty() {
        return Err(malformed());
    }
    let empty_host = matches!(
        &connection.address,
        TaggedAddress::IP4FQDN(h) | TaggedAddress::IP6FQDN(h) if h.is_empty()
    );
    if empty_host {
        return Err(malformed());
    }
    Ok(Address::from_tagged(
        connection.address,
        number,
        Field::Connection,
        line,
    ))
}

/// ezk-sdp-types 0.6 computes a `|2^n` key lifetime as `2u32.pow(n)`, which panics on
/// overflow for n >= 32 (found by fuzzing). RFC 4568 lifetimes that large do not fit its
/// `u32` anyway, so such a line is refused before it reaches that parser.
fn crypto_lifetimes_fit(value: &str) -> bool {
    value.match_indices("2^").all(|(at, marker)| {
        let exponent = value.get(at + marker.len()..).unwrap_or_default();
        let digits = exponent
            .find(|c: char| !c.is_ascii_digit())
            .map_or(exponent, |end| exponent.get(..end).unwrap_or_default());
        digits.is_empty() || digits.parse::<u32>().is_ok_and(|n| n < 32)
    })
}

fn parse_ptime(value: &str) -> Option<u32> {
    value.trim().parse().ok()
}

fn malformed(line: usize, field: Field, text: &str) -> ParseError {
    ParseError::Malformed {
        line,
        field,
        text: excerpt(text),
    }
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<RemoteDescription, ParseError> {
        RemoteDescription::parse(text.as_bytes())
    }

    const CARRIER: &str = "v=0\r\n\
        o=Sonus_UAC 245623 143267 IN IP4 203.0.113.10\r\n\
        s=SIP Media Capabilities\r\n\
        c=IN IP4 203.0.113.20\r\n\
        t=0 0\r\n\
        m=audio 23456 RTP/AVP 0 8 101\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=sendrecv\r\n\
        a=ptime:20\r\n\
        a=maxptime:30\r\n";

    #[test]
    fn reads_carrier_offer() {
        let sdp = parse(CARRIER).unwrap();
        assert_eq!(sdp.origin_session_id, "245623");
        assert_eq!(sdp.origin_version, "143267");
        assert_eq!(sdp.media.len(), 1);
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.index, 0);
        assert_eq!(audio.rtp, "203.0.113.20:23456".parse().unwrap());
        assert_eq!(audio.rtcp, "203.0.113.20:23457".parse().unwrap());
        assert_eq!(audio.proto, "RTP/AVP");
        let pts: Vec<u8> = audio.payloads.iter().map(|p| p.payload_type).collect();
        assert_eq!(pts, [0, 8, 101]);
        let te = &audio.payloads[2];
        assert_eq!(te.encoding.as_ref().unwrap().name, "telephone-event");
        assert_eq!(te.fmtp.as_deref(), Some("0-15"));
        assert_eq!(audio.ptime_ms, Some(20));
        assert_eq!(audio.direction, Direction::SendRecv);
        assert!(!audio.is_hold());
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let sdp = parse(&CARRIER.replace("\r\n", "\n")).unwrap();
        assert_eq!(sdp.audio.unwrap().payloads.len(), 3);
    }

    #[test]
    fn media_level_connection_and_rtcp_attribute_win() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\na=rtcp:6000 IN IP4 192.0.2.3\r\n",
        )
        .unwrap();
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.rtp, "192.0.2.2:5004".parse().unwrap());
        assert_eq!(audio.rtcp, "192.0.2.3:6000".parse().unwrap());
    }

    #[test]
    fn rtcp_port_without_address_uses_connection_address() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 5004 RTP/AVP 0\r\na=rtcp:5010\r\n",
        )
        .unwrap();
        assert_eq!(sdp.audio.unwrap().rtcp, "192.0.2.1:5010".parse().unwrap());
    }

    #[test]
    fn session_level_direction_and_ptime_are_inherited() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             a=sendonly\r\na=ptime:30\r\nm=audio 5004 RTP/AVP 0\r\n",
        )
        .unwrap();
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(audio.ptime_ms, Some(30));
        assert!(audio.is_hold());
    }

    #[test]
    fn media_direction_overrides_session_direction() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             a=inactive\r\nm=audio 5004 RTP/AVP 0\r\na=recvonly\r\n",
        )
        .unwrap();
        assert_eq!(sdp.audio.unwrap().direction, Direction::RecvOnly);
    }

    #[test]
    fn zero_address_is_rfc2543_hold() {
        let sdp = parse(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             m=audio 5004 RTP/AVP 0\r\n",
        )
        .unwrap();
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.direction, Direction::SendRecv);
        assert_eq!(audio.effective_direction(), Direction::SendOnly);
        assert!(audio.is_hold());
    }

    #[test]
    fn ipv6_connection() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 8\r\n",
        )
        .unwrap();
        assert_eq!(
            sdp.audio.unwrap().rtp,
            "[2001:db8::10]:30000".parse().unwrap()
        );
    }

    #[test]
    fn first_active_audio_line_is_chosen_and_all_lines_kept() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=video 9000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             m=audio 0 RTP/AVP 0\r\n\
             m=audio 9002 RTP/AVP 8\r\n\
             m=image 9004 udptl t38\r\n",
        )
        .unwrap();
        assert_eq!(sdp.media.len(), 4);
        assert_eq!(sdp.media[3].media, "image");
        assert_eq!(sdp.media[3].formats, ["t38"]);
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.index, 2);
        assert_eq!(audio.payloads[0].payload_type, 8);
    }

    #[test]
    fn attributes_of_other_sections_are_not_interpreted() {
        // A malformed rtpmap in a video section must not fail an audio call.
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 9002 RTP/AVP 0\r\n\
             m=video 9000 RTP/AVP 96\r\na=rtpmap:x H264\r\na=sendonly\r\n",
        )
        .unwrap();
        assert_eq!(sdp.audio.unwrap().direction, Direction::SendRecv);
    }

    #[test]
    fn static_payload_type_without_rtpmap_resolves() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 18 8 96\r\n",
        )
        .unwrap();
        let payloads = sdp.audio.unwrap().payloads;
        assert_eq!(payloads[0].encoding.as_ref().unwrap().name, "G729");
        assert_eq!(payloads[1].encoding.as_ref().unwrap().name, "PCMA");
        assert_eq!(payloads[2].encoding, None);
    }

    #[test]
    fn crypto_lines_are_kept() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n",
        )
        .unwrap();
        let audio = sdp.audio.unwrap();
        assert_eq!(audio.crypto.len(), 1);
        assert_eq!(audio.crypto[0].tag, 1);
    }

    #[test]
    fn oversized_crypto_lifetime_is_malformed_not_a_panic() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^";
        for exponent in ["32", "2333333", "99999999999999999999"] {
            assert!(matches!(
                parse(&format!("{base}{exponent}\r\n")),
                Err(ParseError::Malformed {
                    line: 7,
                    field: Field::Crypto,
                    ..
                })
            ));
        }
        let fine = parse(&format!("{base}31\r\n")).unwrap();
        assert_eq!(
            fine.audio.unwrap().crypto[0].keys[0].lifetime,
            Some(1 << 31)
        );
    }

    #[test]
    fn malformed_rtpmap_names_its_line() {
        let err = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\na=rtpmap:zero PCMU/8000\r\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            ParseError::Malformed {
                line: 7,
                field: Field::RtpMap,
                text: "a=rtpmap:zero PCMU/8000".to_owned(),
            }
        );
        assert_eq!(
            err.to_string(),
            "SDP line 7: malformed a=rtpmap: \"a=rtpmap:zero PCMU/8000\""
        );
    }

    #[test]
    fn malformed_lines_are_typed() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        let cases = [
            (
                "c=IN IP4 192.0.2.1:5060\r\nm=audio 1 RTP/AVP 0\r\n",
                5,
                Field::Connection,
            ),
            ("c=IN IP9 x\r\n", 5, Field::Connection),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n",
                6,
                Field::Media,
            ),
            ("c=IN IP4 192.0.2.1\r\nm=audio 4000\r\n", 6, Field::Media),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 200\r\n",
                6,
                Field::Media,
            ),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
                7,
                Field::Ptime,
            ),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=fmtp:x 1\r\n",
                7,
                Field::Fmtp,
            ),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
                7,
                Field::Rtcp,
            ),
            (
                "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/0\r\n",
                7,
                Field::RtpMap,
            ),
            ("garbage\r\n", 5, Field::Line),
            ("A=b\r\n", 5, Field::Line),
        ];
        for (tail, line, field) in cases {
            let text = format!("{base}{tail}");
            match parse(&text) {
                Err(ParseError::Malformed {
                    line: l, field: f, ..
                }) => {
                    assert_eq!((l, f), (line, field), "for {tail:?}");
                }
                other => panic!("expected malformed {field} for {tail:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(parse("\r\n\r\n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            parse("o=- 1 1 IN IP4 192.0.2.1\r\n"),
            Err(ParseError::Malformed {
                line: 1,
                field: Field::Version,
                ..
            })
        ));
        assert_eq!(
            parse("v=0\r\ns=-\r\n").unwrap_err(),
            ParseError::Missing(Field::Origin)
        );
        assert_eq!(
            parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap_err(),
            ParseError::NoConnection { line: 3 }
        );
        assert_eq!(
            RemoteDescription::parse(b"v=0\r\no=\xff\r\n").unwrap_err(),
            ParseError::NotUtf8 { line: 2 }
        );
        let huge = vec![b'a'; MAX_SDP_LEN + 1];
        assert!(matches!(
            RemoteDescription::parse(&huge),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn host_name_connection_is_refused_only_when_used() {
        let with_host =
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 media.example.com\r\nt=0 0\r\n";
        assert!(matches!(
            parse(&format!("{with_host}m=audio 4000 RTP/AVP 0\r\n")),
            Err(ParseError::HostName {
                line: 4,
                field: Field::Connection,
                ..
            })
        ));
        let overridden = format!("{with_host}m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\n");
        assert_eq!(
            parse(&overridden).unwrap().audio.unwrap().rtp,
            "192.0.2.9:4000".parse().unwrap()
        );
    }

    #[test]
    fn long_lines_are_quoted_in_part() {
        let long = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 {}\r\n",
            "é".repeat(200)
        );
        match parse(&long) {
            Err(ParseError::Malformed { text, .. }) => {
                assert_eq!(text.chars().count(), MAX_EXCERPT_CHARS + 1);
                assert!(text.ends_with('…'));
            }
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    /// Valid bodies that mutations start from.
    const SEEDS: [&str; 2] = [
        CARRIER,
        "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\n\
         a=sendonly\r\nm=video 9000 RTP/AVP 96\r\nm=audio 30000 RTP/AVPF 111 0 110\r\n\
         a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
         a=rtpmap:110 telephone-event/48000\r\na=rtcp:30001 IN IP6 2001:db8::11\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
         m=image 0 udptl t38\r\n",
    ];

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn mutate(seed: &str, mutations: &[Mutation]) -> Vec<u8> {
        let mut bytes = seed.as_bytes().to_vec();
        for m in mutations {
            let len = bytes.len().max(1);
            match *m {
                Mutation::Replace(i, b) => {
                    if let Some(slot) = bytes.get_mut(i % len) {
                        *slot = b;
                    }
                }
                Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
                Mutation::Delete(i) => {
                    if !bytes.is_empty() {
                        bytes.remove(i % len);
                    }
                }
                Mutation::Truncate(i) => bytes.truncate(i % len),
            }
        }
        bytes
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = RemoteDescription::parse(&bytes);
        }

        #[test]
        fn sdp_shaped_text_never_panics(text in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r\n){0,20}") {
            let _ = parse(&text);
        }

        #[test]
        fn mutated_offers_never_panic(
            seed in 0..SEEDS.len(),
            mutations in proptest::collection::vec(mutation(), 1..8),
        ) {
            let bytes = mutate(SEEDS[seed], &mutations);
            if let Ok(sdp) = RemoteDescription::parse(&bytes) {
                let _ = crate::answer(&sdp, &crate::LocalMedia::new([192, 0, 2, 7].into(), 40000));
            }
        }
    }
}
