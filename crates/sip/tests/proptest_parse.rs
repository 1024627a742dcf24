//! Property tests of the parser and serializer: no input panics, generated messages survive
//! write → parse unchanged, and damaged RFC 4475 messages never panic.

use std::sync::OnceLock;

use baton_sip::parse::{frame, parse_message, salvage, Framing};
use baton_sip::{
    AuthParams, CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Refresher,
    Request, Response, SessionExpires, SipUri, TelUri, Uri, Via,
};
use proptest::prelude::*;

const TOKEN: &str = "[A-Za-z0-9.!%*_+`'~-]{1,10}";

fn token() -> impl Strategy<Value = String> {
    TOKEN.prop_map(String::from)
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Options),
        Just(Method::Register),
        Just(Method::Update),
        Just(Method::Prack),
        Just(Method::Refer),
        token().prop_map(|t| Method::from_token(&t)),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,6}){0,2}",
        "(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}",
        "\\[(2001:db8::[0-9a-f]{1,4}|::1)\\]",
    ]
}

/// Any text: control characters, `%`, `@` and non-ASCII all need escaping in a URI.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 1..=max).prop_map(|c| c.into_iter().collect())
}

fn uri_param() -> impl Strategy<Value = Param> {
    (
        any_text(6),
        proptest::option::of(any_text(6).prop_map(String::from)),
    )
        .prop_map(|(name, value)| Param { name, value })
}

fn sip_uri(with_headers: bool) -> impl Strategy<Value = SipUri> {
    let headers = if with_headers { 0..3usize } else { 0..1usize };
    (
        any::<bool>(),
        proptest::option::of((any_text(10), proptest::option::of(any_text(6)))),
        host(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(uri_param(), 0..3),
        proptest::collection::vec((any_text(5), any_text(5)), headers),
    )
        .prop_map(move |(secure, userinfo, host, port, params, headers)| {
            let (user, password) = match userinfo {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            SipUri {
                secure,
                user,
                password,
                host,
                port,
                params,
                headers: if with_headers { headers } else { vec![] },
            }
        })
}

fn uri(with_headers: bool) -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri(with_headers).prop_map(Uri::Sip),
        1 => ("\\+?[0-9]{1,12}", proptest::collection::vec((token(), proptest::option::of(token())), 0..2))
            .prop_map(|(number, params)| Uri::Tel(TelUri {
                number,
                params: params.into_iter().map(|(name, value)| Param { name, value }).collect(),
            })),
        1 => ("[a-z][a-z0-9+.-]{0,5}", "[A-Za-z0-9:/._~-]{1,12}")
            .prop_filter("typed scheme", |(s, _)| !matches!(s.as_str(), "sip" | "sips" | "tel"))
            .prop_map(|(scheme, rest)| Uri::Other { scheme, rest }),
    ]
}

fn header_param() -> impl Strategy<Value = Param> {
    (
        token(),
        proptest::option::of(prop_oneof![
            token(),
            "\"[a-z ,;<>]{0,6}\"".prop_map(String::from)
        ]),
    )
        .prop_map(|(name, value)| Param { name, value })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        proptest::option::of("[^\r\n]{0,12}"),
        uri(true),
        proptest::collection::vec(header_param(), 0..3),
    )
        .prop_map(|(display, uri, params)| NameAddr {
            display,
            uri,
            params,
        })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just("UDP".to_string()),
            Just("TCP".to_string()),
            "[A-Z]{1,5}".prop_map(String::from)
        ],
        host(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(header_param(), 0..3),
    )
        .prop_map(|(transport, host, port, params)| Via {
            transport,
            host,
            port,
            params,
        })
}

fn auth() -> impl Strategy<Value = AuthParams> {
    (
        token(),
        proptest::collection::vec((token(), "[^\r\n]{0,8}"), 0..4),
    )
        .prop_map(|(scheme, params)| AuthParams { scheme, params })
}

/// Headers that may appear any number of times, in any order.
fn optional_header() -> impl Strategy<Value = Header> {
    prop_oneof![
        via().prop_map(Header::Via),
        Just(Header::Contact(Contact::Star)),
        name_addr().prop_map(|a| Header::Contact(Contact::Addr(a))),
        name_addr().prop_map(Header::Route),
        name_addr().prop_map(Header::RecordRoute),
        proptest::collection::vec(token(), 0..3).prop_map(Header::Require),
        proptest::collection::vec(token(), 0..3).prop_map(Header::Supported),
        proptest::collection::vec(token(), 0..3).prop_map(Header::Unsupported),
        proptest::collection::vec(method(), 0..4).prop_map(Header::Allow),
        auth().prop_map(Header::Authorization),
        auth().prop_map(Header::WwwAuthenticate),
        auth().prop_map(Header::ProxyAuthenticate),
        ("X-[A-Za-z0-9-]{1,8}", "[^\r\n]{0,20}").prop_map(|(name, value)| Header::Other {
            name,
            value: value.trim_matches([' ', '\t']).to_string(),
        }),
    ]
}

/// Headers that may appear at most once.
fn single_headers() -> impl Strategy<Value = Vec<Header>> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(prop_oneof![
            Just("application/sdp".to_string()),
            Just("text/plain;charset=utf-8".to_string())
        ]),
        proptest::option::of((
            any::<u32>(),
            proptest::option::of(prop_oneof![Just(Refresher::Uac), Just(Refresher::Uas)]),
            proptest::collection::vec(header_param(), 0..2),
        )),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(mf, ct, se, min_se)| {
            let mut v = Vec::new();
            v.extend(mf.map(Header::MaxForwards));
            v.extend(ct.map(Header::ContentType));
            if let Some((seconds, refresher, mut params)) = se {
                params.retain(|p| !p.name.eq_ignore_ascii_case("refresher"));
                v.push(Header::SessionExpires(SessionExpires {
                    seconds,
                    refresher,
                    params,
                }));
            }
            v.extend(min_se.map(Header::MinSe));
            v
        })
}

/// A valid header list for a message whose CSeq method is `m`, with Content-Length for `body`.
fn headers(m: Method, body_len: usize) -> impl Strategy<Value = Headers> {
    (
        via(),
        name_addr(),
        name_addr(),
        "[A-Za-z0-9.!%*_+`'~@:-]{1,20}",
        any::<u32>(),
        single_headers(),
        proptest::collection::vec(optional_header(), 0..6),
    )
        .prop_flat_map(move |(via, from, to, call_id, seq, singles, optional)| {
            let mut all = vec![
                Header::Via(via),
                Header::From(from),
                Header::To(to),
                Header::CallId(call_id),
                Header::CSeq(CSeq {
                    seq,
                    method: m.clone(),
                }),
                Header::ContentLength(body_len),
            ];
            all.extend(singles);
            all.extend(optional);
            Just(all).prop_shuffle().prop_map(Headers)
        })
}

fn request() -> impl Strategy<Value = Request> {
    (
        method(),
        uri(false),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_flat_map(|(method, uri, body)| {
            headers(method.clone(), body.len()).prop_map(move |headers| Request {
                method: method.clone(),
                uri: uri.clone(),
                headers,
                body: body.clone(),
            })
        })
}

fn response() -> impl Strategy<Value = Response> {
    (
        100u16..=699,
        "[^\r\n]{0,20}",
        method(),
        proptest::collection::vec(any::<u8>(), 0..32),
    )
        .prop_flat_map(|(status, reason, method, body)| {
            let reason = reason.trim().to_string();
            headers(method, body.len()).prop_map(move |headers| Response {
                status,
                reason: reason.clone(),
                headers,
                body: body.clone(),
            })
        })
}

fn torture_messages() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sip/rfc4475");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    })
}

/// Feeds bytes to every entry point; none may panic, and framing must stay in bounds.
fn exercise(bytes: &[u8]) {
    let _ = parse_message(bytes);
    let _ = salvage(bytes);
    match frame(bytes) {
        Framing::Complete { len } | Framing::KeepAlive { len } => {
            assert!(len > 0 && len <= bytes.len());
            let _ = parse_message(&bytes[..len]);
        }
        Framing::Incomplete | Framing::Invalid(_) => {}
    }
    if let Ok(m) = parse_message(bytes) {
        // Whatever parses must be writable and parse back.
        parse_message(&m.to_bytes()).expect("a parsed message re-parses after writing");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn sip_shaped_text_never_panics(
        start in prop_oneof![
            Just("INVITE sip:a@b SIP/2.0".to_string()),
            Just("SIP/2.0 200 OK".to_string()),
            "[A-Z]{1,6} [ -~]{0,20} SIP/2\\.0",
        ],
        lines in proptest::collection::vec(
            (prop_oneof![
                Just("Via"), Just("v"), Just("From"), Just("To"), Just("Call-ID"), Just("CSeq"),
                Just("Contact"), Just("Route"), Just("Content-Length"), Just("l"), Just("Allow"),
                Just("Authorization"), Just("Session-Expires"), Just("Min-SE"), Just("Require"),
                Just("Max-Forwards"), Just("Content-Type"), Just("X-Y"),
            ], "[ -~\t]{0,40}", any::<bool>()),
            0..12,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut text = start.into_bytes();
        for (name, value, folded) in lines {
            text.extend_from_slice(b"\r\n");
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b": ");
            if folded {
                text.extend_from_slice(b"\r\n ");
            }
            text.extend_from_slice(value.as_bytes());
        }
        text.extend_from_slice(b"\r\n\r\n");
        text.extend_from_slice(&body);
        exercise(&text);
    }

    #[test]
    fn generated_requests_round_trip(req in request()) {
        let msg = Message::Request(req);
        let bytes = msg.to_bytes();
        let parsed = parse_message(&bytes);
        prop_assert_eq!(parsed, Ok(msg.clone()), "{}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(frame(&bytes), Framing::Complete { len: bytes.len() });
    }

    #[test]
    fn generated_responses_round_trip(resp in response()) {
        let msg = Message::Response(resp);
        let bytes = msg.to_bytes();
        prop_assert_eq!(parse_message(&bytes), Ok(msg.clone()), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn damaged_torture_messages_never_panic(
        file in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let files = torture_messages();
        let mut bytes = files[file.index(files.len())].clone();
        for (kind, at, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] ^= byte | 1,
                1 => bytes.truncate(i),
                2 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        exercise(&bytes);
    }
}
