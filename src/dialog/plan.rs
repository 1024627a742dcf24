//! A dialplan's `[dialog]`: named nodes the built-in bot walks through, the intents it
//! understands, and where its customer data comes from. Read from TOML and checked whole
//! before any call uses it: every node a route names exists, every template names a value
//! the bot can have, every number is in range.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::location::KeyPath;

/// Longest text a node says, in characters (about a minute of speech).
const MAX_SAY: usize = 1_000;
/// Most attempts a question may take before the dialog gives up on it.
const MAX_ATTEMPTS: u32 = 5;
/// Longest wait for the caller to answer.
const MAX_TIMEOUT_SECS: u32 = 60;
/// Most digits a `digits` answer may ask for.
const MAX_DIGITS: u32 = 32;
/// How long a CRM has to answer, unless the node says otherwise.
const DEFAULT_FETCH_MS: u32 = 2_000;
/// Shortest and longest wait for a CRM: the caller hears silence meanwhile.
const MIN_FETCH_MS: u32 = 100;
const MAX_FETCH_MS: u32 = 30_000;

/// A checked dialog: nodes by name, ready for [`super::engine::Dialog`].
#[derive(Debug, Clone, PartialEq)]
pub struct DialogPlan {
    /// The node a call starts at.
    pub start: String,
    /// Where a question goes when its attempts run out and it names no `on_fail`.
    pub fallback: String,
    /// Below this confidence an intent is not taken as understood.
    pub intent_threshold: f32,
    /// How long the caller has to start answering, unless a node says otherwise.
    pub timeout: Duration,
    /// Attempts per question, unless a node says otherwise.
    pub attempts: u32,
    /// The intents, each with its example phrases and a description said back to callers.
    pub intents: BTreeMap<String, IntentSpec>,
    /// Intents that lead somewhere whatever the node asked ("I want a human"), by intent.
    pub anytime: BTreeMap<String, String>,
    /// The customer data file, as written (relative to the dialplan's directory).
    pub customers: Option<String>,
    /// Every node, by name.
    pub nodes: BTreeMap<String, Node>,
}

/// One intent the bot understands.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    /// What callers say for it; the classifier learns from these.
    pub examples: Vec<String>,
    /// How the bot and the summary name it ("block a lost or stolen card").
    #[serde(default)]
    pub description: Option<String>,
}

/// One step of the conversation: say something, act, then listen or move on.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// A recorded prompt played first: a WAV in the media directory (once the dialplan
    /// is loaded, its absolute path).
    pub play: Option<String>,
    /// Said first (after `play`); a template (`{slot.card}`,
    /// `{customer.accounts.0.balance}`).
    pub say: Option<String>,
    /// Customer data copied into the context before the node does anything else.
    pub fetch: Option<Fetch>,
    /// Something done on the caller's behalf, recorded in the context.
    pub action: Option<ActionSpec>,
    /// Checks the caller's identity against the customer data.
    pub verify: Option<VerifySpec>,
    /// What answer to listen for; without it the node moves on at once.
    pub expect: Option<Expect>,
    /// The slot an answer is stored in.
    pub slot: Option<String>,
    /// For `expect = "digits"`: how many digits.
    pub digits: Option<u32>,
    /// For `expect = "digits"`: where in the verified customer's record the accepted
    /// answers are (`cards.last4`: the `last4` of each card). An answer counts only if it
    /// holds one of them, so a mis-heard digit never picks someone else's card.
    pub one_of: Option<String>,
    /// For `expect = "intent"`: the node each intent leads to.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Key presses that lead to a node, whatever the node expects (`"0" = "agent"`).
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// For `expect = "yes_no"`: where each answer leads.
    pub yes: Option<String>,
    pub no: Option<String>,
    /// Said when an answer was not understood, before listening again (default: `say`).
    pub reprompt: Option<String>,
    /// Words the recogniser should expect here, on top of those the answer kind implies.
    pub hints: Option<String>,
    pub timeout_secs: Option<u32>,
    pub attempts: Option<u32>,
    /// Where to go next when the node has done its work.
    pub next: Option<String>,
    /// Where to go when the answer never came, verification failed or a CRM fetch failed.
    pub on_fail: Option<String>,
    /// Hands the call to a person, for this reason (`caller_request`, `policy`).
    pub escalate: Option<String>,
    /// The plan's `[followup.NAME]`s sent or scheduled when the node is reached, filled
    /// from the context as it stands then.
    #[serde(default)]
    pub followup: Vec<String>,
    /// Ends the call after saying `say`.
    #[serde(default)]
    pub hangup: bool,
}

/// Where a node's customer data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    /// A field of the verified customer's record, from the customer file.
    Field(String),
    /// A JSON document from a CRM over HTTP.
    Http(HttpFetch),
}

/// A CRM request: `fetch = { url = "...", into = "accounts" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFetch {
    /// A template; every value filled in is percent-encoded, so that it stays one path
    /// segment or query value.
    pub url: String,
    /// The name the answer is kept under: in the context's customer data, and for
    /// templates as `{customer.NAME}`.
    pub into: String,
    /// Longest wait for the whole answer, in milliseconds.
    pub timeout_ms: Option<u32>,
}

impl HttpFetch {
    /// How long the whole request may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms.unwrap_or(DEFAULT_FETCH_MS)))
    }
}

/// `fetch` is a field name or a table; the table is read as [`HttpFetch`] key by key, so
/// that an unknown key is reported at that key.
impl<'de> Deserialize<'de> for Fetch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Fetch, D::Error> {
        struct FetchVisitor;
        impl<'de> serde::de::Visitor<'de> for FetchVisitor {
            type Value = Fetch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field of the customer record, or a table with url and into")
            }
            fn visit_str<E: serde::de::Error>(self, field: &str) -> Result<Fetch, E> {
                Ok(Fetch::Field(field.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Fetch, A::Error> {
                HttpFetch::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Fetch::Http)
            }
        }
        deserializer.deserialize_any(FetchVisitor)
    }
}

/// What a node listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// One of the dialog's intents, with a confidence.
    Intent,
    /// Yes or no (DTMF 1 or 2).
    YesNo,
    /// A person's name.
    Name,
    /// A date, such as a date of birth.
    Date,
    /// A run of digits, spoken or keyed.
    Digits,
    /// A date or a run of digits, whichever the caller gave (a date of birth or a card's
    /// last digits).
    DateOrDigits,
    /// A sum of money.
    Amount,
    /// Whatever the caller says.
    Text,
}

/// An action a node records.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// A short code (`card_blocked`).
    pub name: String,
    /// Details, each value a template.
    #[serde(default)]
    pub detail: BTreeMap<String, String>,
}

/// Which slots hold what the caller gave to prove who they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// The slot with the caller's name.
    pub name: String,
    /// The slot with the date of birth or the card's last four digits.
    pub secret: String,
}

/// `[dialog]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDialog {
    start: Option<String>,
    fallback: Option<String>,
    intent_threshold: Option<f32>,
    timeout_secs: Option<u32>,
    attempts: Option<u32>,
    #[serde(default)]
    intents: BTreeMap<String, IntentSpec>,
    #[serde(default)]
    anytime: BTreeMap<String, String>,
    customers: Option<String>,
    #[serde(default)]
    node: BTreeMap<String, Node>,
}

/// A problem in `[dialog]`, at a key below it.
pub(crate) type PlanError = (KeyPath, String);

impl DialogPlan {
    /// Checks a `[dialog]` table, reporting every problem at its key.
    pub(crate) fn check(raw: RawDialog) -> Result<DialogPlan, Vec<PlanError>> {
        let mut errors = Vec::new();
        let at = |keys: &[&str]| {
            let mut path = KeyPath::keys(&["dialog"]);
            for k in keys {
                path = path.key(k);
            }
            path
        };
        let nodes = raw.node;
        if nodes.is_empty() {
            errors.push((
                at(&["node"]),
                "is missing: add at least one [dialog.node.NAME]".to_owned(),
            ));
        }
        let exists = |name: &str| nodes.contains_key(name);
        let refer = |errors: &mut Vec<PlanError>, path: KeyPath, target: &str| {
            if !exists(target) {
                errors.push((
                    path,
                    format!("names node \"{target}\", which does not exist"),
                ));
            }
        };
        let start = raw.start.unwrap_or_else(|| "start".to_owned());
        refer(&mut errors, at(&["start"]), &start);
        let fallback = raw.fallback.unwrap_or_else(|| start.clone());
        refer(&mut errors, at(&["fallback"]), &fallback);
        let intent_threshold = raw.intent_threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&intent_threshold) {
            errors.push((
                at(&["intent_threshold"]),
                format!("expected 0 to 1, got {intent_threshold}"),
            ));
        }
        let timeout_secs = raw.timeout_secs.unwrap_or(8);
        check_range(
            &mut errors,
            at(&["timeout_secs"]),
            timeout_secs,
            1,
            MAX_TIMEOUT_SECS,
        );
        let attempts = raw.attempts.unwrap_or(2);
        check_range(&mut errors, at(&["attempts"]), attempts, 1, MAX_ATTEMPTS);
        for (name, intent) in &raw.intents {
            check_code(&mut errors, at(&["intents", name]), name);
            if intent.examples.iter().all(|e| e.trim().is_empty()) {
                errors.push((
                    at(&["intents", name, "examples"]),
                    "is empty: give a few phrases callers say for this intent".to_owned(),
                ));
            }
        }
        let known_intent = |errors: &mut Vec<PlanError>, path: KeyPath, intent: &str| {
            if !raw.intents.contains_key(intent) {
                errors.push((
                    path,
                    format!("names intent \"{intent}\", which [dialog.intents] does not define"),
                ));
            }
        };
        for (intent, target) in &raw.anytime {
            known_intent(&mut errors, at(&["anytime", intent]), intent);
            refer(&mut errors, at(&["anytime", intent]), target);
        }
        for (name, node) in &nodes {
            let key = |k: &str| at(&["node", name, k]);
            check_code(&mut errors, at(&["node", name]), name);
            for (field, text) in [("say", &node.say), ("reprompt", &node.reprompt)] {
                if let Some(text) = text {
                    if text.chars().count() > MAX_SAY {
                        errors.push((key(field), format!("longer than {MAX_SAY} characters")));
                    }
                    if let Err(e) = check_template(text) {
                        errors.push((key(field), e));
                    }
                }
            }
            if let Some(Fetch::Http(http)) = &node.fetch {
                check_fetch(&mut errors, http, &|k| at(&["node", name, "fetch", k]));
            }
            if let Some(action) = &node.action {
                check_code(&mut errors, key("action"), &action.name);
                for (k, template) in &action.detail {
                    if let Err(e) = check_template(template) {
                        errors.push((at(&["node", name, "action", "detail", k]), e));
                    }
                }
            }
            for (target, field) in [
                (&node.next, "next"),
                (&node.on_fail, "on_fail"),
                (&node.yes, "yes"),
                (&node.no, "no"),
            ] {
                if let Some(target) = target {
                    refer(&mut errors, key(field), target);
                }
            }
            for (intent, target) in &node.routes {
                let path = at(&["node", name, "routes", intent]);
                known_intent(&mut errors, path.clone(), intent);
                refer(&mut errors, path, target);
            }
            for (digit, target) in &node.keys {
                let path = at(&["node", name, "keys", digit]);
                let mut chars = digit.chars();
                let one_key = matches!(
                    (chars.next(), chars.next()),
                    (Some('0'..='9' | '*' | '#'), None)
                );
                if !one_key {
                    errors.push((path.clone(), "expected one key: 0-9, * or #".to_owned()));
                }
                refer(&mut errors, path, target);
            }
            if let Some(t) = node.timeout_secs {
                check_range(&mut errors, key("timeout_secs"), t, 1, MAX_TIMEOUT_SECS);
            }
            if let Some(a) = node.attempts {
                check_range(&mut errors, key("attempts"), a, 1, MAX_ATTEMPTS);
            }
            check_exit(&mut errors, name, node, &key);
        }
        if errors.is_empty() {
            Ok(DialogPlan {
                start,
                fallback,
                intent_threshold,
                timeout: Duration::from_secs(u64::from(timeout_secs)),
                attempts,
                intents: raw.intents,
                anytime: raw.anytime,
                customers: raw.customers,
                nodes,
            })
        } else {
            Err(errors)
        }
    }

    /// The intents with their examples, as the classifier takes them.
    pub fn intent_examples(&self) -> Vec<(String, Vec<String>)> {
        self.intents
            .iter()
            .map(|(name, spec)| (name.clone(), spec.examples.clone()))
            .collect()
    }
}

/// Every node needs exactly one way out, and what it listens for needs somewhere to go.
fn check_exit(errors: &mut Vec<PlanError>, name: &str, node: &Node, key: &dyn Fn(&str) -> KeyPath) {
    let exits: Vec<&str> = [
        (node.expect.is_some(), "expect"),
        (node.verify.is_some(), "verify"),
        (node.escalate.is_some(), "escalate"),
        (node.hangup, "hangup"),
    ]
    .into_iter()
    .filter_map(|(set, k)| set.then_some(k))
    .collect();
    if exits.len() > 1 {
        errors.push((
            key(exits[1]),
            format!(
                "a node does one of expect, verify, escalate or hangup; this one also has {}",
                exits[0]
            ),
        ));
        return;
    }
    let ends = node.escalate.is_some() || node.hangup;
    if ends && node.next.is_some() {
        errors.push((
            key("next"),
            "never used: the node ends the dialog".to_owned(),
        ));
    }
    match node.expect {
        Some(Expect::Intent) if node.routes.is_empty() && node.next.is_none() => {
            errors.push((
                key("routes"),
                format!("node \"{name}\" listens for an intent but routes none of them"),
            ));
        }
        Some(Expect::YesNo) if node.yes.is_none() || node.no.is_none() => {
            errors.push((
                key("expect"),
                "\"yes_no\" needs both yes and no, the nodes each answer leads to".to_owned(),
            ));
        }
        Some(Expect::Intent | Expect::YesNo) => {}
        Some(expect) => {
            if node.slot.is_none() {
                errors.push((
                    key("slot"),
                    format!("is missing: where to keep the {expect:?} answer"),
                ));
            }
            if node.next.is_none() {
                errors.push((
                    key("next"),
                    "is missing: where to go once answered".to_owned(),
                ));
            }
            if node.one_of.is_some() && expect != Expect::Digits {
                errors.push((key("one_of"), "only for expect = \"digits\"".to_owned()));
            }
            match (expect, node.digits) {
                (Expect::Digits | Expect::DateOrDigits, Some(n)) => {
                    check_range(errors, key("digits"), n, 1, MAX_DIGITS);
                }
                (Expect::Digits | Expect::DateOrDigits, None) => {}
                (_, Some(_)) => errors.push((
                    key("digits"),
                    "only for expect = \"digits\" or \"date_or_digits\"".to_owned(),
                )),
                _ => {}
            }
        }
        None if node.verify.is_some() && (node.next.is_none() || node.on_fail.is_none()) => {
            errors.push((
                key("verify"),
                "needs next and on_fail: where a verified and an unverified caller go".to_owned(),
            ));
        }
        None if node.verify.is_none() && !ends && node.next.is_none() => {
            errors.push((
                key("next"),
                format!("is missing: node \"{name}\" must go somewhere, end (hangup) or escalate"),
            ));
        }
        None => {}
    }
}

/// A CRM request goes to a host written in the plan, with values only in its path and
/// query, and waits a bounded time.
fn check_fetch(errors: &mut Vec<PlanError>, http: &HttpFetch, key: &dyn Fn(&str) -> KeyPath) {
    match check_template(&http.url) {
        Err(e) => errors.push((key("url"), e)),
        Ok(()) => {
            if let Err(e) = check_fetch_url(&http.url) {
                errors.push((key("url"), e));
            }
        }
    }
    let plain = !http.into.is_empty()
        && http.into.len() <= 64
        && http
            .into
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        errors.push((
            key("into"),
            format!("\"{}\": use 1 to 64 letters, digits and _", http.into),
        ));
    }
    if let Some(ms) = http.timeout_ms {
        check_range(errors, key("timeout_ms"), ms, MIN_FETCH_MS, MAX_FETCH_MS);
    }
}

fn check_fetch_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "expected an http:// or https:// URL, got \"{url}\""
        ));
    };
    // The host is written out, so that no answer a caller gives can send the request
    // somewhere else.
    let parts = template_parts(rest)?;
    let literal = match parts.first() {
        Some(Part::Text(text)) => *text,
        _ => "",
    };
    let host = literal.split(['/', '?', '#']).next().unwrap_or_default();
    let host_ends = parts.len() == 1 || literal.len() > host.len();
    if host.is_empty() || !host_ends {
        return Err(format!(
            "\"{url}\": write the host out; values may fill the path and query only"
        ));
    }
    Ok(())
}

fn check_range(errors: &mut Vec<PlanError>, path: KeyPath, value: u32, min: u32, max: u32) {
    if !(min..=max).contains(&value) {
        errors.push((path, format!("expected {min} to {max}, got {value}")));
    }
}

/// Node, intent and action names are codes: they go into the context and the API.
fn check_code(errors: &mut Vec<PlanError>, path: KeyPath, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        errors.push((
            path,
            format!("\"{name}\": use 1 to 64 lowercase letters, digits and _"),
        ));
    }
}

/// The namespaces a template may read: the dialog's slots, and the verified customer's
/// record.
const TEMPLATE_ROOTS: [&str; 2] = ["slot", "customer"];

/// Checks that every `{...}` in a template names `slot.NAME` or `customer.PATH`.
pub(crate) fn check_template(text: &str) -> Result<(), String> {
    for part in template_parts(text)? {
        if let Part::Value(path) = part {
            let root = path.split('.').next().unwrap_or_default();
            if !TEMPLATE_ROOTS.contains(&root) || !path.contains('.') {
                return Err(format!(
                    "\"{{{path}}}\" is not a value the bot has: write {{slot.NAME}} or \
                     {{customer.FIELD}}"
                ));
            }
        }
    }
    Ok(())
}

/// A piece of a template: text as written, or a value to fill in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    Text(&'a str),
    Value(&'a str),
}

/// Splits a template at its `{...}` values; `{{` and `}}` are not special.
pub(crate) fn template_parts(text: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err("a { is never closed".to_owned());
        };
        let path = rest[open + 1..open + close].trim();
        if path.is_empty() || path.contains('{') {
            return Err(format!("\"{}\" is not a value", &rest[open..=open + close]));
        }
        parts.push(Part::Value(path));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml: &str) -> Result<DialogPlan, Vec<String>> {
        let raw: RawDialog = toml::from_str(toml).map_err(|e| vec![e.to_string()])?;
        DialogPlan::check(raw).map_err(|errors| {
            errors
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect()
        })
    }

    const SMALL: &str = r#"
        start = "menu"
        [intents.balance]
        examples = ["what is my balance"]
        [node.menu]
        say = "How can I help?"
        expect = "intent"
        routes = { balance = "balance" }
        [node.balance]
        say = "Your balance is {customer.balance}."
        hangup = true
    "#;

    #[test]
    fn a_small_dialog_checks() {
        let p = plan(SMALL).unwrap();
        assert_eq!(p.start, "menu");
        assert_eq!(p.fallback, "menu");
        assert_eq!(p.attempts, 2);
        assert_eq!(p.intent_examples()[0].0, "balance");
    }

    #[test]
    fn every_problem_is_named_at_its_key() {
        let errors = plan(
            r#"
            start = "nowhere"
            intent_threshold = 2.0
            [intents.balance]
            examples = []
            [node.menu]
            say = "Hello {caller}"
            expect = "intent"
            routes = { refund = "menu", balance = "gone" }
            [node.ask]
            expect = "digits"
            digits = 99
            [node.yn]
            expect = "yes_no"
            yes = "menu"
            [node.dead_end]
            say = "hello"
            "#,
        )
        .unwrap_err()
        .join("\n");
        for expected in [
            "key \"dialog.start\": names node \"nowhere\"",
            "key \"dialog.intent_threshold\": expected 0 to 1",
            "key \"dialog.intents.balance.examples\": is empty",
            "key \"dialog.node.menu.say\": \"{caller}\" is not a value",
            "key \"dialog.node.menu.routes.refund\": names intent \"refund\"",
            "key \"dialog.node.menu.routes.balance\": names node \"gone\"",
            "key \"dialog.node.ask.slot\": is missing",
            "key \"dialog.node.ask.next\": is missing",
            "key \"dialog.node.ask.digits\": expected 1 to 32, got 99",
            "key \"dialog.node.yn.expect\": \"yes_no\" needs both yes and no",
            "key \"dialog.node.dead_end.next\": is missing",
        ] {
            assert!(
                errors.contains(expected),
                "missing {expected:?} in:\n{errors}"
            );
        }
    }

    /// What `baton check` says about a dialplan file whose one node has this `fetch`.
    fn fetch_errors(fetch: &str) -> Vec<String> {
        let text = format!(
            "match = [\"x\"]\n[[step]]\nbot = \"dialog\"\n[dialog]\nstart = \"a\"\n\
             [dialog.node.a]\nfetch = {fetch}\nhangup = true\n"
        );
        let file = std::path::Path::new("dialplans/test.toml");
        match crate::dialplan::Dialplan::parse(&text, file, std::path::Path::new("media")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn fetch_is_a_field_or_a_crm_request() {
        assert_eq!(fetch_errors("\"accounts\""), Vec::<String>::new());
        assert_eq!(
            fetch_errors(
                "{ url = \"https://crm.example/c/{customer.id}?card={slot.card}\", into = \"acc_1\" }"
            ),
            Vec::<String>::new()
        );
        let p = plan(
            r#"
            start = "a"
            [node.a]
            fetch = { url = "http://127.0.0.1:9100/c/{customer.id}", into = "accounts" }
            hangup = true
            [node.b]
            fetch = { url = "http://127.0.0.1:9100/", into = "all", timeout_ms = 250 }
            hangup = true
            "#,
        )
        .unwrap();
        let Some(Fetch::Http(http)) = &p.nodes["a"].fetch else {
            panic!("{:?}", p.nodes["a"]);
        };
        assert_eq!(http.into, "accounts");
        assert_eq!(http.timeout(), Duration::from_secs(2));
        let Some(Fetch::Http(http)) = &p.nodes["b"].fetch else {
            panic!("{:?}", p.nodes["b"]);
        };
        assert_eq!(http.timeout(), Duration::from_millis(250));
    }

    #[test]
    fn a_bad_crm_request_is_named_at_its_line_and_key() {
        for (fetch, expected) in [
            (
                r#"{ url = "ftp://crm.example/x", into = "a" }"#,
                "dialplans/test.toml:7:11: key \"dialog.node.a.fetch.url\": expected an http:// \
                 or https:// URL, got \"ftp://crm.example/x\"",
            ),
            (
                r#"{ url = "http://{slot.host}/x", into = "a" }"#,
                "dialplans/test.toml:7:11: key \"dialog.node.a.fetch.url\": \
                 \"http://{slot.host}/x\": write the host out; values may fill the path and \
                 query only",
            ),
            (
                r#"{ url = "http://crm.example/{caller}", into = "a" }"#,
                "dialplans/test.toml:7:11: key \"dialog.node.a.fetch.url\": \"{caller}\" is not a \
                 value the bot has",
            ),
            (
                r#"{ url = "http://crm.example/x" }"#,
                "dialplans/test.toml:7:9: key \"dialog.node.a.fetch\": missing field `into`",
            ),
            (
                r#"{ url = "http://crm.example/x", into = "a.b" }"#,
                "dialplans/test.toml:7:41: key \"dialog.node.a.fetch.into\": \"a.b\": use 1 to 64 \
                 letters, digits and _",
            ),
            (
                r#"{ url = "http://crm.example/x", into = "a", method = "POST" }"#,
                "dialplans/test.toml:7:53: key \"dialog.node.a.fetch.method\": unknown key \
                 `method`, expected one of `url`, `into`, `timeout_ms`",
            ),
            (
                r#"{ url = "http://crm.example/x", into = "a", timeout_ms = 50 }"#,
                "dialplans/test.toml:7:53: key \"dialog.node.a.fetch.timeout_ms\": expected 100 \
                 to 30000, got 50",
            ),
            (
                "42",
                "dialplans/test.toml:7:9: key \"dialog.node.a.fetch\": invalid type: integer `42`, \
                 expected a field of the customer record, or a table with url and into",
            ),
        ] {
            let errors = fetch_errors(fetch);
            assert!(
                errors.len() == 1 && errors[0].starts_with(expected),
                "{fetch}: expected {expected:?}, got {errors:#?}"
            );
        }
    }

    #[test]
    fn templates_split_into_text_and_values() {
        assert_eq!(
            template_parts("Card ending {slot.card}, balance {customer.a.0.b}.").unwrap(),
            vec![
                Part::Text("Card ending "),
                Part::Value("slot.card"),
                Part::Text(", balance "),
                Part::Value("customer.a.0.b"),
                Part::Text("."),
            ]
        );
        assert!(template_parts("open {slot.x").is_err());
        assert!(template_parts("empty {}").is_err());
        assert!(check_template("{slot}").is_err());
        assert!(check_template("no values at all").is_ok());
    }
}
