//! One media leg of a call, the caller's or an agent's: its RTP and RTCP sockets and the
//! negotiated session, read and written on the call's 20 ms clock. Each leg decodes to
//! and encodes from the same 16 kHz frames, so two legs with different codecs are
//! transcoded simply by passing frames from one to the other.

use super::socket::{MediaSocket, TickTime};
use super::RtpSockets;
use crate::rtp_ports::PortLease;
use baton_media::jitter::Playout;
use baton_media::rtp::{RtpConfig, RtpEvent, RtpSession};
use baton_media::stats::LegStats;
use baton_media::{AudioFrame, CodecKind, Decoder, Encoder};
use baton_sdp::{Codec, Negotiated};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tracing::debug;

/// Empty playout slots concealed before the leg is taken as silent (80 ms, the length of
/// the G.711 concealment fade).
const CONCEAL_UNDERRUN: u32 = 4;

/// The media state of a negotiated leg.
pub(super) struct Media {
    pub session: RtpSession,
    decoder: Decoder,
    encoder: Encoder,
    remote: SocketAddr,
    remote_rtcp: SocketAddr,
    can_send: bool,
    /// Consecutive slots the jitter buffer had nothing for.
    underrun: u32,
    /// What the leg's sessions before a codec change counted: the call's figures cover
    /// the whole call, not only its last codec.
    earlier: LegStats,
}

impl Media {
    fn new(
        n: &Negotiated,
        cname: &str,
        inactivity: Duration,
        now: Instant,
    ) -> Result<Media, String> {
        let kind = codec_kind(n.codec.codec);
        let mut config = RtpConfig::new(kind, n.codec.payload_type, cname.to_owned());
        config.telephone_event_pt = n.telephone_event.map(|t| t.payload_type);
        config.remote_rtp = Some(n.remote_rtp);
        config.remote_rtcp = Some(n.remote_rtcp);
        config.inactivity_timeout = Some(inactivity);
        Ok(Media {
            session: RtpSession::new(config, now, SystemTime::now()).map_err(|e| e.to_string())?,
            decoder: Decoder::new(kind).map_err(|e| e.to_string())?,
            encoder: Encoder::new(kind).map_err(|e| e.to_string())?,
            remote: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            can_send: n.can_send(),
            underrun: 0,
            earlier: LegStats::default(),
        })
    }

    /// The leg's figures over every session it had.
    pub fn stats(&self) -> LegStats {
        self.session.stats().after(&self.earlier)
    }
}

/// What one frame brought in on a leg besides its audio.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// Keys pressed (RFC 4733).
    pub digits: Vec<char>,
    /// The far end has sent nothing for the inactivity timeout.
    pub inactive: bool,
}

/// A leg's sockets, and its media once negotiated.
pub(super) struct MediaLeg {
    rtp: MediaSocket,
    rtcp: MediaSocket,
    pub media: Option<Media>,
    payload: Vec<u8>,
    /// The RTP port stays ours while the leg lives.
    _lease: PortLease,
    /// The RTCP CNAME.
    cname: String,
}

impl MediaLeg {
    pub fn new(sockets: RtpSockets, cname: String) -> std::io::Result<MediaLeg> {
        Ok(MediaLeg {
            rtp: MediaSocket::new(sockets.rtp)?,
            rtcp: MediaSocket::new(sockets.rtcp)?,
            media: None,
            payload: Vec::with_capacity(512),
            _lease: sockets.lease,
            cname,
        })
    }

    /// Starts, or restarts with a new codec, the leg's media session; the codec's name.
    pub fn set_media(
        &mut self,
        n: &Negotiated,
        inactivity: Duration,
    ) -> Result<&'static str, String> {
        let mut m = Media::new(n, &self.cname, inactivity, Instant::now())?;
        if let Some(old) = &self.media {
            m.earlier = old.stats();
        }
        self.media = Some(m);
        Ok(n.codec.name())
    }

    /// A re-negotiation: the same codec keeps the session (sequence numbers continue,
    /// RFC 3550); a new codec starts a new one. Returns the new codec's name if it changed.
    pub fn update_media(
        &mut self,
        n: &Negotiated,
        inactivity: Duration,
    ) -> Result<Option<&'static str>, String> {
        match &mut self.media {
            Some(m) if m.encoder.kind() == codec_kind(n.codec.codec) => {
                m.remote = n.remote_rtp;
                m.remote_rtcp = n.remote_rtcp;
                m.can_send = n.can_send() && !n.remote_rtp.ip().is_unspecified();
                Ok(None)
            }
            _ => self.set_media(n, inactivity).map(Some),
        }
    }

    /// Feeds the session what arrived since the last tick (without a session, it is read
    /// and dropped so that it does not pile up).
    pub fn receive(&mut self, now: TickTime, rtcp_too: bool) {
        let mut media = self.media.as_mut();
        self.rtp.drain(now, |data, from, at| {
            if let Some(m) = media.as_mut() {
                m.session.handle_rtp(data, from, at);
            }
        });
        if rtcp_too {
            self.rtcp.drain(now, |data, from, at| {
                if let Some(m) = media.as_mut() {
                    m.session.handle_rtcp(data, from, at);
                }
            });
        }
    }

    /// What the far end said in this frame, and what else it sent; `None` before the leg
    /// has media.
    pub fn hear(&mut self, now: Instant) -> Option<(AudioFrame, Heard)> {
        let m = self.media.as_mut()?;
        if now >= m.session.poll_timeout() {
            m.session.handle_timeout(now);
        }
        let mut heard = Heard::default();
        while let Some(ev) = m.session.poll_event() {
            match ev {
                RtpEvent::RemoteLatched(addr) => m.remote = addr,
                RtpEvent::RemoteRtcpLatched(addr) => m.remote_rtcp = addr,
                RtpEvent::Dtmf(tone) => heard.digits.push(tone.as_char()),
                RtpEvent::Inactive => heard.inactive = true,
                RtpEvent::SsrcChanged { old, new } => debug!(old, new, "SSRC changed"),
                RtpEvent::Bye => debug!("RTCP BYE"),
            }
        }
        let input = match m.session.pop_playout(now) {
            Playout::Frame(p) => {
                m.underrun = 0;
                m.decoder
                    .decode(&p)
                    .unwrap_or_else(|_| m.decoder.conceal(None))
            }
            Playout::Lost { next } => {
                m.underrun = 0;
                m.decoder.conceal(next.as_deref())
            }
            // A packet late for its slot mid-stream is concealed like a lost one; once the
            // far end has been silent for a while (hold, end of talkspurt) it is silence.
            Playout::Empty if m.underrun < CONCEAL_UNDERRUN => {
                m.underrun += 1;
                m.decoder.conceal(None)
            }
            Playout::Empty => AudioFrame::silence(),
        };
        Some((input, heard))
    }

    /// Sends `frame` (when the far end takes media) and any RTCP due.
    pub fn say(&mut self, frame: Option<&AudioFrame>, now: Instant) {
        let Some(m) = &mut self.media else { return };
        if let (true, Some(frame)) = (m.can_send, frame) {
            self.payload.clear();
            if m.encoder.encode(frame, &mut self.payload).is_ok() {
                let pkt = m.session.packetize(&self.payload, now);
                self.rtp.send_to(&pkt, m.remote);
            }
        }
        while let Some(pkt) = m.session.poll_rtcp() {
            self.rtcp.send_to(&pkt, m.remote_rtcp);
        }
    }

    pub fn stats(&self) -> Option<LegStats> {
        self.media.as_ref().map(Media::stats)
    }
}

pub(super) fn codec_kind(c: Codec) -> CodecKind {
    match c {
        Codec::Pcmu => CodecKind::Pcmu,
        Codec::Pcma => CodecKind::Pcma,
        Codec::Opus => CodecKind::Opus,
    }
}
