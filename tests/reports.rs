//! Escalation reports over real sockets: a fresh baton answers the JSON, the CSV and the
//! `/reports` page with empty but valid reports and refuses bad parameters by name; after
//! two SIPp callers, one pressing 0 for a person and one the bot greets and lets go, the
//! reports count both calls, the one escalation and its reason. Only operators and bots
//! see them.

mod common;

use common::{http_request, Baton, Sipp, Transport};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const BOT: &str = "bot-token-0123456789";
const AGENT: &str = "agent-a7-token-0123456789";

const PLAN: &str = "name = \"esc\"\nmatch = [\"esc\"]\n\n\
    [[step]]\nbot = \"dialog\"\n\n\
    [dialog]\nstart = \"greet\"\n\
    [dialog.node.greet]\nsay = \"How can I help?\"\nexpect = \"text\"\nslot = \"request\"\n\
    next = \"bye\"\ntimeout_secs = 10\n\
    [dialog.node.bye]\nsay = \"Thank you, goodbye.\"\nhangup = true\n";

/// A bot that greets the caller and hangs up: a call of the bot's, never escalated.
const HELLO: &str = "name = \"hello\"\nmatch = [\"hello\"]\n\n\
    [[step]]\nbot = \"dialog\"\n\n\
    [dialog]\nstart = \"greet\"\n\
    [dialog.node.greet]\nsay = \"Hello, and goodbye.\"\nhangup = true\n";

const CSV_HEADER: &str = "period,start,group,key,calls,escalated,rate";

/// `GET path` with `token`: status and body.
fn get_as(baton: &Baton, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    http_request(baton.http, "GET", path, &headers, "")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The `Content-Type` of `GET path` as the admin, read from the raw response.
fn content_type(baton: &Baton, path: &str) -> String {
    let mut stream = TcpStream::connect(baton.http).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Connection: close\r\n\r\n",
        baton.http
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8_lossy(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Content-Type for {path}: {head}"))
}

/// Asserts that the SVG documents of `page` are closed and that it links to the JSON and
/// the CSV.
fn assert_page(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert_eq!(page.matches("<svg").count(), 2, "{page}");
    assert_eq!(page.matches("</svg>").count(), 2, "{page}");
    assert!(
        page.contains("/v1/reports/escalations?period=week&amp;format=json"),
        "{page}"
    );
    assert!(
        page.contains("/v1/reports/escalations?period=week&amp;format=csv"),
        "{page}"
    );
}

/// Calls `esc`, presses 0 (then # and 7), and hangs up.
fn call_pressing_0(baton: &Baton) {
    let run = Sipp::new(baton, "uac_dtmf_info.xml", Transport::Udp)
        .user("esc")
        .var("FIRST_KEY", "0")
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    baton.wait_ended(&run.call_id, Duration::from_secs(5));
}

/// Calls `hello`, says nothing, and waits for the bot to hang up.
fn call_hello(baton: &Baton) {
    let run = Sipp::new(baton, "uac_silent.xml", Transport::Udp)
        .user("hello")
        .var("WAIT_MS", 15_000)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    baton.wait_ended(&run.call_id, Duration::from_secs(5));
}

#[test]
fn reports_count_the_bots_calls_and_escalations_and_refuse_bad_parameters() {
    let mut baton = Baton::builder("reports")
        .dialplan("esc", PLAN)
        .dialplan("hello", HELLO)
        .config(&format!(
            "[[api_token]]\ntoken = \"{BOT}\"\nrole = \"bot\"\n\
             [[api_token]]\ntoken = \"{AGENT}\"\nrole = \"agent\"\nagent = \"a7\"\n\
             [[api_token]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
        ))
        .token(ADMIN)
        .start();

    // A fresh baton: empty, valid reports.
    let empty = baton.get_json("/v1/reports/escalations");
    assert_eq!(empty["period"], "week", "{empty:#}");
    assert_eq!(empty["periods"], Value::Array(Vec::new()), "{empty:#}");
    assert_eq!(empty["total"]["calls"], 0, "{empty:#}");
    assert_eq!(empty["total"]["escalated"], 0, "{empty:#}");
    assert_eq!(empty["total"]["rate"], 0.0, "{empty:#}");
    let month = baton.get_json("/v1/reports/escalations?period=month&from=0&to=1");
    assert_eq!(month["periods"][0]["period"], "1970-01", "{month:#}");
    assert_eq!(month["periods"][0]["calls"], 0, "{month:#}");
    let (status, csv) = baton.get("/v1/reports/escalations?format=csv");
    assert_eq!(
        (status, csv.as_str()),
        (200, format!("{CSV_HEADER}\r\n").as_str())
    );
    assert_eq!(
        content_type(&baton, "/v1/reports/escalations?format=csv"),
        "text/csv; charset=utf-8"
    );
    let (status, page) = baton.get("/reports");
    assert_eq!(status, 200, "{page}");
    assert!(
        content_type(&baton, "/reports").starts_with("text/html"),
        "the page is HTML"
    );
    assert_page(&page);
    assert!(page.contains("No calls in this range"), "{page}");

    for (query, name) in [
        ("period=day", "period"),
        ("from=yesterday", "from"),
        ("to=-5", "to"),
        ("from=10&to=5", "to"),
        ("format=xml", "format"),
        ("colour=red", "colour"),
        ("from=0&to=9000000000000000000", "from, to"),
    ] {
        let path = format!("/v1/reports/escalations?{query}");
        let (status, body) = baton.get(&path);
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{name}:")),
            "{path}: {message}"
        );
    }
    let (status, body) = baton.get("/reports?format=csv");
    assert_eq!(status, 400, "the page has no format: {body}");

    for path in ["/v1/reports/escalations", "/reports"] {
        assert_eq!(get_as(&baton, path, Some(AGENT)).0, 403, "{path}: agents");
        assert_eq!(get_as(&baton, path, None).0, 401, "{path}: no token");
        assert_eq!(get_as(&baton, path, Some(BOT)).0, 200, "{path}: bots");
    }

    // Two calls with the bot: one presses 0 for a person, the other is greeted and let go.
    call_pressing_0(&baton);
    call_hello(&baton);
    // Each call's context reaches the archive as it ends, a moment after the BYE.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = baton.get_json("/v1/reports/escalations");
        if report["total"]["calls"] == 2 || Instant::now() >= deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let dump = format!("{report:#}");
    let total = &report["total"];
    assert_eq!(total["calls"], 2, "{dump}");
    assert_eq!(total["escalated"], 1, "{dump}");
    assert_eq!(total["rate"], 0.5, "{dump}");
    let asked = total["by_reason"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["reason"] == "caller_request")
        .unwrap_or_else(|| panic!("caller_request: {dump}"));
    assert_eq!(asked["escalated"], 1, "{dump}");
    assert_eq!(asked["share"], 0.5, "{dump}");
    let periods = report["periods"].as_array().expect("periods");
    let calls: u64 = periods.iter().filter_map(|p| p["calls"].as_u64()).sum();
    assert_eq!(calls, 2, "{dump}");
    let intents = total["by_intent"].as_array().expect("by_intent");
    let escalated: u64 = intents.iter().filter_map(|i| i["escalated"].as_u64()).sum();
    assert_eq!(
        escalated, 1,
        "every escalation has an intent, or none: {dump}"
    );

    let month = baton.get_json("/v1/reports/escalations?period=month");
    assert_eq!(month["total"]["calls"], 2, "{month:#}");
    let (_, csv) = baton.get("/v1/reports/escalations?format=csv");
    assert!(csv.contains(",total,,2,1,0.5000\r\n"), "{csv}");
    assert!(
        csv.contains(",reason,caller_request,2,1,0.5000\r\n"),
        "{csv}"
    );
    let (status, page) = baton.get("/reports");
    assert_eq!(status, 200, "{page}");
    assert_page(&page);
    assert!(page.contains("<polyline"), "{page}");
    assert!(page.contains(">caller_request</text>"), "{page}");
    baton.assert_alive();
}
