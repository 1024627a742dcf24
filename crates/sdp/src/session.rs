//! Writing our descriptions on one leg, with `o=` versioning per RFC 3264 §8.

use bytes::Bytes;
use ezk_sdp_types::{
    Connection, Fmtp, IceOptions, MediaDescription, MediaType, Origin, RtpMap, SessionDescription,
    TaggedAddress, Time, TransportProtocol, UnknownAttribute,
};

use crate::negotiate::{AudioSection, LocalDescription, MediaSection};

/// Username and session name we put in every description.
const PRODUCT: &str = "baton";

/// The `o=` state of one leg: a fixed session id and a version that moves only when what
/// we say changes, so a peer can tell a re-INVITE for hold from a session refresh.
#[derive(Debug, Clone)]
pub struct SdpSession {
    session_id: u64,
    version: u64,
    last: Option<LocalDescription>,
}

impl SdpSession {
    /// Starts a leg's SDP history; `session_id` should be unique per leg (random or clock-based).
    pub fn new(session_id: u64) -> Self {
        Self {
            session_id,
            version: 1,
            last: None,
        }
    }

    /// The `o=` session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `o=` version of the last description written.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Serialises `description` as an SDP body, incrementing the version if it differs
    /// from the previous one written on this leg.
    pub fn write(&mut self, description: &LocalDescription) -> Bytes {
        match &self.last {
            Some(last) if last != description => self.version = self.version.wrapping_add(1),
            _ => {}
        }
        self.last = Some(description.clone());
        render(description, self.session_id, self.version)
    }
}

fn render(description: &LocalDescription, session_id: u64, version: u64) -> Bytes {
    let address = TaggedAddress::from(description.address);
    let session = SessionDescription {
        origin: Origin {
            username: PRODUCT.into(),
            session_id: session_id.to_string().into(),
            session_version: version.to_string().into(),
            address: address.clone(),
        },
        name: PRODUCT.into(),
        connection: Some(Connection {
            address,
            ttl: None,
            num: None,
        }),
        bandwidth: Vec::new(),
        time: Time { start: 0, stop: 0 },
        direction: ezk_sdp_types::Direction::SendRecv,
        group: Vec::new(),
        extmap: Vec::new(),
        extmap_allow_mixed: false,
        ice_lite: false,
        ice_options: IceOptions::default(),
        ice_ufrag: None,
        ice_pwd: None,
        setup: None,
        fingerprint: Vec::new(),
        attributes: Vec::new(),
        media_descriptions: Vec::new(),
    };
    let mut out = session.to_string();
    for section in &description.media {
        match section {
            MediaSection::Audio(audio) => out.push_str(&audio_description(audio).to_string()),
            // ezk's media type cannot say `image` or `message`, so rejected lines are
            // written as the offer spelled them. Tokens never hold whitespace or CR/LF.
            MediaSection::Rejected {
                media,
                proto,
                formats,
            } => {
                out.push_str(&format!("m={media} 0 {proto}"));
                for format in formats {
                    out.push(' ');
                    out.push_str(format);
                }
                out.push_str("\r\n");
            }
        }
    }
    Bytes::from(out)
}

fn audio_description(audio: &AudioSection) -> MediaDescription {
    let mut m = MediaDescription::rejected(MediaType::Audio);
    m.media.port = audio.port;
    m.media.proto = if audio.proto.eq_ignore_ascii_case("RTP/AVPF") {
        TransportProtocol::RtpAvpf
    } else {
        TransportProtocol::RtpAvp
    };
    m.media.fmts = audio.formats.iter().map(|f| f.payload_type).collect();
    m.direction = audio.direction.to_ezk();
    m.rtpmap = audio
        .formats
        .iter()
        .map(|f| RtpMap {
            payload: f.payload_type,
            encoding: f.name.into(),
            clock_rate: f.clock_rate,
            params: (f.channels != 1).then(|| f.channels.to_string().into()),
        })
        .collect();
    m.fmtp = audio
        .formats
        .iter()
        .filter_map(|f| {
            f.fmtp.map(|params| Fmtp {
                format: f.payload_type,
                params: params.into(),
            })
        })
        .collect();
    m.attributes.push(UnknownAttribute {
        name: "ptime".into(),
        value: Some(audio.ptime_ms.to_string().into()),
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{offer, Direction, LocalMedia};

    #[test]
    fn writes_the_expected_offer() {
        let local = LocalMedia::new([198, 51, 100, 7].into(), 40000);
        let body = SdpSession::new(123456).write(&offer(&local));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "v=0\r\n\
             o=baton 123456 1 IN IP4 198.51.100.7\r\n\
             s=baton\r\n\
             c=IN IP4 198.51.100.7\r\n\
             t=0 0\r\n\
             m=audio 40000 RTP/AVP 0 8 111 101 110\r\n\
             a=sendrecv\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:111 opus/48000/2\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=rtpmap:110 telephone-event/48000\r\n\
             a=fmtp:111 minptime=10;useinbandfec=1\r\n\
             a=fmtp:101 0-16\r\n\
             a=fmtp:110 0-16\r\n\
             a=ptime:20\r\n"
        );
    }

    #[test]
    fn version_moves_only_when_the_description_changes() {
        let local = LocalMedia::new([198, 51, 100, 7].into(), 40000);
        let mut session = SdpSession::new(7);
        let first = offer(&local);
        session.write(&first);
        session.write(&first);
        assert_eq!(session.version(), 1);
        let held = first.with_direction(Direction::SendOnly);
        let body = session.write(&held);
        assert_eq!(session.version(), 2);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("o=baton 7 2 IN IP4 198.51.100.7\r\n"));
        assert!(text.contains("a=sendonly\r\n"));
        session.write(&first);
        assert_eq!(session.version(), 3);
    }
}
