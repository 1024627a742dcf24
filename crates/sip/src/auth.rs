//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): the challenges of a 401/407,
//! the check of the Authorization that answers them, and the answer to a challenge.
//!
//! The server side keeps no state per client. A nonce is the time it was issued, 8 random
//! bytes and a MAC over both, so any server holding the secret can tell its own nonces from
//! forged ones and see how old they are. The price is that nonce counts are not tracked:
//! a captured Authorization can be replayed until its nonce expires.

use std::fmt::{self, Write as _};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::message::AuthParams;

/// How long a nonce is accepted after it was issued.
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// How far in the future a nonce's issue time may be, for servers sharing a secret whose
/// clocks disagree slightly.
const MAX_CLOCK_SKEW_SECS: u64 = 5;

/// The longest parameter hashed or compared; anything longer is refused before any work.
const MAX_PARAM_LEN: usize = 1024;

/// Clients must echo `opaque` (RFC 7616 §3.3) but nothing depends on its value here.
const OPAQUE: &str = "baton";

/// Issue time (8 bytes, big-endian) ‖ random (8 bytes) ‖ truncated HMAC-SHA-256 (16 bytes).
const NONCE_LEN: usize = 32;
/// The part of the nonce the MAC covers: issue time and random bytes.
const NONCE_SIGNED_LEN: usize = 16;

/// A digest hash algorithm (RFC 8760 §2: SHA-512-256, SHA-256, MD5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-512/256 (FIPS 180-4), the strongest of the three.
    Sha512_256,
    /// SHA-256, what modern phones use (RFC 8760).
    Sha256,
    /// MD5, for older phones; also what an absent `algorithm` parameter means.
    Md5,
}

impl Algorithm {
    /// The name used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// The algorithm an `algorithm` parameter names, case-insensitively; `None` for the
    /// `-sess` variants, which are not supported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Lower-case hex of the hash of `parts` joined by colons, as every digest value is built.
    fn hash(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Sha512_256 => hash_joined::<sha2::Sha512_256>(parts),
            Algorithm::Sha256 => hash_joined::<Sha256>(parts),
            Algorithm::Md5 => hash_joined::<md5::Md5>(parts),
        }
    }
}

fn hash_joined<D: sha2::Digest>(parts: &[&str]) -> String {
    let mut hasher = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Why an Authorization was refused, or a challenge could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The scheme is not Digest (e.g. Basic or Bearer).
    #[error("the authentication scheme is not Digest")]
    NotDigest,
    /// A required parameter is absent or empty.
    #[error("the {0} parameter is missing")]
    Missing(&'static str),
    /// A parameter is longer than this module hashes.
    #[error("the {0} parameter is longer than 1024 bytes")]
    TooLong(&'static str),
    /// The credentials are for another realm.
    #[error("the realm is not this server's")]
    WrongRealm,
    /// The algorithm is unknown, or a `-sess` variant.
    #[error("unsupported digest algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The nonce was not issued by this server, was altered, or claims to be from the future.
    #[error("the nonce was not issued here")]
    BadNonce,
    /// The nonce is ours and the response is right, but the nonce has expired: challenge
    /// again with `stale=true` so the client retries without asking its user.
    #[error("nonce expired")]
    StaleNonce,
    /// The quality of protection is not `auth` (e.g. `auth-int`), or a challenge offers no `auth`.
    #[error("unsupported qop {0:?}")]
    BadQop(String),
    /// The response does not match: wrong password, or a value changed on the way.
    #[error("response does not match")]
    WrongResponse,
}

/// The server side: issues challenges and checks answers, without keeping state per client:
/// each nonce carries the time it was issued and a MAC over it (HMAC-SHA-256 with a secret).
#[derive(Clone)]
pub struct Digest {
    realm: String,
    /// HMAC-SHA-256 already keyed with the secret; cloned for each nonce.
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Digest {
    /// Shows the realm only, so that the secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digest")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Digest {
    /// A server for `realm` whose nonces are signed with `secret`; servers that share the
    /// secret accept each other's nonces.
    pub fn new(realm: impl Into<String>, secret: [u8; 32]) -> Digest {
        Digest {
            realm: realm.into(),
            mac: Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// The realm challenges name and credentials must match.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// One WWW-Authenticate (or Proxy-Authenticate) value per algorithm, in the order given:
    /// pass the strongest first, since clients take the first they support (RFC 8760 §2.4).
    /// Each has a fresh nonce issued at `now_secs`, and `stale=true` when `stale`.
    pub fn challenges(
        &self,
        algorithms: &[Algorithm],
        now_secs: u64,
        stale: bool,
    ) -> Vec<AuthParams> {
        algorithms
            .iter()
            .map(|algorithm| {
                let mut params = vec![
                    ("realm".to_string(), self.realm.clone()),
                    ("nonce".to_string(), self.issue_nonce(now_secs)),
                    ("algorithm".to_string(), algorithm.name().to_string()),
                    ("qop".to_string(), "auth".to_string()),
                    ("opaque".to_string(), OPAQUE.to_string()),
                ];
                if stale {
                    params.push(("stale".to_string(), "true".to_string()));
                }
                AuthParams {
                    scheme: "Digest".to_string(),
                    params,
                }
            })
            .collect()
    }

    /// Checks an Authorization (or Proxy-Authorization) of a request with `method`, given
    /// the password of the user it names (see [`username`]). Accepts `qop=auth` and the
    /// RFC 2069 form without qop; an absent `algorithm` means MD5. The digest `uri` is
    /// hashed as the client wrote it: checking that it names the request's target is the
    /// caller's business. [`AuthError::StaleNonce`] is only returned when the response is
    /// right, so a stale challenge never spares a client with a wrong password.
    pub fn verify(
        &self,
        auth: &AuthParams,
        method: &str,
        password: &str,
        now_secs: u64,
    ) -> Result<(), AuthError> {
        if !auth.scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest);
        }
        let credentials = Credentials::from_authorization(auth)?;
        let given = required(auth, "response")?;
        if credentials.realm != self.realm {
            return Err(AuthError::WrongRealm);
        }
        let issued = self.check_nonce(credentials.nonce, now_secs)?;
        let expected = credentials.response(password, method);
        // Clients should send lower-case hex (RFC 7616 §3.4.1), but nothing is gained by
        // refusing upper case.
        if !constant_time_eq(given.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            return Err(AuthError::WrongResponse);
        }
        if now_secs.saturating_sub(issued) > NONCE_LIFETIME_SECS {
            return Err(AuthError::StaleNonce);
        }
        Ok(())
    }

    fn issue_nonce(&self, now_secs: u64) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&now_secs.to_be_bytes());
        rand::thread_rng().fill(&mut nonce[8..NONCE_SIGNED_LEN]);
        let mut mac = self.mac.clone();
        mac.update(&nonce[..NONCE_SIGNED_LEN]);
        let tag = mac.finalize().into_bytes();
        nonce[NONCE_SIGNED_LEN..].copy_from_slice(&tag[..NONCE_LEN - NONCE_SIGNED_LEN]);
        hex(&nonce)
    }

    /// The issue time of a nonce this server signed.
    fn check_nonce(&self, nonce: &str, now_secs: u64) -> Result<u64, AuthError> {
        let nonce = decode_nonce(nonce).ok_or(AuthError::BadNonce)?;
        let mut mac = self.mac.clone();
        mac.update(&nonce[..NONCE_SIGNED_LEN]);
        mac.verify_truncated_left(&nonce[NONCE_SIGNED_LEN..])
            .map_err(|_| AuthError::BadNonce)?;
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&nonce[..8]);
        let issued = u64::from_be_bytes(issued);
        if issued > now_secs.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(AuthError::BadNonce);
        }
        Ok(issued)
    }
}

/// The user an Authorization names (its `username` parameter), to look up their password
/// before [`Digest::verify`].
pub fn username(auth: &AuthParams) -> Option<&str> {
    auth.get("username").filter(|u| !u.is_empty())
}

/// The client side: the Authorization (or Proxy-Authorization) answering `challenge` for a
/// request with `method` to `uri`. `cnonce` and `nc` (the count of requests made with this
/// nonce, from 1) are only used when the challenge offers `qop=auth`.
pub fn respond(
    challenge: &AuthParams,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<AuthParams, AuthError> {
    if !challenge.scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let realm = present(challenge, "realm")?;
    let nonce = required(challenge, "nonce")?;
    let algorithm = algorithm(challenge)?;
    let opaque = optional(challenge, "opaque")?;
    let offers_auth = match optional(challenge, "qop")? {
        None => false,
        Some(offered)
            if offered
                .split(',')
                .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
        {
            true
        }
        Some(offered) => return Err(AuthError::BadQop(offered.to_string())),
    };
    let username = bounded(username, "username")?;
    let uri = bounded(uri, "uri")?;
    let nc = format!("{nc:08x}");
    let qop = if offers_auth {
        if cnonce.is_empty() {
            return Err(AuthError::Missing("cnonce"));
        }
        Some(QopAuth {
            qop: "auth",
            nc: &nc,
            cnonce: bounded(cnonce, "cnonce")?,
        })
    } else {
        None
    };
    let credentials = Credentials {
        algorithm,
        username,
        realm,
        nonce,
        uri,
        qop,
    };
    let response = credentials.response(password, method);

    let mut params = vec![
        ("username", username),
        ("realm", realm),
        ("nonce", nonce),
        ("uri", uri),
    ];
    if let Some(q) = &credentials.qop {
        params.extend([("qop", q.qop), ("nc", q.nc), ("cnonce", q.cnonce)]);
    }
    params.extend([
        ("response", response.as_str()),
        ("algorithm", algorithm.name()),
    ]);
    if let Some(opaque) = opaque {
        params.push(("opaque", opaque));
    }
    Ok(AuthParams {
        scheme: "Digest".to_string(),
        params: params
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    })
}

/// The values the response is computed from, as one side or the other wrote them.
struct Credentials<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    nonce: &'a str,
    uri: &'a str,
    /// `None` for the RFC 2069 form.
    qop: Option<QopAuth<'a>>,
}

struct QopAuth<'a> {
    qop: &'a str,
    nc: &'a str,
    cnonce: &'a str,
}

impl<'a> Credentials<'a> {
    fn from_authorization(auth: &'a AuthParams) -> Result<Credentials<'a>, AuthError> {
        let username = required(auth, "username")?;
        let realm = present(auth, "realm")?;
        let nonce = required(auth, "nonce")?;
        let uri = required(auth, "uri")?;
        let algorithm = algorithm(auth)?;
        let qop = match optional(auth, "qop")? {
            None => None,
            Some(qop) if qop.eq_ignore_ascii_case("auth") => Some(QopAuth {
                qop,
                nc: required(auth, "nc")?,
                cnonce: required(auth, "cnonce")?,
            }),
            Some(qop) => return Err(AuthError::BadQop(qop.to_string())),
        };
        Ok(Credentials {
            algorithm,
            username,
            realm,
            nonce,
            uri,
            qop,
        })
    }

    /// The `response` value (RFC 7616 §3.4.1; RFC 2069 §2.1.2 without qop).
    fn response(&self, password: &str, method: &str) -> String {
        let h = |parts: &[&str]| self.algorithm.hash(parts);
        let ha1 = h(&[self.username, self.realm, password]);
        let ha2 = h(&[method, self.uri]);
        match &self.qop {
            Some(q) => h(&[&ha1, self.nonce, q.nc, q.cnonce, q.qop, &ha2]),
            None => h(&[&ha1, self.nonce, &ha2]),
        }
    }
}

/// The `algorithm` parameter; absent means MD5 (RFC 3261 §22.4).
fn algorithm(params: &AuthParams) -> Result<Algorithm, AuthError> {
    match optional(params, "algorithm")? {
        None => Ok(Algorithm::Md5),
        Some(name) => {
            Algorithm::from_name(name).ok_or_else(|| AuthError::UnknownAlgorithm(name.to_string()))
        }
    }
}

fn optional<'a>(params: &'a AuthParams, name: &'static str) -> Result<Option<&'a str>, AuthError> {
    params.get(name).map(|v| bounded(v, name)).transpose()
}

/// A parameter that must be there, possibly empty (a realm may be `""`).
fn present<'a>(params: &'a AuthParams, name: &'static str) -> Result<&'a str, AuthError> {
    optional(params, name)?.ok_or(AuthError::Missing(name))
}

/// A parameter that must be there and not empty.
fn required<'a>(params: &'a AuthParams, name: &'static str) -> Result<&'a str, AuthError> {
    optional(params, name)?
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::Missing(name))
}

fn bounded<'a>(value: &'a str, name: &'static str) -> Result<&'a str, AuthError> {
    if value.len() > MAX_PARAM_LEN {
        Err(AuthError::TooLong(name))
    } else {
        Ok(value)
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed response was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn decode_nonce(text: &str) -> Option<[u8; NONCE_LEN]> {
    let text = text.as_bytes();
    if text.len() != NONCE_LEN * 2 {
        return None;
    }
    let mut out = [0u8; NONCE_LEN];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from((high << 4) | low).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::message::{Header, Message};
    use crate::parse::parse_message;

    const SECRET: [u8; 32] = [7; 32];
    const NOW: u64 = 1_700_000_000;
    const REALM: &str = "biloxi.example.com";
    const URI: &str = "sip:biloxi.example.com";
    const ALL: [Algorithm; 3] = [Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5];

    fn server() -> Digest {
        Digest::new(REALM, SECRET)
    }

    fn auth(params: &[(&str, &str)]) -> AuthParams {
        AuthParams {
            scheme: "Digest".into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn without(a: &AuthParams, name: &str) -> AuthParams {
        let mut a = a.clone();
        a.params.retain(|(n, _)| n != name);
        a
    }

    fn with(a: &AuthParams, name: &str, value: &str) -> AuthParams {
        let mut a = without(a, name);
        a.params.push((name.into(), value.into()));
        a
    }

    /// A challenge issued at `issued` and bob's answer to it.
    fn answered(algorithm: Algorithm, issued: u64, password: &str) -> AuthParams {
        let challenge = server().challenges(&[algorithm], issued, false).remove(0);
        respond(&challenge, "bob", password, "REGISTER", URI, "0a4f113b", 1).unwrap()
    }

    fn rfc7616_challenge(algorithm: &str) -> AuthParams {
        auth(&[
            ("realm", "http-auth@example.org"),
            ("qop", "auth, auth-int"),
            ("algorithm", algorithm),
            ("nonce", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"),
            ("opaque", "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"),
        ])
    }

    fn rfc7616_response(algorithm: &str) -> AuthParams {
        respond(
            &rfc7616_challenge(algorithm),
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        )
        .unwrap()
    }

    #[test]
    fn rfc7616_md5_and_sha256_examples() {
        let md5 = rfc7616_response("MD5");
        assert_eq!(
            md5.get("response"),
            Some("8ca523f5e9506fed4657c9700eebdbec")
        );
        let sha256 = rfc7616_response("SHA-256");
        assert_eq!(
            sha256.get("response"),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(sha256.get("algorithm"), Some("SHA-256"));
        assert_eq!(sha256.get("qop"), Some("auth"));
        assert_eq!(sha256.get("nc"), Some("00000001"));
        assert_eq!(
            sha256.get("opaque"),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    #[test]
    fn sha512_256_matches_openssl() {
        // The RFC 7616 §3.9.2 value is in dispute (erratum 4897), so this one was computed
        // with `openssl dgst -sha512-256` from the same inputs.
        let challenge = auth(&[
            ("realm", "api@example.org"),
            ("qop", "auth"),
            ("algorithm", "SHA-512-256"),
            ("nonce", "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK"),
        ]);
        let answer = respond(
            &challenge,
            "J\u{e4}s\u{f8}n Doe",
            "Secret, or not?",
            "GET",
            "/doe.json",
            "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
            1,
        )
        .unwrap();
        assert_eq!(
            answer.get("response"),
            Some("3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5")
        );
    }

    #[test]
    fn rfc2617_example_without_algorithm_means_md5() {
        let challenge = auth(&[
            ("realm", "testrealm@host.com"),
            ("qop", "auth,auth-int"),
            ("nonce", "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
            ("opaque", "5ccc069c403ebaf9f0171e9517f40e41"),
        ]);
        let answer = respond(
            &challenge,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        )
        .unwrap();
        assert_eq!(
            answer.get("response"),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert_eq!(answer.get("algorithm"), Some("MD5"));
    }

    #[test]
    fn rfc2069_example_without_qop() {
        let challenge = auth(&[
            ("realm", "testrealm@host.com"),
            ("nonce", "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
        ]);
        let answer = respond(
            &challenge,
            "Mufasa",
            "CircleOfLife",
            "GET",
            "/dir/index.html",
            "unused",
            1,
        )
        .unwrap();
        assert_eq!(
            answer.get("response"),
            Some("1949323746fe6a43ef61f9606e7febea")
        );
        for absent in ["qop", "nc", "cnonce", "opaque"] {
            assert_eq!(answer.get(absent), None, "{absent}");
        }
    }

    #[test]
    fn algorithm_names() {
        for a in ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_name("md5"), Some(Algorithm::Md5));
        for unsupported in ["MD5-sess", "SHA-256-sess", "SHA-512-256-sess", "SHA-1", ""] {
            assert_eq!(Algorithm::from_name(unsupported), None, "{unsupported}");
        }
    }

    #[test]
    fn challenges_come_in_the_order_given() {
        let challenges = server().challenges(&ALL, NOW, false);
        let names: Vec<_> = challenges
            .iter()
            .map(|c| c.get("algorithm").unwrap())
            .collect();
        assert_eq!(names, ["SHA-512-256", "SHA-256", "MD5"]);
        for c in &challenges {
            assert_eq!(c.scheme, "Digest");
            assert_eq!(c.get("realm"), Some(REALM));
            assert_eq!(c.get("qop"), Some("auth"));
            assert!(c.get("opaque").is_some());
            assert_eq!(c.get("stale"), None);
        }
        assert_ne!(challenges[0].get("nonce"), challenges[1].get("nonce"));
        let stale = server().challenges(&[Algorithm::Sha256], NOW, true);
        assert_eq!(stale[0].get("stale"), Some("true"));
    }

    #[test]
    fn round_trip_for_each_algorithm() {
        for a in ALL {
            let answer = answered(a, NOW, "secret");
            assert_eq!(username(&answer), Some("bob"));
            assert_eq!(
                server().verify(&answer, "REGISTER", "secret", NOW + 10),
                Ok(())
            );
        }
    }

    #[test]
    fn wrong_password_or_method_is_a_wrong_response() {
        for a in ALL {
            let answer = answered(a, NOW, "guess");
            assert_eq!(
                server().verify(&answer, "REGISTER", "secret", NOW),
                Err(AuthError::WrongResponse)
            );
            let answer = answered(a, NOW, "secret");
            assert_eq!(
                server().verify(&answer, "INVITE", "secret", NOW),
                Err(AuthError::WrongResponse)
            );
        }
    }

    #[test]
    fn response_hex_case_does_not_matter() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        let upper = answer.get("response").unwrap().to_ascii_uppercase();
        let answer = with(&answer, "response", &upper);
        assert_eq!(server().verify(&answer, "REGISTER", "secret", NOW), Ok(()));
    }

    #[test]
    fn nonces_not_issued_here_are_bad() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        let nonce = answer.get("nonce").unwrap().to_string();

        let other_server = Digest::new(REALM, [8; 32]);
        assert_eq!(
            other_server.verify(&answer, "REGISTER", "secret", NOW),
            Err(AuthError::BadNonce)
        );

        // Any single changed digit, in the time, the random part or the MAC.
        for i in [0, 15, 16, 31, 32, 63] {
            let mut tampered = nonce.clone().into_bytes();
            tampered[i] = if tampered[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(tampered).unwrap();
            let challenge = auth(&[("realm", REALM), ("nonce", &tampered), ("qop", "auth")]);
            let answer = respond(&challenge, "bob", "secret", "REGISTER", URI, "c", 1).unwrap();
            assert_eq!(
                server().verify(&answer, "REGISTER", "secret", NOW),
                Err(AuthError::BadNonce),
                "digit {i}"
            );
        }

        for garbage in [
            &nonce[..62],
            &format!("{nonce}00"),
            "zz",
            "é",
            &"g".repeat(64),
        ] {
            assert_eq!(
                server().verify(&with(&answer, "nonce", garbage), "REGISTER", "secret", NOW),
                Err(AuthError::BadNonce),
                "{garbage}"
            );
        }
    }

    #[test]
    fn nonces_from_the_future_are_bad() {
        let answer = answered(Algorithm::Sha256, NOW + MAX_CLOCK_SKEW_SECS, "secret");
        assert_eq!(server().verify(&answer, "REGISTER", "secret", NOW), Ok(()));
        let answer = answered(Algorithm::Sha256, NOW + MAX_CLOCK_SKEW_SECS + 1, "secret");
        assert_eq!(
            server().verify(&answer, "REGISTER", "secret", NOW),
            Err(AuthError::BadNonce)
        );
    }

    #[test]
    fn old_nonces_are_stale_only_with_the_right_password() {
        let answer = answered(Algorithm::Md5, NOW, "secret");
        let at = |now| server().verify(&answer, "REGISTER", "secret", now);
        assert_eq!(at(NOW + NONCE_LIFETIME_SECS), Ok(()));
        assert_eq!(
            at(NOW + NONCE_LIFETIME_SECS + 1),
            Err(AuthError::StaleNonce)
        );
        assert_eq!(at(u64::MAX), Err(AuthError::StaleNonce));
        assert_eq!(
            server().verify(&answer, "REGISTER", "guess", NOW + NONCE_LIFETIME_SECS + 1),
            Err(AuthError::WrongResponse)
        );
    }

    #[test]
    fn missing_parameters_are_named() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        for name in [
            "username", "realm", "nonce", "uri", "response", "nc", "cnonce",
        ] {
            assert_eq!(
                server().verify(&without(&answer, name), "REGISTER", "secret", NOW),
                Err(AuthError::Missing(name)),
                "{name}"
            );
        }
        for name in ["username", "nonce", "uri", "response", "nc", "cnonce"] {
            assert_eq!(
                server().verify(&with(&answer, name, ""), "REGISTER", "secret", NOW),
                Err(AuthError::Missing(name)),
                "empty {name}"
            );
        }
        assert_eq!(
            AuthError::Missing("nonce").to_string(),
            "the nonce parameter is missing"
        );

        let challenge = server()
            .challenges(&[Algorithm::Sha256], NOW, false)
            .remove(0);
        for name in ["realm", "nonce"] {
            assert_eq!(
                respond(
                    &without(&challenge, name),
                    "bob",
                    "s",
                    "REGISTER",
                    URI,
                    "c",
                    1
                ),
                Err(AuthError::Missing(name))
            );
        }
        assert_eq!(
            respond(&challenge, "bob", "s", "REGISTER", URI, "", 1),
            Err(AuthError::Missing("cnonce"))
        );
    }

    #[test]
    fn absent_algorithm_means_md5() {
        let md5 = answered(Algorithm::Md5, NOW, "secret");
        assert_eq!(
            server().verify(&without(&md5, "algorithm"), "REGISTER", "secret", NOW),
            Ok(())
        );
        let sha256 = answered(Algorithm::Sha256, NOW, "secret");
        assert_eq!(
            server().verify(&without(&sha256, "algorithm"), "REGISTER", "secret", NOW),
            Err(AuthError::WrongResponse)
        );
    }

    #[test]
    fn sess_and_unknown_algorithms_are_refused() {
        let answer = answered(Algorithm::Md5, NOW, "secret");
        let challenge = server().challenges(&[Algorithm::Md5], NOW, false).remove(0);
        for name in ["MD5-sess", "SHA-256-sess", "SHA-1", "", "md6"] {
            let expected = AuthError::UnknownAlgorithm(name.into());
            assert_eq!(
                server().verify(&with(&answer, "algorithm", name), "REGISTER", "s", NOW),
                Err(expected.clone())
            );
            let challenge = with(&challenge, "algorithm", name);
            assert_eq!(
                respond(&challenge, "bob", "s", "REGISTER", URI, "c", 1),
                Err(expected)
            );
        }
    }

    #[test]
    fn rfc2069_form_verifies() {
        for a in ALL {
            let challenge = without(&server().challenges(&[a], NOW, false)[0], "qop");
            let answer = respond(&challenge, "bob", "secret", "REGISTER", URI, "c", 1).unwrap();
            assert_eq!(answer.get("qop"), None);
            assert_eq!(server().verify(&answer, "REGISTER", "secret", NOW), Ok(()));
        }
    }

    #[test]
    fn only_qop_auth_is_supported() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        assert_eq!(
            server().verify(&with(&answer, "qop", "auth-int"), "REGISTER", "secret", NOW),
            Err(AuthError::BadQop("auth-int".into()))
        );
        let challenge = server()
            .challenges(&[Algorithm::Sha256], NOW, false)
            .remove(0);
        assert_eq!(
            respond(
                &with(&challenge, "qop", "auth-int"),
                "bob",
                "s",
                "REGISTER",
                URI,
                "c",
                1
            ),
            Err(AuthError::BadQop("auth-int".into()))
        );
    }

    #[test]
    fn other_schemes_and_realms_are_refused() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        let mut basic = answer.clone();
        basic.scheme = "Basic".into();
        assert_eq!(
            server().verify(&basic, "REGISTER", "secret", NOW),
            Err(AuthError::NotDigest)
        );
        let mut lower = answer.clone();
        lower.scheme = "digest".into();
        assert_eq!(server().verify(&lower, "REGISTER", "secret", NOW), Ok(()));
        assert_eq!(
            Digest::new("atlanta.example.com", SECRET).verify(&answer, "REGISTER", "secret", NOW),
            Err(AuthError::WrongRealm)
        );
    }

    #[test]
    fn oversized_parameters_are_refused_before_hashing() {
        let answer = answered(Algorithm::Sha256, NOW, "secret");
        let huge = "a".repeat(MAX_PARAM_LEN + 1);
        for name in ["username", "uri", "cnonce", "response", "algorithm"] {
            assert_eq!(
                server().verify(&with(&answer, name, &huge), "REGISTER", "secret", NOW),
                Err(AuthError::TooLong(name)),
                "{name}"
            );
        }
        let challenge = server()
            .challenges(&[Algorithm::Sha256], NOW, false)
            .remove(0);
        assert_eq!(
            respond(&challenge, &huge, "s", "REGISTER", URI, "c", 1),
            Err(AuthError::TooLong("username"))
        );
    }

    #[test]
    fn username_is_read_from_the_credentials() {
        assert_eq!(username(&auth(&[("username", "alice")])), Some("alice"));
        assert_eq!(username(&auth(&[("username", "")])), None);
        assert_eq!(username(&auth(&[])), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(
            format!("{:?}", server()),
            "Digest { realm: \"biloxi.example.com\", .. }"
        );
    }

    #[test]
    fn challenge_and_answer_survive_the_wire() {
        let challenge = server()
            .challenges(&[Algorithm::Sha256], NOW, true)
            .remove(0);
        let nonce = challenge.get("nonce").unwrap();
        let line = Header::WwwAuthenticate(challenge.clone()).to_string();
        assert_eq!(
            line,
            format!(
                "WWW-Authenticate: Digest realm=\"biloxi.example.com\", nonce=\"{nonce}\", \
                 algorithm=SHA-256, qop=\"auth\", opaque=\"baton\", stale=true"
            )
        );

        let answer = respond(&challenge, "bob", "secret", "REGISTER", URI, "0a4f113b", 1).unwrap();
        let answer_line = Header::Authorization(answer.clone()).to_string();
        let response = answer.get("response").unwrap();
        assert_eq!(
            answer_line,
            format!(
                "Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", \
                 nonce=\"{nonce}\", uri=\"{URI}\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
                 response=\"{response}\", algorithm=SHA-256, opaque=\"baton\""
            )
        );

        let register = format!(
            "REGISTER {URI} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds7\r\n\
             Max-Forwards: 70\r\n\
             To: <sip:bob@biloxi.example.com>\r\n\
             From: <sip:bob@biloxi.example.com>;tag=456248\r\n\
             Call-ID: 843817637684230@998sdasdh09\r\n\
             CSeq: 1826 REGISTER\r\n\
             {answer_line}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let Ok(Message::Request(request)) = parse_message(register.as_bytes()) else {
            panic!("REGISTER does not parse");
        };
        let parsed = request.headers.authorization().unwrap();
        assert_eq!(parsed, &answer);
        assert_eq!(
            server().verify(parsed, request.method.as_str(), "secret", NOW),
            Ok(())
        );

        let unauthorized = format!(
            "SIP/2.0 401 Unauthorized\r\n\
             Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds7\r\n\
             To: <sip:bob@biloxi.example.com>;tag=2493k59kd\r\n\
             From: <sip:bob@biloxi.example.com>;tag=456248\r\n\
             Call-ID: 843817637684230@998sdasdh09\r\n\
             CSeq: 1826 REGISTER\r\n\
             {line}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let Ok(message) = parse_message(unauthorized.as_bytes()) else {
            panic!("401 does not parse");
        };
        let parsed = message.headers().iter().find_map(|h| match h {
            Header::WwwAuthenticate(a) => Some(a),
            _ => None,
        });
        assert_eq!(parsed, Some(&challenge));
    }

    fn arbitrary_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[0-9a-f]{64}",
            "\\PC{0,40}",
            Just("auth".to_string()),
            Just("MD5".to_string()),
            Just("SHA-256".to_string()),
            (0usize..3000).prop_map(|n| "x".repeat(n)),
        ]
    }

    fn arbitrary_params() -> impl Strategy<Value = AuthParams> {
        let name = prop_oneof![
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
            "stale",
            "[a-z]{1,8}",
        ];
        (
            prop_oneof![Just("Digest".to_string()), "\\PC{0,10}"],
            prop::collection::vec((name, arbitrary_value()), 0..12),
        )
            .prop_map(|(scheme, params)| AuthParams { scheme, params })
    }

    proptest! {
        #[test]
        fn arbitrary_params_never_panic(params in arbitrary_params(), now in any::<u64>(), nc in any::<u32>()) {
            let _ = server().verify(&params, "REGISTER", "secret", now);
            let _ = respond(&params, "bob", "secret", "REGISTER", URI, "c", nc);
            let _ = username(&params);
        }

        #[test]
        fn changed_answers_never_panic(
            a in prop::sample::select(ALL.to_vec()),
            name in "username|realm|nonce|uri|response|algorithm|qop|nc|cnonce",
            value in arbitrary_value(),
            now in any::<u64>(),
        ) {
            let answer = with(&answered(a, NOW, "secret"), &name, &value);
            let _ = server().verify(&answer, "REGISTER", "secret", now);
        }
    }
}
