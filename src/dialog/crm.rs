//! Customer data from a CRM over HTTP, for the dialog's `fetch = { url = ... }` nodes: one
//! GET, bounded in time and size, whose answer must be JSON.

use crate::outbound::Outbound;
use serde_json::Value;
use std::time::Duration;

/// Largest answer read: customer data is small, and a bigger answer is a misconfigured
/// URL rather than something to hold in memory for every call.
const MAX_BODY: usize = 1 << 20;

/// GETs `url` as JSON, the whole exchange within `timeout`. The error is one short line
/// for the call's context, and never holds what the CRM sent.
pub async fn get_json(outbound: &Outbound, url: &str, timeout: Duration) -> Result<Value, String> {
    let body = outbound
        .get(url, "application/json", timeout, MAX_BODY)
        .await?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get as route;
    use axum::Router;

    /// A CRM on a free local port, answering the ways a real one can go wrong.
    async fn crm() -> String {
        let app = Router::new()
            .route(
                "/customers/C-1/accounts",
                route(|| async {
                    (
                        [("content-type", "application/json")],
                        r#"[{"name": "Current", "balance": 412.5}]"#,
                    )
                }),
            )
            .route(
                "/down",
                route(|| async { (StatusCode::SERVICE_UNAVAILABLE, "secret stack trace") }),
            )
            .route("/text", route(|| async { "<html>secret</html>" }))
            .route(
                "/huge",
                route(|| async {
                    // Streamed without a Content-Length: only counting the bytes catches it.
                    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
                    Body::from_stream(futures_util::stream::iter(chunks))
                }),
            )
            .route(
                "/slow",
                route(|| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    "{}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn answers_are_json_within_bounds() {
        let base = crm().await;
        let outbound = Outbound::new(&[]).unwrap();
        let get = |path: &str, ms: u64| {
            let url = format!("{base}{path}");
            let outbound = outbound.clone();
            async move { get_json(&outbound, &url, Duration::from_millis(ms)).await }
        };
        assert_eq!(
            get("/customers/C-1/accounts", 2_000).await,
            Ok(serde_json::json!([{"name": "Current", "balance": 412.5}]))
        );
        assert_eq!(
            get("/down", 2_000).await,
            Err("the server answered 503 Service Unavailable".to_owned())
        );
        let not_json = get("/text", 2_000).await.unwrap_err();
        assert!(
            not_json.starts_with("not JSON: ") && !not_json.contains("secret"),
            "{not_json}"
        );
        assert_eq!(
            get("/huge", 2_000).await,
            Err(format!("the answer is over {MAX_BODY} bytes"))
        );
        assert_eq!(
            get("/slow", 200).await,
            Err("no answer within 200ms".to_owned())
        );
        // Nothing listens on a port just let go of.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        let refused = get_json(&outbound, &url, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            refused.starts_with("could not reach the server: "),
            "{refused}"
        );
        assert!(!refused.contains(&url), "{refused}");
    }
}
