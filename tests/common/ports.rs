//! Free loopback ports, shared by the end-to-end tests and the benchmarks.

use std::net::{TcpListener, UdpSocket};

/// A port free on both UDP and TCP at 127.0.0.1 (SIP listens on both with one number).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else {
            continue;
        };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no port free on both UDP and TCP at 127.0.0.1");
}

/// A port free on TCP at 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral TCP port")
}
