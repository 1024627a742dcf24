//! Hands out even RTP ports (RTCP on the odd one above) from the configured range.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A pool of even ports; a port is in use until its guard is dropped.
pub struct PortPool {
    low: u16,
    high: u16,
    state: Mutex<PoolState>,
}

struct PoolState {
    next: u16,
    used: BTreeSet<u16>,
}

/// An allocated RTP port; returned to the pool on drop.
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortPool {
    /// A pool over `low..=high` (inclusive; only even ports below `high` are used).
    pub fn new(low: u16, high: u16) -> PortPool {
        let low = low + (low % 2);
        PortPool {
            low,
            high,
            state: Mutex::new(PoolState {
                next: low,
                used: BTreeSet::new(),
            }),
        }
    }

    /// The next free even port, round-robin so a just-freed port is not reused at once
    /// (late packets of an old call would land in a new one).
    pub fn take(&self) -> Option<u16> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slots = usize::from((self.high - self.low) / 2);
        for _ in 0..slots {
            let port = s.next;
            s.next = if port + 2 >= self.high {
                self.low
            } else {
                port + 2
            };
            if s.used.insert(port) {
                return Some(port);
            }
        }
        None
    }

    fn give_back(&self, port: u16) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.used.remove(&port);
    }

    /// Takes a port that goes back to the pool when the lease is dropped.
    pub fn lease(self: &Arc<Self>) -> Option<PortLease> {
        self.take().map(|port| PortLease {
            pool: self.clone(),
            port,
        })
    }
}

impl PortLease {
    /// The leased RTP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.give_back(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_round_robin_until_exhausted() {
        let pool = PortPool::new(20001, 20010);
        let ports: Vec<u16> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(ports, vec![20002, 20004, 20006, 20008]);
        pool.give_back(20004);
        assert_eq!(pool.take(), Some(20004));
        let pool = Arc::new(PortPool::new(30000, 30004));
        let lease = pool.lease().unwrap();
        assert_eq!(pool.take(), Some(30002));
        assert_eq!(pool.take(), None);
        drop(lease);
        assert_eq!(pool.take(), Some(30000));
        assert_eq!(pool.take(), None);
    }
}
