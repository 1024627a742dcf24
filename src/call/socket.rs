//! A call's RTP or RTCP socket, read on the call's 20 ms clock rather than on readiness.
//!
//! Waking a call task for every arriving packet costs an epoll event, a task switch and
//! often a thread wake-up, 50 times a second per leg; reading whatever arrived on the
//! frame tick costs none of that and delays nothing, because the jitter buffer only gives
//! out packets on the tick anyway. The arrival times the jitter buffer and the RFC 3550
//! jitter need come from the kernel (`SO_TIMESTAMPNS`), so reading late does not make a
//! steady stream look jittery.

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams read per socket per tick at most: a normal leg has one or two waiting; a flood
/// aimed at one port stays in (and overflows) that socket's kernel buffer instead of taking
/// the worker's time from the other calls.
const MAX_PER_TICK: usize = 16;

/// Largest datagram read whole; RTP with G.711 or Opus is far smaller, and longer ones are
/// truncated and then rejected by the RTP parser.
const BUF_LEN: usize = 2048;

pub(super) struct MediaSocket {
    socket: UdpSocket,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

/// The two clocks read once per tick, to turn the kernel's wall-clock receive times into
/// the monotonic instants the media session works in.
#[derive(Clone, Copy)]
pub(super) struct TickTime {
    pub now: Instant,
    wall: SystemTime,
}

impl TickTime {
    pub fn now() -> Self {
        Self {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// When a datagram stamped `received` (wall clock) arrived, on the monotonic clock; now
    /// when the stamp is missing or ahead (the wall clock was stepped).
    fn arrival(&self, received: Option<Duration>) -> Instant {
        let Some(received) = received else {
            return self.now;
        };
        let wall = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        wall.checked_sub(received)
            .and_then(|ago| self.now.checked_sub(ago))
            .unwrap_or(self.now)
    }
}

impl MediaSocket {
    /// Takes a non-blocking socket and asks the kernel to stamp what it receives.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        setsockopt(&socket, ReceiveTimestampns, &true)?;
        Ok(Self {
            socket,
            buf: vec![0; BUF_LEN],
            cmsg: nix::cmsg_space!(TimeSpec),
        })
    }

    /// Hands every datagram waiting (up to [`MAX_PER_TICK`]) to `f` with its sender and
    /// arrival time.
    pub fn drain(&mut self, tick: TickTime, mut f: impl FnMut(&[u8], SocketAddr, Instant)) {
        for _ in 0..MAX_PER_TICK {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let Ok(msg) = recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut self.cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) else {
                // EAGAIN: nothing more waiting. Any other error (an ICMP port unreachable
                // reported on the socket) concerns a datagram already gone: stop for this tick.
                return;
            };
            let received = msg.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::new(
                        u64::try_from(ts.tv_sec()).unwrap_or(0),
                        u32::try_from(ts.tv_nsec()).unwrap_or(0),
                    )),
                    _ => None,
                })
            });
            let len = msg.bytes;
            let from = msg.address.as_ref().and_then(socket_addr);
            if let Some(from) = from {
                f(&self.buf[..len], from, tick.arrival(received));
            }
        }
    }

    /// Sends without waiting; a datagram the kernel cannot take now is dropped, as the
    /// network would.
    pub fn send_to(&self, packet: &[u8], to: SocketAddr) {
        let _ = self.socket.send_to(packet, to);
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    a.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A media socket on loopback, its address, and a plain socket to send to it from.
    fn pair() -> (MediaSocket, SocketAddr, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let to = rx.local_addr().unwrap();
        (
            MediaSocket::new(rx).unwrap(),
            to,
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        )
    }

    #[test]
    fn drains_what_arrived_with_kernel_arrival_times() {
        let (mut rx, to, tx) = pair();
        let before = Instant::now();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two", to).unwrap();
        // Far longer than the kernel may take to deliver on a loaded machine, so that the
        // stamps tell arrival from reading whatever else runs.
        std::thread::sleep(Duration::from_millis(300));
        let tick = TickTime::now();
        let mut got = Vec::new();
        rx.drain(tick, |data, from, at| got.push((data.to_vec(), from, at)));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, b"one");
        assert_eq!(got[1].0, b"two");
        assert_eq!(got[0].1, tx.local_addr().unwrap());
        // Stamped when the kernel took them, not when they were read 300 ms later.
        for (_, _, at) in &got {
            assert!(
                *at >= before - Duration::from_millis(2),
                "{at:?} {before:?}"
            );
            assert!(tick.now.duration_since(*at) >= Duration::from_millis(150));
        }
        let mut more = 0;
        rx.drain(TickTime::now(), |_, _, _| more += 1);
        assert_eq!(more, 0);
    }

    #[test]
    fn a_flood_is_read_a_bounded_amount_per_tick() {
        let (mut rx, to, tx) = pair();
        for _ in 0..3 * MAX_PER_TICK {
            tx.send_to(&[0xff; 100], to).unwrap();
        }
        let mut n = 0;
        rx.drain(TickTime::now(), |_, _, _| n += 1);
        assert_eq!(n, MAX_PER_TICK);
    }
}
