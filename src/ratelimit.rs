//! Per-source token buckets: how many new INVITEs one address may send per second.
//!
//! Sans-IO (the caller passes `now`) and bounded: when the table is full, idle sources are
//! forgotten first, so a spoofed-source flood cannot grow memory without limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most sources tracked at once.
const MAX_SOURCES: usize = 65_536;

/// A token bucket per source address.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once; a rate of 0 disables the limit.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `source`; false when the source is over its limit.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            self.evict_idle(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets that have refilled completely (their sources look like new ones anyway);
    /// if none has, drops the oldest half.
    fn evict_idle(&mut self, now: Instant) {
        let full_after = self.burst / self.rate;
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full_after);
        if self.buckets.len() >= MAX_SOURCES {
            let mut ages: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            self.buckets.retain(|_, b| b.last > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate_per_source() {
        let mut rl = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..20).filter(|_| rl.allow(a, t0)).count(), 5);
        assert!(rl.allow(b, t0), "another source has its own bucket");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| rl.allow(a, t1)).count(), 5);
    }

    #[test]
    fn zero_rate_disables() {
        let mut rl = RateLimiter::new(0, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| rl.allow(a, Instant::now())));
    }

    #[test]
    fn table_stays_bounded_under_spoofed_sources() {
        let mut rl = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            rl.allow(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(rl.buckets.len() <= MAX_SOURCES);
    }
}
