//! Process-wide counters, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Plain atomics and small maps: the SIP and media paths bump them without awaiting, and a
//! scrape takes a snapshot. Label values that come from the wire (methods) are bounded so a
//! scanner cannot grow the label set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Which way a SIP message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Upper bounds (ms) of the jitter histogram buckets.
const JITTER_BUCKETS_MS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];
/// Upper bounds (s) of the speech latency histogram buckets: the goal is under 1 s.
const SPEECH_BUCKETS_S: [f64; 10] = [0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0];
/// Upper bounds (s) of the text-to-speech render histogram: espeak-ng takes about 0.1 s a
/// sentence, and a render is killed at its timeout (5 s by default).
const TTS_BUCKETS_S: [f64; 9] = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];

/// A Prometheus histogram with fixed bucket bounds.
struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// The sum of observations, in millionths of their unit.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        for (bucket, bound) in self.buckets.iter().zip(self.bounds) {
            if v <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        for (bucket, bound) in self.buckets.iter().zip(self.bounds) {
            let n = bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The methods counted by name; anything else is counted as `other`.
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "UPDATE",
    "INFO",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// All of baton's metrics.
pub struct Metrics {
    active_calls: AtomicI64,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    sip_requests: Mutex<BTreeMap<(&'static str, Direction), u64>>,
    sip_responses: Mutex<BTreeMap<(u16, Direction), u64>>,
    sip_malformed: AtomicU64,
    sip_dropped: AtomicU64,
    rtp_in: AtomicU64,
    rtp_out: AtomicU64,
    rtp_lost: AtomicU64,
    rtp_malformed: AtomicU64,
    jitter: Histogram<{ JITTER_BUCKETS_MS.len() }>,
    speech_final: Histogram<{ SPEECH_BUCKETS_S.len() }>,
    speech_audio_micros: AtomicU64,
    speech_busy_micros: AtomicU64,
    tts_renders: Mutex<BTreeMap<&'static str, u64>>,
    tts_failures: Mutex<BTreeMap<&'static str, u64>>,
    tts_render: Histogram<{ TTS_BUCKETS_S.len() }>,
    followups: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            active_calls: AtomicI64::new(0),
            calls: Mutex::default(),
            sip_requests: Mutex::default(),
            sip_responses: Mutex::default(),
            sip_malformed: AtomicU64::new(0),
            sip_dropped: AtomicU64::new(0),
            rtp_in: AtomicU64::new(0),
            rtp_out: AtomicU64::new(0),
            rtp_lost: AtomicU64::new(0),
            rtp_malformed: AtomicU64::new(0),
            jitter: Histogram::new(JITTER_BUCKETS_MS),
            speech_final: Histogram::new(SPEECH_BUCKETS_S),
            speech_audio_micros: AtomicU64::new(0),
            speech_busy_micros: AtomicU64::new(0),
            tts_renders: Mutex::default(),
            tts_failures: Mutex::default(),
            tts_render: Histogram::new(TTS_BUCKETS_S),
            followups: Mutex::default(),
        }
    }
}

impl Metrics {
    /// A follow-up ended up `state` (sent, failed or cancelled).
    pub fn followup(&self, state: crate::followup::State) {
        *lock(&self.followups).entry(state.as_str()).or_default() += 1;
    }

    /// A call was set up (answered or not yet): counts it as active.
    pub fn call_started(&self) {
        self.active_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ended with `result` (e.g. `completed`, `cancelled`, `rejected`, `timeout`).
    pub fn call_ended(&self, result: &'static str) {
        self.active_calls.fetch_sub(1, Ordering::Relaxed);
        self.call_result(result);
    }

    /// A call attempt that never became a call (404, 488, ...) ended with `result`.
    pub fn call_result(&self, result: &'static str) {
        *lock(&self.calls).entry(result).or_default() += 1;
    }

    /// Current number of active calls.
    pub fn active_calls(&self) -> i64 {
        self.active_calls.load(Ordering::Relaxed)
    }

    /// Counts a SIP request by method.
    pub fn sip_request(&self, method: &str, dir: Direction) {
        let m = KNOWN_METHODS
            .iter()
            .find(|k| **k == method)
            .copied()
            .unwrap_or("other");
        *lock(&self.sip_requests).entry((m, dir)).or_default() += 1;
    }

    /// Counts a SIP response by status code.
    pub fn sip_response(&self, status: u16, dir: Direction) {
        *lock(&self.sip_responses).entry((status, dir)).or_default() += 1;
    }

    /// Counts a SIP message that could not be parsed.
    pub fn sip_malformed(&self) {
        self.sip_malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a SIP message dropped by policy (rate limit, oversize, stray response).
    pub fn sip_dropped(&self) {
        self.sip_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds RTP packet counts of a leg: received, sent, lost, malformed.
    pub fn rtp(&self, received: u64, sent: u64, lost: u64, malformed: u64) {
        self.rtp_in.fetch_add(received, Ordering::Relaxed);
        self.rtp_out.fetch_add(sent, Ordering::Relaxed);
        self.rtp_lost.fetch_add(lost, Ordering::Relaxed);
        self.rtp_malformed.fetch_add(malformed, Ordering::Relaxed);
    }

    /// Records a leg's interarrival jitter (RFC 3550) at the end of the call.
    pub fn observe_jitter(&self, jitter_ms: f64) {
        self.jitter.observe(jitter_ms);
    }

    /// Records a final transcript: how long after the end of its utterance it came out.
    pub fn observe_speech_final(&self, latency: Duration) {
        self.speech_final.observe(latency.as_secs_f64());
    }

    /// Counts a transcription job: the seconds of audio it covered and the worker time
    /// it took (their ratio is the real-time factor).
    pub fn speech_job(&self, audio: Duration, busy: Duration) {
        self.speech_audio_micros
            .fetch_add(audio.as_micros() as u64, Ordering::Relaxed);
        self.speech_busy_micros
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a text-to-speech request by where its audio came from: `spoken`, `cached`
    /// or `fallback`.
    pub fn tts_rendered(&self, source: &'static str) {
        *lock(&self.tts_renders).entry(source).or_default() += 1;
    }

    /// Counts a text-to-speech request answered with the fallback prompt, by why
    /// (`missing`, `timeout`, `failed`, ...).
    pub fn tts_failed(&self, reason: &'static str) {
        *lock(&self.tts_failures).entry(reason).or_default() += 1;
    }

    /// Records how long one run of the speech synthesiser took, failed runs included.
    pub fn observe_tts_render(&self, took: Duration) {
        self.tts_render.observe(took.as_secs_f64());
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            &mut out,
            "baton_active_calls",
            "gauge",
            "Calls in progress.",
        );
        let _ = writeln!(out, "baton_active_calls {}", self.active_calls());

        header(&mut out, "baton_calls_total", "counter", "Calls by result.");
        for (result, n) in lock(&self.calls).iter() {
            let _ = writeln!(out, "baton_calls_total{{result=\"{result}\"}} {n}");
        }
        header(
            &mut out,
            "baton_sip_requests_total",
            "counter",
            "SIP requests by method and direction.",
        );
        for ((method, dir), n) in lock(&self.sip_requests).iter() {
            let _ = writeln!(
                out,
                "baton_sip_requests_total{{method=\"{method}\",direction=\"{}\"}} {n}",
                dir.as_str()
            );
        }
        header(
            &mut out,
            "baton_sip_responses_total",
            "counter",
            "SIP responses by status code and direction.",
        );
        for ((code, dir), n) in lock(&self.sip_responses).iter() {
            let _ = writeln!(
                out,
                "baton_sip_responses_total{{code=\"{code}\",direction=\"{}\"}} {n}",
                dir.as_str()
            );
        }
        header(
            &mut out,
            "baton_sip_malformed_total",
            "counter",
            "SIP messages that failed to parse.",
        );
        let _ = writeln!(out, "baton_sip_malformed_total {}", g(&self.sip_malformed));
        header(
            &mut out,
            "baton_sip_dropped_total",
            "counter",
            "SIP messages dropped by policy.",
        );
        let _ = writeln!(out, "baton_sip_dropped_total {}", g(&self.sip_dropped));

        header(
            &mut out,
            "baton_rtp_packets_total",
            "counter",
            "RTP packets by direction.",
        );
        let _ = writeln!(
            out,
            "baton_rtp_packets_total{{direction=\"in\"}} {}",
            g(&self.rtp_in)
        );
        let _ = writeln!(
            out,
            "baton_rtp_packets_total{{direction=\"out\"}} {}",
            g(&self.rtp_out)
        );
        header(
            &mut out,
            "baton_rtp_lost_packets_total",
            "counter",
            "RTP packets lost on the way in (ended legs).",
        );
        let _ = writeln!(out, "baton_rtp_lost_packets_total {}", g(&self.rtp_lost));
        header(
            &mut out,
            "baton_rtp_malformed_total",
            "counter",
            "RTP/RTCP datagrams that failed to parse.",
        );
        let _ = writeln!(out, "baton_rtp_malformed_total {}", g(&self.rtp_malformed));

        self.jitter.render(
            &mut out,
            "baton_rtp_jitter_ms",
            "Interarrival jitter of ended legs (RFC 3550), ms.",
        );
        self.speech_final.render(
            &mut out,
            "baton_speech_final_seconds",
            "From the end of an utterance (the voice activity detector's) to its final transcript.",
        );
        let secs = |a: &AtomicU64| g(a) as f64 / 1e6;
        header(
            &mut out,
            "baton_speech_audio_seconds_total",
            "counter",
            "Audio given to speech-to-text, partials included, s.",
        );
        let _ = writeln!(
            out,
            "baton_speech_audio_seconds_total {}",
            secs(&self.speech_audio_micros)
        );
        header(
            &mut out,
            "baton_speech_busy_seconds_total",
            "counter",
            "Worker time spent transcribing, s (over audio seconds: the real-time factor).",
        );
        let _ = writeln!(
            out,
            "baton_speech_busy_seconds_total {}",
            secs(&self.speech_busy_micros)
        );
        header(
            &mut out,
            "baton_tts_renders_total",
            "counter",
            "Text-to-speech requests by where the audio came from (spoken, cached, fallback).",
        );
        for (source, n) in lock(&self.tts_renders).iter() {
            let _ = writeln!(out, "baton_tts_renders_total{{source=\"{source}\"}} {n}");
        }
        header(
            &mut out,
            "baton_tts_failures_total",
            "counter",
            "Text-to-speech requests answered with the fallback prompt, by reason.",
        );
        for (reason, n) in lock(&self.tts_failures).iter() {
            let _ = writeln!(out, "baton_tts_failures_total{{reason=\"{reason}\"}} {n}");
        }
        self.tts_render.render(
            &mut out,
            "baton_tts_render_seconds",
            "Time one run of the speech synthesiser took, failures included.",
        );
        header(
            &mut out,
            "baton_followups_total",
            "counter",
            "Follow-up messages sent or given up on, by state.",
        );
        for (state, n) in lock(&self.followups).iter() {
            let _ = writeln!(out, "baton_followups_total{{state=\"{state}\"}} {n}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Locks a metrics map; a panic elsewhere while holding it leaves counts that are still valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_bounds_method_labels() {
        let m = Metrics::default();
        m.call_started();
        m.sip_request("INVITE", Direction::In);
        m.sip_request("X-SCAN-1", Direction::In);
        m.sip_request("X-SCAN-2", Direction::In);
        m.sip_response(200, Direction::Out);
        m.observe_jitter(3.0);
        let text = m.render();
        assert!(text.contains("baton_active_calls 1"));
        assert!(text.contains("baton_sip_requests_total{method=\"INVITE\",direction=\"in\"} 1"));
        assert!(text.contains("baton_sip_requests_total{method=\"other\",direction=\"in\"} 2"));
        assert!(text.contains("baton_sip_responses_total{code=\"200\",direction=\"out\"} 1"));
        assert!(text.contains("baton_rtp_jitter_ms_bucket{le=\"2\"} 0"));
        assert!(text.contains("baton_rtp_jitter_ms_bucket{le=\"5\"} 1"));
        assert!(text.contains("baton_rtp_jitter_ms_count 1"));
        assert!(text.contains("baton_rtp_jitter_ms_sum 3\n"));
        m.observe_speech_final(Duration::from_millis(400));
        m.speech_job(Duration::from_secs(3), Duration::from_millis(250));
        let text = m.render();
        assert!(text.contains("baton_speech_final_seconds_bucket{le=\"0.3\"} 0"));
        assert!(text.contains("baton_speech_final_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("baton_speech_final_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("baton_speech_audio_seconds_total 3\n"));
        assert!(text.contains("baton_speech_busy_seconds_total 0.25\n"));
        m.tts_rendered("cached");
        m.tts_failed("timeout");
        m.observe_tts_render(Duration::from_millis(120));
        let text = m.render();
        assert!(text.contains("baton_tts_renders_total{source=\"cached\"} 1\n"));
        assert!(text.contains("baton_tts_failures_total{reason=\"timeout\"} 1\n"));
        assert!(text.contains("baton_tts_render_seconds_bucket{le=\"0.1\"} 0"));
        assert!(text.contains("baton_tts_render_seconds_bucket{le=\"0.2\"} 1"));
    }
}
