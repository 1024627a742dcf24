//! Delivering a follow-up message to a webhook connector: one signed POST per try, and the
//! verdict the scheduler needs, delivered, worth another try (and when) or failed for good.
//!
//! The signature covers a timestamp as well as the body, so a receiver that refuses old
//! timestamps cannot be fed a captured request again later. The idempotency key stays the
//! same on every try of a message, so a try whose answer was lost sends nothing twice.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, RETRY_AFTER, USER_AGENT};
use ring::hmac;

use crate::config::ConnectorConfig;
use crate::outbound::root_cause;

/// Most of an error answer read: its start says what went wrong, and a receiver's error
/// page can be any size.
const MAX_ERROR_BODY: usize = 4 << 10;
/// Most characters of an error answer kept in the failure's message, to keep it one line.
const MAX_ERROR_CHARS: usize = 200;
/// Longest `Retry-After` obeyed: a receiver asking for more is as good as down.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Why a try did not deliver the message, and whether trying again could.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The receiver was busy, down or out of reach, so a later try may succeed; otherwise
    /// it refused the message and would refuse it again.
    pub retry: bool,
    /// How long a busy receiver asked to be left alone (`Retry-After`), at most a day.
    pub retry_after: Option<Duration>,
    /// One line for the log and the task's record: the status and the start of the
    /// answer, or the network error. Never the URL, which may hold a token.
    pub message: String,
}

/// The `X-Baton-Signature` of a message: `v1=` and the hex HMAC-SHA256 of
/// `"{timestamp}.{body}"`. The version prefix lets the scheme change without breaking
/// receivers that check it.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let tag = hmac_sha256(secret, &[format!("{timestamp}.").as_bytes(), body]);
    let mut out = String::with_capacity(3 + 2 * tag.as_ref().len());
    out.push_str("v1=");
    for b in tag.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

/// Makes one try at delivering `body` (JSON) and returns the receiver's 2xx status.
/// `now_unix_secs` is passed in so that the caller's clock, not this function's, dates
/// the signature.
pub async fn post(
    http: &reqwest::Client,
    connector: &ConnectorConfig,
    body: &[u8],
    idempotency_key: &str,
    now_unix_secs: u64,
) -> Result<u16, Failure> {
    let response = http
        .post(connector.url.clone())
        .timeout(connector.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("baton/", env!("CARGO_PKG_VERSION")))
        .header("Idempotency-Key", idempotency_key)
        .header("X-Baton-Timestamp", now_unix_secs)
        .header(
            "X-Baton-Signature",
            signature(&connector.secret, now_unix_secs, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| transport_failure(&e, connector.timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let retry = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
    let retry_after = if retry {
        retry_after(response.headers())
    } else {
        None
    };
    let message = if status.is_redirection() {
        match response.headers().get(LOCATION) {
            Some(target) => format!(
                "the receiver redirected to {} ({status}); redirects are not followed",
                excerpt(target.as_bytes())
            ),
            None => format!(
                "the receiver redirected ({status}) without a Location; redirects are not followed"
            ),
        }
    } else {
        let text = excerpt(&body_start(response).await);
        if text.is_empty() {
            format!("the receiver answered {status}")
        } else {
            format!("the receiver answered {status}: {text}")
        }
    };
    Err(Failure {
        retry,
        retry_after,
        message,
    })
}

fn transport_failure(error: &reqwest::Error, timeout: Duration) -> Failure {
    let (retry, message) = if error.is_builder() {
        // The URL was checked at start-up, so this is a key that cannot be a header value;
        // it would be refused the same way on every try.
        (
            false,
            format!("the request could not be built: {}", root_cause(error)),
        )
    } else if error.is_timeout() {
        (
            true,
            format!("no answer within {}", humantime::format_duration(timeout)),
        )
    } else if error.is_connect() {
        (true, format!("could not connect: {}", root_cause(error)))
    } else {
        (true, format!("the request failed: {}", root_cause(error)))
    };
    Failure {
        retry,
        retry_after: None,
        message,
    }
}

/// Up to [`MAX_ERROR_BODY`] bytes of the answer; the rest is never read.
async fn body_start(mut response: reqwest::Response) -> Vec<u8> {
    let mut start = Vec::new();
    while start.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY - start.len();
                start.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // What arrived before the answer broke off still explains the status.
            Ok(None) | Err(_) => break,
        }
    }
    start
}

/// The first [`MAX_ERROR_CHARS`] characters of what the receiver sent, on one line.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line: String = text
        .trim()
        .chars()
        .take(MAX_ERROR_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.trim_end().to_owned()
}

/// `Retry-After` in delta-seconds. An HTTP-date is ignored: it depends on the receiver's
/// clock agreeing with ours, and the backoff is a safe answer without it.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for a u64 still means "a very long time".
    let secs = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The wait before the next try after `failed_attempts` failures (0 counts as 1):
/// `backoff` doubled for each failure after the first, never beyond `max_backoff`, so a
/// receiver that is down for a while is not hammered but is retried soon after a blip.
pub fn backoff(connector: &ConnectorConfig, failed_attempts: u32) -> Duration {
    1u32.checked_shl(failed_attempts.saturating_sub(1))
        .and_then(|factor| connector.backoff.checked_mul(factor))
        .map_or(connector.max_backoff, |wait| {
            wait.min(connector.max_backoff)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Outbound;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post as route;
    use axum::Router;
    use tokio::sync::mpsc;

    const SECRET: &[u8] = b"0123456789abcdef-webhook";

    type Seen = mpsc::UnboundedSender<(HeaderMap, Bytes)>;

    async fn accept(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        seen.send((headers, body)).unwrap();
        StatusCode::ACCEPTED
    }

    /// A receiver on a free local port, answering the ways a real one can.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
        let (seen, requests) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/ok", route(accept))
            .route(
                "/busy",
                route(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "7")],
                        "down for maintenance",
                    )
                }),
            )
            .route(
                "/bad",
                route(|| async {
                    let body = format!(
                        "{{\"error\": \"no phone number\"}}\n{}",
                        "x".repeat(1 << 20)
                    );
                    (StatusCode::BAD_REQUEST, body)
                }),
            )
            .route(
                "/moved",
                route(|| async {
                    (
                        StatusCode::FOUND,
                        [("location", "https://elsewhere.example/hook")],
                    )
                }),
            )
            .route("/stuck", route(std::future::pending::<StatusCode>))
            .with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), requests)
    }

    fn connector(url: &str) -> ConnectorConfig {
        ConnectorConfig {
            url: url.parse().unwrap(),
            secret: SECRET.to_vec(),
            timeout: Duration::from_secs(5),
            attempts: 6,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
        }
    }

    async fn try_post(url: &str) -> Result<u16, Failure> {
        let outbound = Outbound::new(&[]).unwrap();
        post(
            outbound.http(),
            &connector(url),
            b"{}",
            "task-1",
            1_700_000_000,
        )
        .await
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            tag.as_ref(),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn signature_covers_the_timestamp_then_the_body() {
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"),
            "v1=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }

    #[tokio::test]
    async fn delivered_message_carries_headers_and_a_valid_signature() {
        let (base, mut requests) = receiver().await;
        let body = br#"{"to": "+447700900123", "text": "Your form: https://f.example/1"}"#;
        let outbound = Outbound::new(&[]).unwrap();
        let status = post(
            outbound.http(),
            &connector(&format!("{base}/ok")),
            body,
            "task-42-try",
            1_700_000_123,
        )
        .await;
        assert_eq!(status, Ok(202));
        let (headers, received) = requests.recv().await.unwrap();
        assert_eq!(&received[..], body);
        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(
            header("user-agent"),
            format!("baton/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(header("idempotency-key"), "task-42-try");
        assert_eq!(header("x-baton-timestamp"), "1700000123");
        // Checked the way a receiver would: with the secret, over "timestamp.body".
        let signature = header("x-baton-signature");
        let tag = unhex(signature.strip_prefix("v1=").unwrap());
        let mut signed = b"1700000123.".to_vec();
        signed.extend_from_slice(&received);
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        assert!(hmac::verify(&key, &signed, &tag).is_ok());
    }

    #[tokio::test]
    async fn busy_receiver_is_retried_when_it_asks() {
        let (base, _requests) = receiver().await;
        assert_eq!(
            try_post(&format!("{base}/busy")).await,
            Err(Failure {
                retry: true,
                retry_after: Some(Duration::from_secs(7)),
                message: "the receiver answered 503 Service Unavailable: down for maintenance"
                    .to_owned(),
            })
        );
    }

    #[tokio::test]
    async fn refused_message_is_permanent_and_says_why() {
        let (base, _requests) = receiver().await;
        let failure = try_post(&format!("{base}/bad")).await.unwrap_err();
        assert!(!failure.retry);
        assert_eq!(failure.retry_after, None);
        let want = "the receiver answered 400 Bad Request: {\"error\": \"no phone number\"} xxx";
        assert!(failure.message.starts_with(want), "{}", failure.message);
        assert!(
            failure.message.len() < 250,
            "only the start of the answer: {}",
            failure.message
        );
    }

    #[tokio::test]
    async fn redirect_is_permanent() {
        let (base, _requests) = receiver().await;
        assert_eq!(
            try_post(&format!("{base}/moved")).await,
            Err(Failure {
                retry: false,
                retry_after: None,
                message: "the receiver redirected to https://elsewhere.example/hook (302 Found); \
                          redirects are not followed"
                    .to_owned(),
            })
        );
    }

    #[tokio::test]
    async fn unreachable_or_stuck_receiver_is_retried() {
        // Nothing listens on a port just let go of.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let refused = try_post(&url).await.unwrap_err();
        assert!(refused.retry);
        assert_eq!(refused.retry_after, None);
        assert!(
            refused.message.starts_with("could not connect: "),
            "{}",
            refused.message
        );
        assert!(!refused.message.contains(&url), "{}", refused.message);

        let (base, _requests) = receiver().await;
        let mut quick = connector(&format!("{base}/stuck"));
        quick.timeout = Duration::from_millis(100);
        let outbound = Outbound::new(&[]).unwrap();
        let stuck = post(outbound.http(), &quick, b"{}", "task-1", 0)
            .await
            .unwrap_err();
        assert_eq!(
            stuck,
            Failure {
                retry: true,
                retry_after: None,
                message: "no answer within 100ms".to_owned(),
            }
        );
    }

    #[test]
    fn retry_after_takes_only_delta_seconds() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse("90000"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("1.5"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut hook = connector("https://hooks.example.com/");
        let waits: Vec<u64> = (0..=12).map(|n| backoff(&hook, n).as_secs()).collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        for n in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(backoff(&hook, n), Duration::from_secs(600), "{n}");
        }
        hook.backoff = Duration::from_millis(10);
        hook.max_backoff = Duration::from_secs(86_400);
        assert_eq!(backoff(&hook, 3), Duration::from_millis(40));
        assert_eq!(backoff(&hook, u32::MAX), Duration::from_secs(86_400));
    }
}
