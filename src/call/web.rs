//! An agent's leg to the softphone in their desktop (WebRTC): str0m runs ICE (lite: the
//! browser is the one behind NAT), DTLS-SRTP and RTP over one UDP port. Like the SIP legs
//! it is read and written on the call's 20 ms clock, and Opus is decoded to, and encoded
//! from, the call's 16 kHz frames.

use super::leg::Heard;
use super::socket::{MediaSocket, TickTime};
use super::RtpSockets;
use crate::rtp_ports::PortLease;
use baton_media::{AudioFrame, CodecKind, Decoder, Encoder};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{debug, info, warn};

/// Opus's RTP clock ticks per 20 ms frame (RFC 7587: always 48 kHz).
const OPUS_FRAME_TICKS: u64 = 960;

/// Frames heard but not yet played, at most (100 ms): beyond that the oldest go, so that a
/// burst after a stall does not delay the conversation for good.
const MAX_QUEUED: usize = 5;

/// Frames concealed after the browser's audio stops before the leg is taken as silent.
const CONCEAL_UNDERRUN: u32 = 4;

/// How long ICE and DTLS may take before the leg is given up.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

pub(super) struct WebLeg {
    rtc: Rtc,
    socket: MediaSocket,
    local: SocketAddr,
    mid: Mid,
    /// Our offer, until the browser's answer comes.
    pending: Option<SdpPendingOffer>,
    /// The Opus payload type both sides agreed on.
    pt: Option<Pt>,
    /// ICE and DTLS are done: media flows.
    connected: bool,
    /// When the browser's answer came, for the connect deadline.
    answered_at: Option<Instant>,
    decoder: Decoder,
    encoder: Encoder,
    heard: VecDeque<AudioFrame>,
    underrun: u32,
    last_heard: Option<Instant>,
    inactivity: Duration,
    media_time: u64,
    payload: Vec<u8>,
    /// str0m failed or ICE gave up: the leg is dead.
    failed: bool,
    _lease: PortLease,
}

impl WebLeg {
    /// A leg on `sockets` (its RTP port; WebRTC multiplexes RTCP on it), with the SDP
    /// offer for the browser. `ip` is the address the browser reaches baton at.
    pub fn offer(
        sockets: RtpSockets,
        ip: IpAddr,
        inactivity: Duration,
        now: Instant,
    ) -> Result<(WebLeg, String), String> {
        let local = SocketAddr::new(ip, sockets.port());
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().ok_or("no media to offer")?;
        let mut leg = WebLeg {
            rtc,
            socket: MediaSocket::new(sockets.rtp).map_err(|e| e.to_string())?,
            local,
            mid,
            pending: Some(pending),
            pt: None,
            connected: false,
            answered_at: None,
            decoder: Decoder::new(CodecKind::Opus).map_err(|e| e.to_string())?,
            encoder: Encoder::new(CodecKind::Opus).map_err(|e| e.to_string())?,
            heard: VecDeque::new(),
            underrun: 0,
            last_heard: None,
            inactivity,
            media_time: 0,
            payload: Vec::with_capacity(512),
            failed: false,
            _lease: sockets.lease,
        };
        leg.drain();
        Ok((leg, offer.to_sdp_string()))
    }

    /// The browser's SDP answer.
    pub fn answer(&mut self, sdp: &str, now: Instant) -> Result<(), String> {
        let pending = self.pending.take().ok_or("already answered")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad SDP: {e}"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer not usable: {e}"))?;
        self.pt = self.rtc.writer(self.mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
        });
        if self.pt.is_none() {
            return Err("the answer has no Opus".into());
        }
        self.answered_at = Some(now);
        self.drain();
        Ok(())
    }

    /// Feeds str0m what arrived since the last tick.
    pub fn receive(&mut self, now: TickTime) {
        let mut got = Vec::new();
        self.socket.drain(now, |data, from, _| {
            got.push((data.to_vec(), from));
        });
        for (data, source) in got {
            let Ok(contents) = data.as_slice().try_into() else {
                debug!(%source, "not STUN, DTLS or RTP: dropped");
                continue;
            };
            let input = Input::Receive(
                now.now,
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            if let Err(e) = self.rtc.handle_input(input) {
                debug!(error = %e, "WebRTC input refused");
                continue;
            }
            self.drain();
        }
    }

    /// What the agent said in this frame; `None` until the leg has media. `inactive` is
    /// set once the browser has gone quiet for the inactivity timeout, or the leg failed.
    pub fn hear(&mut self, now: Instant) -> Option<(AudioFrame, Heard)> {
        if self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain();
        }
        let mut heard = Heard::default();
        let stalled = !self.connected
            && self
                .answered_at
                .is_some_and(|t| now.saturating_duration_since(t) > CONNECT_WITHIN);
        if self.failed || stalled {
            heard.inactive = true;
            return Some((AudioFrame::silence(), heard));
        }
        if !self.connected {
            return None;
        }
        let frame = match self.heard.pop_front() {
            Some(f) => {
                self.underrun = 0;
                f
            }
            None if self.underrun < CONCEAL_UNDERRUN => {
                self.underrun += 1;
                self.decoder.conceal(None)
            }
            None => AudioFrame::silence(),
        };
        let since = *self.last_heard.get_or_insert(now);
        heard.inactive = now.saturating_duration_since(since) > self.inactivity;
        Some((frame, heard))
    }

    /// Sends `frame` to the browser once connected.
    pub fn say(&mut self, frame: Option<&AudioFrame>, now: Instant) {
        let (Some(frame), Some(pt), true) = (frame, self.pt, self.connected) else {
            return;
        };
        self.payload.clear();
        if self.encoder.encode(frame, &mut self.payload).is_err() {
            return;
        }
        let time = MediaTime::new(self.media_time, Frequency::FORTY_EIGHT_KHZ);
        self.media_time += OPUS_FRAME_TICKS;
        let Some(writer) = self.rtc.writer(self.mid) else {
            return;
        };
        if let Err(e) = writer.write(pt, now, time, self.payload.clone()) {
            debug!(error = %e, "WebRTC write failed");
        }
        self.drain();
    }

    /// Runs str0m until it waits: sends what it has to send, takes in what it heard.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => return,
                Ok(Output::Transmit(t)) => self.socket.send_to(&t.contents, t.destination),
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => {
                    warn!(error = %e, "WebRTC leg failed");
                    self.failed = true;
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                info!("WebRTC agent leg connected");
                self.connected = true;
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                info!("the desktop's WebRTC connection dropped");
                self.failed = true;
            }
            Event::MediaData(d) if Some(d.pt) == self.pt => match self.decoder.decode(&d.data) {
                Ok(frame) => {
                    self.last_heard = Some(d.network_time);
                    if self.heard.len() >= MAX_QUEUED {
                        self.heard.pop_front();
                    }
                    self.heard.push_back(frame);
                }
                Err(e) => debug!(error = %e, "Opus frame not decoded"),
            },
            _ => {}
        }
    }
}
