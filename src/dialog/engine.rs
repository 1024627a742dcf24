//! The built-in bot walking a [`DialogPlan`] for one call. Sans-IO: the call feeds what the
//! caller said or keyed, when they said nothing and what a CRM answered; the dialog
//! answers with what to say, what to listen for, what to fetch, what to write to the shared
//! context and when it is done. Rendering speech, timing the silence, making the request
//! and reaching the context are the caller's.

use super::customers::{birth_date, Customer, Customers};
use super::entities::{self, Date, DateOrder};
use super::intent::IntentModel;
use super::plan::{template_parts, DialogPlan, Expect, Fetch, HttpFetch, Node, Part};
use crate::context::document::Intent;
use crate::context::Change;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Nodes a dialog may pass through without hearing from the caller: more means the plan
/// loops on itself, and the call goes to a person rather than round in circles.
const MAX_SILENT_HOPS: u32 = 32;
/// Name similarity at or above which a spoken name is taken to be the customer's.
const NAME_MATCH: f32 = 0.75;
/// Confidence an intent of `anytime` needs while the node listens for something else.
const ANYTIME_CONFIDENCE: f32 = 0.6;
/// Longest answer kept as a slot or an unmatched phrase, in bytes.
const MAX_ANSWER: usize = 500;

/// What the dialog wants done next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Say this to the caller.
    Say(String),
    /// Play this recorded prompt (the path of a WAV the dialplan names) to the caller.
    Play(String),
    /// Listen for an answer: after everything said so far has been played, wait `timeout`
    /// for the caller to start; `max_digits` key presses (or `#`) end a keyed answer (none
    /// are taken at 0), and a final transcript is the answer when `speech` is set.
    Listen {
        hints: String,
        timeout: Duration,
        max_digits: usize,
        speech: bool,
    },
    /// GET this URL as JSON within `timeout`, and give the outcome to
    /// [`Dialog::fetched`]; the dialog puts out nothing more until then.
    Fetch {
        into: String,
        url: String,
        timeout: Duration,
    },
    /// Write this to the call's context.
    Write(Change),
    /// Send or schedule these `[followup.NAME]`s of the plan, filled from the context
    /// once everything written before is in it.
    FollowUp(Vec<String>),
    /// The dialog is over.
    End(Ending),
}

/// How a dialog ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Hang up (after what was said has been played).
    Hangup,
    /// Hand the call to a person, for this reason.
    Escalate(String),
}

/// What the caller did while the dialog listened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A final transcript of what they said.
    Heard(&'a str),
    /// Keys they pressed (without the `#` that ended them).
    Keys(&'a str),
    /// Nothing before the listening timed out.
    Silence,
}

/// One call's dialog.
pub struct Dialog {
    plan: Arc<DialogPlan>,
    intents: Arc<IntentModel>,
    customers: Arc<Customers>,
    /// The customer the calling number belongs to, before verification.
    caller: Option<Customer>,
    /// The customer the caller proved to be.
    verified: Option<Customer>,
    /// What CRMs answered, by the name each answer is kept under.
    crm_answers: Map<String, Value>,
    /// The name the answer to the outstanding request goes under.
    fetching: Option<String>,
    slots: BTreeMap<String, Value>,
    node: String,
    failures: u32,
    /// Identity checks that failed on this call, whatever node made them.
    failed_checks: u32,
    hops: u32,
    listening: bool,
    done: bool,
    out: VecDeque<Output>,
}

/// What a dialog that takes a call over midway carries from the call's context: the
/// slots filled so far and the customer the caller proved to be, so that it neither asks
/// again nor forgets (back from an agent, or after an external bot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    pub slots: BTreeMap<String, Value>,
    /// The verified customer's id.
    pub verified: Option<String>,
}

impl Dialog {
    /// Starts a dialog for a call from `caller_number`, at node `start`.
    pub fn new(
        plan: Arc<DialogPlan>,
        intents: Arc<IntentModel>,
        customers: Arc<Customers>,
        caller_number: Option<&str>,
        start: &str,
    ) -> Dialog {
        Dialog::resume(
            plan,
            intents,
            customers,
            caller_number,
            start,
            Carried::default(),
        )
    }

    /// Starts a dialog at node `start` with what the call has `carried` so far.
    pub fn resume(
        plan: Arc<DialogPlan>,
        intents: Arc<IntentModel>,
        customers: Arc<Customers>,
        caller_number: Option<&str>,
        start: &str,
        carried: Carried,
    ) -> Dialog {
        let caller = caller_number.and_then(|n| customers.by_phone(n)).cloned();
        let verified = carried.verified.and_then(|id| customers.get(&id)).cloned();
        let mut dialog = Dialog {
            plan,
            intents,
            customers,
            caller,
            verified,
            crm_answers: Map::new(),
            fetching: None,
            slots: carried.slots,
            node: String::new(),
            failures: 0,
            failed_checks: 0,
            hops: 0,
            listening: false,
            done: false,
            out: VecDeque::new(),
        };
        dialog.enter(start);
        dialog
    }

    /// The next thing to do, in order; `None` until the caller does something.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Whether the dialog has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The node the dialog is at.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// What the caller did; ignored unless the dialog is listening, which it never is
    /// while a fetch is outstanding.
    pub fn handle(&mut self, input: Input<'_>) {
        if !self.listening || self.done {
            return;
        }
        self.listening = false;
        self.hops = 0;
        let node = self.current();
        let outcome = match input {
            Input::Keys(keys) => self.keys(&node, keys),
            Input::Heard(text) => self.heard(&node, text),
            Input::Silence => Outcome::Retry(None),
        };
        match outcome {
            Outcome::Go(target) => self.enter(&target),
            Outcome::Retry(phrase) => self.retry(&node, phrase),
        }
    }

    /// What the CRM answered to the outstanding [`Output::Fetch`] (an error in one line);
    /// the node then carries on, or goes to its `on_fail` when the fetch failed.
    pub fn fetched(&mut self, result: Result<Value, String>) {
        let Some(into) = self.fetching.take() else {
            return;
        };
        let node = self.current();
        match result {
            Ok(value) => {
                let mut data = Map::new();
                data.insert(into.clone(), value.clone());
                self.write(Change::CustomerData { data });
                self.crm_answers.insert(into, value);
                self.proceed(&node);
            }
            Err(message) => self.fetch_failed(&node, &into, &message),
        }
    }

    fn current(&self) -> Node {
        self.plan.nodes.get(&self.node).cloned().unwrap_or_default()
    }

    fn write(&mut self, change: Change) {
        self.out.push_back(Output::Write(change));
    }

    /// Runs a node: fetches its data, then goes on with the rest of it at once or, when
    /// the data comes over HTTP, once it has come.
    fn enter(&mut self, name: &str) {
        self.hops += 1;
        if self.hops > MAX_SILENT_HOPS {
            self.write(Change::BotStuck {
                reason: format!("the dialog went round without listening, last at {name}"),
            });
            return self.end(Ending::Escalate("dialog_loop".into()));
        }
        let Some(node) = self.plan.nodes.get(name).cloned() else {
            return self.end(Ending::Escalate("dialog_error".into()));
        };
        self.node = name.to_owned();
        self.failures = 0;
        self.write(Change::BotStep {
            step: name.to_owned(),
        });
        match &node.fetch {
            Some(Fetch::Http(http)) => return self.fetch(&node, http),
            Some(Fetch::Field(field)) => self.copy_field(field),
            None => {}
        }
        self.proceed(&node);
    }

    /// The rest of a node, after its fetch: says its text, does its work, then listens or
    /// moves on.
    fn proceed(&mut self, node: &Node) {
        if let Some(action) = &node.action {
            let detail: Map<String, Value> = action
                .detail
                .iter()
                .map(|(k, t)| (k.clone(), Value::String(self.render(t, Spoken::AsData))))
                .collect();
            self.write(Change::Action {
                name: action.name.clone(),
                detail: Value::Object(detail),
            });
            self.write(Change::BotAttempt {
                attempt: format!("{}: done", action.name),
            });
        }
        if !node.followup.is_empty() {
            self.out.push_back(Output::FollowUp(node.followup.clone()));
        }
        if let Some(file) = &node.play {
            self.out.push_back(Output::Play(file.clone()));
        }
        if let Some(text) = &node.say {
            self.say(text);
        }
        if let Some(verify) = &node.verify {
            let target = if self.verify(&verify.name, &verify.secret) {
                node.next.clone()
            } else {
                self.failed_checks += 1;
                if self.failed_checks >= node.attempts.unwrap_or(self.plan.attempts) {
                    // Guessing on: a person takes it from here.
                    self.write(Change::BotStuck {
                        reason: format!(
                            "identity not verified after {} attempts",
                            self.failed_checks
                        ),
                    });
                    None
                } else {
                    node.on_fail.clone()
                }
            };
            return self.enter(&target.unwrap_or_else(|| self.plan.fallback.clone()));
        }
        if let Some(reason) = &node.escalate {
            self.write(Change::Action {
                name: "escalation_requested".into(),
                detail: serde_json::json!({ "reason": reason }),
            });
            return self.end(Ending::Escalate(reason.clone()));
        }
        if node.hangup {
            return self.end(Ending::Hangup);
        }
        if let Some(expect) = node.expect {
            return self.listen(node, expect);
        }
        match &node.next {
            Some(next) => self.enter(next),
            None => self.end(Ending::Hangup),
        }
    }

    fn end(&mut self, ending: Ending) {
        self.done = true;
        self.listening = false;
        self.out.push_back(Output::End(ending));
    }

    fn say(&mut self, template: &str) {
        let text = self.render(template, Spoken::AsSpeech);
        if !text.trim().is_empty() {
            self.out.push_back(Output::Say(text));
        }
    }

    fn listen(&mut self, node: &Node, expect: Expect) {
        self.listening = true;
        let max_digits = match expect {
            Expect::Digits => node.digits.map_or(16, |n| n as usize),
            Expect::Date | Expect::DateOrDigits => 8,
            _ => 1,
        };
        self.out.push_back(Output::Listen {
            hints: self.hints(node, expect),
            timeout: node
                .timeout_secs
                .map_or(self.plan.timeout, |s| Duration::from_secs(u64::from(s))),
            max_digits,
            speech: true,
        });
    }

    /// Words the recogniser should expect: the node's own, then what the answer implies.
    fn hints(&self, node: &Node, expect: Expect) -> String {
        let implied = match expect {
            Expect::Intent => node
                .routes
                .keys()
                .filter_map(|i| self.plan.intents.get(i))
                .filter_map(|spec| spec.examples.first().cloned())
                .collect::<Vec<_>>()
                .join(". "),
            Expect::YesNo => "Yes. No.".into(),
            Expect::Name => self
                .caller
                .as_ref()
                .map(|c| format!("My name is {}.", c.name))
                .unwrap_or_default(),
            Expect::Date | Expect::DateOrDigits => "The 5th of March 1980. 4 8 2 1.".into(),
            Expect::Digits => "4 8 2 1.".into(),
            Expect::Amount | Expect::Text => String::new(),
        };
        [node.hints.clone().unwrap_or_default(), implied]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An answer not understood, or none: ask again, or give up on the question.
    fn retry(&mut self, node: &Node, phrase: Option<String>) {
        if let Some(phrase) = phrase {
            self.write(Change::BotUnmatched { phrase });
        }
        self.failures += 1;
        let attempts = node.attempts.unwrap_or(self.plan.attempts);
        if self.failures >= attempts {
            self.write(Change::BotStuck {
                reason: format!(
                    "no usable answer at {} after {} attempts",
                    self.node, self.failures
                ),
            });
            let target = node
                .on_fail
                .clone()
                .unwrap_or_else(|| self.plan.fallback.clone());
            return self.enter(&target);
        }
        self.write(Change::BotReprompt);
        match &node.reprompt {
            Some(text) => self.say(text),
            None => {
                if let Some(file) = &node.play {
                    self.out.push_back(Output::Play(file.clone()));
                }
                self.say(node.say.as_deref().unwrap_or_default());
            }
        }
        if let Some(expect) = node.expect {
            self.listen(node, expect);
        }
    }

    fn keys(&mut self, node: &Node, keys: &str) -> Outcome {
        if let Some(target) = node.keys.get(keys) {
            return Outcome::Go(target.clone());
        }
        let value = match node.expect {
            Some(Expect::YesNo) => {
                return match keys {
                    "1" => yes_no(node, true),
                    "2" => yes_no(node, false),
                    _ => Outcome::Retry(None),
                }
            }
            Some(Expect::Digits) => self.digits_for(node, keys),
            Some(Expect::DateOrDigits) => {
                digits_of(node, keys).or_else(|| keyed_date(keys).map(date_value))
            }
            Some(Expect::Date) => keyed_date(keys).map(date_value),
            _ => None,
        };
        self.filled(node, value, None)
    }

    fn heard(&mut self, node: &Node, text: &str) -> Outcome {
        let text = clip(text);
        let Some(expect) = node.expect else {
            return Outcome::Retry(None);
        };
        let classified = self.intents.classify(&text);
        if expect == Expect::Intent {
            let intent = Intent::from(&classified);
            let routed = classified
                .best
                .as_ref()
                .filter(|b| b.confidence >= self.plan.intent_threshold)
                .and_then(|b| {
                    node.routes
                        .get(&b.name)
                        .or_else(|| self.plan.anytime.get(&b.name))
                });
            if let (Some(target), Some(name)) = (routed.cloned(), intent.name.clone()) {
                self.write(Change::Intent {
                    name,
                    confidence: intent.confidence,
                    alternatives: intent.alternatives,
                });
                return Outcome::Go(target);
            }
            return match &node.next {
                Some(next) => Outcome::Go(next.clone()),
                None => Outcome::Retry(Some(text)),
            };
        }
        // "I want a human" is heard whatever the question was.
        if let Some(best) = &classified.best {
            if best.confidence >= ANYTIME_CONFIDENCE.max(self.plan.intent_threshold) {
                if let Some(target) = self.plan.anytime.get(&best.name).cloned() {
                    let intent = Intent::from(&classified);
                    self.write(Change::Intent {
                        name: best.name.clone(),
                        confidence: best.confidence,
                        alternatives: intent.alternatives,
                    });
                    return Outcome::Go(target);
                }
            }
        }
        let value = match expect {
            Expect::YesNo => {
                return match entities::yes_no(&text) {
                    Some(answer) => yes_no(node, answer),
                    None => Outcome::Retry(Some(text)),
                }
            }
            Expect::Name => spoken_name(&text).map(Value::String),
            Expect::Date => entities::date(&text, DateOrder::DayMonth).map(date_value),
            Expect::Digits => self.digits_for(node, &text),
            Expect::DateOrDigits => entities::date(&text, DateOrder::DayMonth)
                .map(date_value)
                .or_else(|| digits_of(node, &text)),
            Expect::Amount => entities::money(&text).map(Value::from),
            Expect::Text => Some(Value::String(text.clone())),
            Expect::Intent => None,
        };
        self.filled(node, value, Some(text))
    }

    /// Keeps an answer in its slot and moves on, or asks again.
    fn filled(&mut self, node: &Node, value: Option<Value>, phrase: Option<String>) -> Outcome {
        match (value, &node.slot, &node.next) {
            (Some(value), Some(slot), Some(next)) => {
                self.slots.insert(slot.clone(), value.clone());
                self.write(Change::Slot {
                    name: slot.clone(),
                    value,
                });
                Outcome::Go(next.clone())
            }
            _ => Outcome::Retry(phrase),
        }
    }

    /// Digits for a `digits` node: with `one_of`, the accepted value the answer holds.
    fn digits_for(&self, node: &Node, text: &str) -> Option<Value> {
        let Some(path) = &node.one_of else {
            return digits_of(node, text);
        };
        let heard = entities::digits(text)?;
        let record = &self.verified.as_ref()?.record;
        values_at(record, path)
            .into_iter()
            .filter(|v| !v.is_empty())
            .find(|v| heard.contains(v.as_str()))
            .map(Value::String)
    }

    /// Checks the name and secret slots against the customer file: the calling number's
    /// customer first, else whoever the name matches best.
    fn verify(&mut self, name_slot: &str, secret_slot: &str) -> bool {
        let name = self
            .slots
            .get(name_slot)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let secret = self.slots.get(secret_slot).cloned().unwrap_or(Value::Null);
        let (method, customer) = {
            let customer = self
                .caller
                .as_ref()
                .filter(|c| entities::name_match(name, &c.name) >= NAME_MATCH)
                .or_else(|| {
                    self.customers
                        .iter()
                        .map(|c| (c, entities::name_match(name, &c.name)))
                        .filter(|(_, score)| *score >= NAME_MATCH)
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(c, _)| c)
                });
            match (secret.as_str(), customer) {
                (Some(s), Some(c)) if s.contains('-') => (
                    "date_of_birth",
                    c.date_of_birth
                        .is_some_and(|d| date_value(d).as_str() == Some(s))
                        .then(|| c.clone()),
                ),
                (Some(s), Some(c)) => (
                    "card_digits",
                    c.card_last4.iter().any(|d| d == s).then(|| c.clone()),
                ),
                _ => ("name", None),
            }
        };
        let verified = customer.is_some();
        self.write(Change::Identity {
            verified,
            method: Some(method.into()),
            customer_id: customer.as_ref().map(|c| c.id.clone()),
        });
        if let Some(c) = &customer {
            let mut data = Map::new();
            data.insert("name".into(), Value::String(c.name.clone()));
            self.write(Change::CustomerData { data });
        } else {
            self.write(Change::BotAttempt {
                attempt: format!("verify identity by {method}: failed"),
            });
        }
        self.verified = customer;
        verified
    }

    /// Puts out the CRM request and waits for its answer, or fails at once when the URL
    /// cannot be filled in.
    fn fetch(&mut self, node: &Node, http: &HttpFetch) {
        match self.render_url(&http.url) {
            Ok(url) => {
                self.fetching = Some(http.into.clone());
                self.out.push_back(Output::Fetch {
                    into: http.into.clone(),
                    url,
                    timeout: http.timeout(),
                });
            }
            Err(message) => self.fetch_failed(node, &http.into, &message),
        }
    }

    fn fetch_failed(&mut self, node: &Node, into: &str, message: &str) {
        self.write(Change::BotAttempt {
            attempt: format!("fetch {into}: {message}"),
        });
        match &node.on_fail {
            Some(target) => self.enter(target),
            None => self.proceed(node),
        }
    }

    /// Copies a field of the verified customer's record into the context.
    fn copy_field(&mut self, field: &str) {
        let value = self
            .verified
            .as_ref()
            .and_then(|c| c.record.get(field))
            .cloned();
        match value {
            Some(value) => {
                let mut data = Map::new();
                data.insert(field.to_owned(), value);
                self.write(Change::CustomerData { data });
            }
            None => self.write(Change::BotAttempt {
                attempt: format!("fetch {field}: not available for this caller"),
            }),
        }
    }

    /// Fills a template's values from the slots, the verified customer's record and what
    /// CRMs answered.
    fn render(&self, template: &str, how: Spoken) -> String {
        let Ok(parts) = template_parts(template) else {
            return template.to_owned();
        };
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(path) => out.push_str(&text_of(self.value(path), how)),
            }
        }
        out
    }

    /// Fills a URL template, each value percent-encoded; the error names a value the
    /// dialog does not have.
    fn render_url(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        for part in template_parts(template)? {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(path) => {
                    let text = match self.value(path) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        _ => String::new(),
                    };
                    if text.is_empty() {
                        return Err(format!("no value for {{{path}}}"));
                    }
                    // Encoded or not, a segment of dots climbs the path.
                    if text == "." || text == ".." {
                        return Err(format!(
                            "{{{path}}} is \"{text}\", which would move the URL's path"
                        ));
                    }
                    out.push_str(&url_encoded(&text));
                }
            }
        }
        Ok(out)
    }

    /// The value at a template's path: `slot.NAME...`, or `customer.PATH` in the verified
    /// customer's record, else in what CRMs answered.
    fn value(&self, path: &str) -> Option<&Value> {
        let mut keys = path.split('.');
        match keys.next()? {
            "slot" => walk(self.slots.get(keys.next()?)?, keys),
            "customer" => {
                let in_record = self
                    .verified
                    .as_ref()
                    .and_then(|c| walk(&c.record, keys.clone()));
                in_record.or_else(|| walk(self.crm_answers.get(keys.next()?)?, keys))
            }
            _ => None,
        }
    }
}

/// The value down a path of keys and list positions.
pub(crate) fn walk<'v, 'k>(
    value: &'v Value,
    mut keys: impl Iterator<Item = &'k str>,
) -> Option<&'v Value> {
    keys.try_fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) => v.get(i),
        Err(_) => v.get(key),
    })
}

/// Text made safe as one path segment or query value: everything but letters, digits and
/// `-._~` percent-encoded, so that a value never adds a `/`, `?`, `#` or `@`.
pub(crate) fn url_encoded(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Where an answer leads.
enum Outcome {
    Go(String),
    /// Not understood (the phrase, when something was said).
    Retry(Option<String>),
}

fn yes_no(node: &Node, answer: bool) -> Outcome {
    let target = if answer { &node.yes } else { &node.no };
    target.clone().map_or(Outcome::Retry(None), Outcome::Go)
}

/// Digits from speech or keys. With the node's `digits = n`, a longer run counts by its
/// last n digits: a caller asked for a card's last four who reads the whole number ends
/// with them.
fn digits_of(node: &Node, text: &str) -> Option<Value> {
    let digits = entities::digits(text)?;
    let kept = match node.digits.map(|n| n as usize) {
        Some(n) if digits.len() >= n => &digits[digits.len() - n..],
        Some(_) => return None,
        None => digits.as_str(),
    };
    (!kept.is_empty()).then(|| Value::String(kept.to_owned()))
}

/// The strings at a dotted path of a record, through lists: `cards.last4` is the `last4`
/// of every card.
fn values_at(record: &Value, path: &str) -> Vec<String> {
    let mut found = vec![record];
    for key in path.split('.') {
        found = found
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|i| i.get(key)).collect(),
                other => other.get(key).into_iter().collect::<Vec<_>>(),
            })
            .collect();
    }
    found
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        })
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// A date as a slot holds it: `YYYY-MM-DD`.
fn date_value(d: Date) -> Value {
    Value::String(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
}

/// A date keyed as eight digits, day first (`05031980`).
fn keyed_date(keys: &str) -> Option<Date> {
    if keys.len() != 8 || !keys.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    birth_date(
        keys[4..].parse().ok()?,
        keys[2..4].parse().ok()?,
        keys[..2].parse().ok()?,
    )
}

/// Lead-ins callers put before their name.
const NAME_LEAD_INS: [&str; 6] = [
    "my name is",
    "my name's",
    "the name is",
    "this is",
    "it's",
    "it is",
];

/// The name in an answer to "what is your name": lead-ins and punctuation dropped, at
/// most five words.
fn spoken_name(text: &str) -> Option<String> {
    let mut rest = text.trim();
    if let Some(lead) = NAME_LEAD_INS.iter().find(|lead| {
        rest.get(..lead.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(lead))
    }) {
        rest = rest[lead.len()..].trim();
    }
    let words: Vec<String> = rest
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    (!words.is_empty() && words.len() <= 5).then(|| words.join(" "))
}

/// Who a rendered template is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spoken {
    /// The caller's ears: digit strings one digit at a time, so that "4821" is not read
    /// as a number in the thousands.
    AsSpeech,
    /// The context, as the values are.
    AsData,
}

fn text_of(value: Option<&Value>, how: Spoken) -> String {
    match value {
        Some(Value::String(s))
            if how == Spoken::AsSpeech
                && !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.chars().map(String::from).collect::<Vec<_>>().join(" ")
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        _ => String::new(),
    }
}

/// An answer bounded for the context.
fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_ANSWER);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::plan::RawDialog;

    const PLAN: &str = r#"
        start = "greet"
        fallback = "handover"
        [anytime]
        speak_to_agent = "agent"
        [intents.block_card]
        examples = ["please block my card", "my card was stolen", "I lost my card"]
        [intents.balance]
        examples = ["what is my balance", "how much money do I have"]
        [intents.speak_to_agent]
        examples = ["I want to speak to a real person", "let me talk to an agent"]
        [node.greet]
        say = "Welcome."
        next = "ask_name"
        [node.ask_name]
        say = "Your name, please."
        expect = "name"
        slot = "name"
        next = "ask_secret"
        [node.ask_secret]
        say = "Your date of birth or card digits?"
        expect = "date_or_digits"
        slot = "secret"
        next = "verify"
        [node.verify]
        verify = { name = "name", secret = "secret" }
        next = "menu"
        on_fail = "handover"
        [node.menu]
        say = "Hello {customer.first_name}. How can I help?"
        expect = "intent"
        keys = { "0" = "agent" }
        routes = { block_card = "block_which", balance = "balance" }
        [node.block_which]
        say = "Which card?"
        expect = "digits"
        digits = 4
        one_of = "cards.last4"
        slot = "card"
        next = "confirm"
        [node.confirm]
        say = "Block the card ending {slot.card}?"
        expect = "yes_no"
        yes = "blocked"
        no = "goodbye"
        [node.blocked]
        action = { name = "card_blocked", detail = { card = "{slot.card}" } }
        say = "Your card ending {slot.card} is blocked."
        next = "goodbye"
        [node.balance]
        fetch = "accounts"
        say = "Your balance is {customer.accounts.0.balance} pounds."
        next = "goodbye"
        [node.goodbye]
        say = "Goodbye."
        hangup = true
        [node.agent]
        say = "Bringing in a colleague."
        escalate = "caller_request"
        [node.handover]
        escalate = "not_understood"
    "#;

    const CUSTOMERS: &str = r#"{"customers": [
        {"id": "C-1", "name": "Alice Johnson", "first_name": "Alice",
         "phones": ["+447700900123"], "date_of_birth": "1980-03-05",
         "cards": [{"last4": "4821"}], "accounts": [{"balance": 412.5}]}
    ]}"#;

    fn dialog(caller: Option<&str>) -> Dialog {
        let raw: RawDialog = toml::from_str(PLAN).unwrap();
        let plan = Arc::new(DialogPlan::check(raw).unwrap());
        let intents = Arc::new(IntentModel::new(&plan.intent_examples()));
        let customers = Arc::new(Customers::parse(CUSTOMERS).unwrap());
        let start = plan.start.clone();
        Dialog::new(plan, intents, customers, caller, &start)
    }

    /// Everything the dialog put out since the last call.
    fn drain(d: &mut Dialog) -> Vec<Output> {
        std::iter::from_fn(|| d.poll()).collect()
    }

    fn said(out: &[Output]) -> Vec<&str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Say(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn writes(out: &[Output]) -> Vec<&Change> {
        out.iter()
            .filter_map(|o| match o {
                Output::Write(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn ending(out: &[Output]) -> Option<&Ending> {
        out.iter().find_map(|o| match o {
            Output::End(e) => Some(e),
            _ => None,
        })
    }

    #[test]
    fn a_dialog_taking_over_midway_knows_the_verified_caller_and_the_slots() {
        let fresh = dialog(None);
        let carried = Carried {
            slots: BTreeMap::from([("card".to_owned(), Value::from("4821"))]),
            verified: Some("C-1".into()),
        };
        let (plan, intents, customers) = (fresh.plan, fresh.intents, fresh.customers);
        let mut d = Dialog::resume(
            plan.clone(),
            intents.clone(),
            customers.clone(),
            None,
            "menu",
            carried.clone(),
        );
        assert_eq!(said(&drain(&mut d)), ["Hello Alice. How can I help?"]);
        let mut d = Dialog::resume(
            plan.clone(),
            intents.clone(),
            customers.clone(),
            None,
            "confirm",
            carried,
        );
        assert_eq!(said(&drain(&mut d)), ["Block the card ending 4 8 2 1?"]);
        // A customer id the data does not know verifies nobody.
        let unknown = Carried {
            verified: Some("C-404".into()),
            ..Carried::default()
        };
        let mut d = Dialog::resume(plan, intents, customers, None, "menu", unknown);
        assert_eq!(said(&drain(&mut d)), ["Hello . How can I help?"]);
    }

    #[test]
    fn a_caller_verifies_and_blocks_a_card() {
        let mut d = dialog(Some("+447700900123"));
        let out = drain(&mut d);
        assert_eq!(said(&out), ["Welcome.", "Your name, please."]);
        let Some(Output::Listen { hints, .. }) = out.last() else {
            panic!("listens for the name: {out:?}");
        };
        assert!(
            hints.contains("Alice Johnson"),
            "the caller's name biases speech: {hints}"
        );

        d.handle(Input::Heard("My name is Alice Johnson."));
        assert_eq!(said(&drain(&mut d)), ["Your date of birth or card digits?"]);

        d.handle(Input::Heard("The fifth of March, nineteen eighty."));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::Identity {
            verified: true,
            method: Some("date_of_birth".into()),
            customer_id: Some("C-1".into()),
        }));
        assert_eq!(said(&out), ["Hello Alice. How can I help?"]);

        d.handle(Input::Heard(
            "Please block my credit card, it was stolen yesterday.",
        ));
        let out = drain(&mut d);
        assert!(
            writes(&out)
                .iter()
                .any(|c| matches!(c, Change::Intent { name, .. } if name == "block_card")),
            "{out:?}"
        );
        d.handle(Input::Heard("It's 4 8 2 1 4 8 2 1."));
        assert_eq!(said(&drain(&mut d)), ["Block the card ending 4 8 2 1?"]);
        d.handle(Input::Heard("Yes, please."));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::Action {
            name: "card_blocked".into(),
            detail: serde_json::json!({ "card": "4821" }),
        }));
        assert_eq!(
            said(&out),
            ["Your card ending 4 8 2 1 is blocked.", "Goodbye."]
        );
        assert_eq!(ending(&out), Some(&Ending::Hangup));
        assert!(d.is_done());
    }

    #[test]
    fn card_digits_verify_too_and_customer_data_is_read_only_after() {
        let mut d = dialog(None);
        drain(&mut d);
        d.handle(Input::Heard("It's Alice Jonson."));
        drain(&mut d);
        d.handle(Input::Keys("4821"));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::Identity {
            verified: true,
            method: Some("card_digits".into()),
            customer_id: Some("C-1".into()),
        }));
        d.handle(Input::Heard("How much money do I have?"));
        let out = drain(&mut d);
        assert_eq!(said(&out), ["Your balance is 412.5 pounds.", "Goodbye."]);
    }

    #[test]
    fn a_wrong_secret_fails_verification() {
        let mut d = dialog(Some("+447700900123"));
        drain(&mut d);
        d.handle(Input::Heard("Alice Johnson"));
        drain(&mut d);
        d.handle(Input::Heard("one two three four"));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::Identity {
            verified: false,
            method: Some("card_digits".into()),
            customer_id: None,
        }));
        assert_eq!(
            ending(&out),
            Some(&Ending::Escalate("not_understood".into()))
        );
    }

    #[test]
    fn a_card_is_one_of_the_customers_whatever_else_was_heard() {
        let mut d = dialog(Some("+447700900123"));
        drain(&mut d);
        for answer in ["Alice Johnson", "4821", "block my card"] {
            d.handle(Input::Heard(answer));
            drain(&mut d);
        }
        // A digit too many, as whisper sometimes hears: the customer's card is found in it.
        d.handle(Input::Heard("4 8 2 1 1"));
        assert_eq!(said(&drain(&mut d)), ["Block the card ending 4 8 2 1?"]);
        let mut d = dialog(Some("+447700900123"));
        drain(&mut d);
        for answer in ["Alice Johnson", "4821", "block my card"] {
            d.handle(Input::Heard(answer));
            drain(&mut d);
        }
        // A card the customer does not have is asked again, never taken.
        d.handle(Input::Heard("1 2 3 4"));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::BotReprompt), "{out:?}");
        assert_eq!(
            values_at(&serde_json::json!({"a": [{"b": "1"}, {"b": 2}]}), "a.b"),
            ["1", "2"]
        );
    }

    #[test]
    fn identity_guessed_at_too_often_goes_to_a_person() {
        let toml = PLAN.replace("on_fail = \"handover\"", "on_fail = \"ask_name\"");
        let raw: RawDialog = toml::from_str(&toml).unwrap();
        let plan = Arc::new(DialogPlan::check(raw).unwrap());
        let intents = Arc::new(IntentModel::new(&plan.intent_examples()));
        let customers = Arc::new(Customers::parse(CUSTOMERS).unwrap());
        let mut d = Dialog::new(plan, intents, customers, None, "greet");
        drain(&mut d);
        for attempt in 1..=2 {
            d.handle(Input::Heard("Alice Johnson"));
            drain(&mut d);
            d.handle(Input::Heard("one two three four"));
            let out = drain(&mut d);
            if attempt == 1 {
                assert_eq!(said(&out), ["Your name, please."], "asked again");
            } else {
                assert!(writes(&out).iter().any(
                    |c| matches!(c, Change::BotStuck { reason } if reason.contains("identity"))
                ));
                assert_eq!(
                    ending(&out),
                    Some(&Ending::Escalate("not_understood".into()))
                );
            }
        }
    }

    #[test]
    fn silence_is_asked_again_then_handed_over() {
        let mut d = dialog(None);
        drain(&mut d);
        d.handle(Input::Silence);
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::BotReprompt));
        assert_eq!(said(&out), ["Your name, please."]);
        d.handle(Input::Silence);
        let out = drain(&mut d);
        assert!(writes(&out)
            .iter()
            .any(|c| matches!(c, Change::BotStuck { reason } if reason.contains("ask_name"))));
        assert_eq!(
            ending(&out),
            Some(&Ending::Escalate("not_understood".into()))
        );
    }

    #[test]
    fn asking_for_a_person_works_whatever_the_question() {
        let mut d = dialog(None);
        drain(&mut d);
        d.handle(Input::Heard("I want to speak to a real person."));
        let out = drain(&mut d);
        assert_eq!(said(&out), ["Bringing in a colleague."]);
        assert_eq!(
            ending(&out),
            Some(&Ending::Escalate("caller_request".into()))
        );
    }

    #[test]
    fn what_is_not_understood_is_recorded_and_asked_again() {
        let mut d = dialog(Some("+447700900123"));
        drain(&mut d);
        d.handle(Input::Heard("Alice Johnson"));
        drain(&mut d);
        d.handle(Input::Heard("4821"));
        drain(&mut d);
        d.handle(Input::Heard("What's the weather like on Mars?"));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::BotUnmatched {
            phrase: "What's the weather like on Mars?".into()
        }));
        assert_eq!(said(&out), ["Hello Alice. How can I help?"]);
        d.handle(Input::Keys("0"));
        assert_eq!(
            ending(&drain(&mut d)),
            Some(&Ending::Escalate("caller_request".into()))
        );
    }

    #[test]
    fn input_while_not_listening_is_ignored_and_a_loop_is_caught() {
        let mut d = dialog(None);
        d.handle(Input::Heard("Let me talk to an agent."));
        assert!(d.is_done());
        drain(&mut d);
        d.handle(Input::Heard("Alice Johnson"));
        assert_eq!(drain(&mut d), []);

        let raw: RawDialog = toml::from_str(
            r#"
            start = "a"
            [node.a]
            next = "b"
            [node.b]
            next = "a"
        "#,
        )
        .unwrap();
        let plan = Arc::new(DialogPlan::check(raw).unwrap());
        let mut d = Dialog::new(
            plan,
            Arc::new(IntentModel::new(&[])),
            Arc::new(Customers::default()),
            None,
            "a",
        );
        let out = drain(&mut d);
        assert_eq!(ending(&out), Some(&Ending::Escalate("dialog_loop".into())));
    }

    const CRM_PLAN: &str = r#"
        start = "ask"
        [node.ask]
        say = "Your order number?"
        expect = "text"
        slot = "number"
        next = "lookup"
        [node.lookup]
        fetch = { url = "http://crm.example/orders/{slot.number}/status?v=1", into = "order", timeout_ms = 500 }
        say = "Your order is {customer.order.status}."
        next = "goodbye"
        on_fail = "sorry"
        [node.whose]
        fetch = { url = "http://crm.example/customers/{customer.id}", into = "profile" }
        say = "One moment."
        next = "goodbye"
        [node.again]
        fetch = { url = "http://crm.example/ping", into = "ping" }
        next = "goodbye"
        on_fail = "again"
        [node.sorry]
        say = "Our systems are down."
        escalate = "crm_down"
        [node.goodbye]
        say = "Goodbye."
        hangup = true
    "#;

    fn crm_dialog(start: &str) -> Dialog {
        plain_dialog(toml::from_str(CRM_PLAN).unwrap(), start)
    }

    /// A dialog of `raw` without intents, over the test customers, at `start`.
    fn plain_dialog(raw: RawDialog, start: &str) -> Dialog {
        Dialog::new(
            Arc::new(DialogPlan::check(raw).unwrap()),
            Arc::new(IntentModel::new(&[])),
            Arc::new(Customers::parse(CUSTOMERS).unwrap()),
            None,
            start,
        )
    }

    #[test]
    fn a_recorded_prompt_plays_before_the_words_and_again_on_a_retry() {
        let raw: RawDialog = toml::from_str(
            r#"
            start = "ask"
            fallback = "bye"
            [node.ask]
            play = "/media/chime.wav"
            say = "Yes or no?"
            expect = "yes_no"
            yes = "bye"
            no = "bye"
            [node.bye]
            hangup = true
        "#,
        )
        .unwrap();
        let mut d = plain_dialog(raw, "ask");
        let prompts = |out: &[Output]| {
            out.iter()
                .filter_map(|o| match o {
                    Output::Play(file) => Some(file.clone()),
                    Output::Say(text) => Some(text.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let out = drain(&mut d);
        assert_eq!(prompts(&out), ["/media/chime.wav", "Yes or no?"]);
        d.handle(Input::Heard("purple"));
        let out = drain(&mut d);
        assert_eq!(prompts(&out), ["/media/chime.wav", "Yes or no?"]);
    }

    /// A dialog waiting for the CRM's answer about the order the caller named.
    fn fetching_order(number: &str) -> (Dialog, Vec<Output>) {
        let mut d = crm_dialog("ask");
        drain(&mut d);
        d.handle(Input::Heard(number));
        let out = drain(&mut d);
        (d, out)
    }

    #[test]
    fn an_http_fetch_asks_for_an_encoded_url_and_waits() {
        let (mut d, out) = fetching_order("A/1 ../x?y#z");
        assert_eq!(
            out.last(),
            Some(&Output::Fetch {
                into: "order".into(),
                url: "http://crm.example/orders/A%2F1%20..%2Fx%3Fy%23z/status?v=1".into(),
                timeout: Duration::from_millis(500),
            }),
            "the fetch is the last thing put out: {out:?}"
        );
        assert!(writes(&out).contains(&&Change::BotStep {
            step: "lookup".into()
        }));
        // What the caller says meanwhile is not an answer to anything.
        d.handle(Input::Heard("hello?"));
        d.handle(Input::Silence);
        assert_eq!(drain(&mut d), []);
        assert!(!d.is_done());
    }

    #[test]
    fn a_fetched_answer_is_customer_data_for_the_rest_of_the_node() {
        let (mut d, _) = fetching_order("1234");
        let order = serde_json::json!({ "status": "shipped" });
        d.fetched(Ok(order.clone()));
        let out = drain(&mut d);
        let mut data = Map::new();
        data.insert("order".into(), order);
        assert!(
            writes(&out).contains(&&Change::CustomerData { data }),
            "{out:?}"
        );
        assert_eq!(said(&out), ["Your order is shipped.", "Goodbye."]);
        assert_eq!(ending(&out), Some(&Ending::Hangup));
        // An answer nobody is waiting for changes nothing.
        d.fetched(Ok(Value::Null));
        assert_eq!(drain(&mut d), []);
    }

    #[test]
    fn a_failed_fetch_goes_to_on_fail() {
        let (mut d, _) = fetching_order("1234");
        d.fetched(Err("the CRM answered 503 Service Unavailable".into()));
        let out = drain(&mut d);
        assert!(writes(&out).contains(&&Change::BotAttempt {
            attempt: "fetch order: the CRM answered 503 Service Unavailable".into()
        }));
        assert_eq!(said(&out), ["Our systems are down."]);
        assert_eq!(ending(&out), Some(&Ending::Escalate("crm_down".into())));
    }

    #[test]
    fn a_url_that_cannot_be_filled_is_never_fetched() {
        // Nobody is verified, so there is no customer id to ask about.
        let mut d = crm_dialog("whose");
        let out = drain(&mut d);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Fetch { .. })),
            "{out:?}"
        );
        assert!(writes(&out).contains(&&Change::BotAttempt {
            attempt: "fetch profile: no value for {customer.id}".into()
        }));
        assert_eq!(
            said(&out),
            ["One moment.", "Goodbye."],
            "without on_fail, on"
        );

        let (_, out) = fetching_order("..");
        assert!(
            !out.iter().any(|o| matches!(o, Output::Fetch { .. })),
            "{out:?}"
        );
        assert_eq!(said(&out), ["Our systems are down."]);
    }

    #[test]
    fn a_crm_that_keeps_failing_is_caught_by_the_loop_guard() {
        let mut d = crm_dialog("again");
        for _ in 0..MAX_SILENT_HOPS {
            assert!(matches!(drain(&mut d).last(), Some(Output::Fetch { .. })));
            d.fetched(Err("no answer within 2s".into()));
        }
        let out = drain(&mut d);
        assert_eq!(ending(&out), Some(&Ending::Escalate("dialog_loop".into())));
    }

    #[test]
    fn values_are_encoded_to_stay_one_segment() {
        assert_eq!(url_encoded("C-1_a.b~"), "C-1_a.b~");
        assert_eq!(
            url_encoded("a/b?c=d&e#f@g:h%"),
            "a%2Fb%3Fc%3Dd%26e%23f%40g%3Ah%25"
        );
        assert_eq!(url_encoded("é "), "%C3%A9%20");
    }

    #[test]
    fn names_lose_their_lead_in() {
        assert_eq!(
            spoken_name("My name is Alice Johnson.").as_deref(),
            Some("Alice Johnson")
        );
        assert_eq!(spoken_name("it's bob").as_deref(), Some("bob"));
        assert_eq!(spoken_name("").as_deref(), None);
        assert_eq!(
            spoken_name("\u{212a}\u{212a}\u{212a} x").as_deref(),
            Some("\u{212a}\u{212a}\u{212a} x")
        );
        assert_eq!(
            keyed_date("05031980"),
            Some(Date {
                year: 1980,
                month: 3,
                day: 5
            })
        );
        assert_eq!(keyed_date("31021980"), None);
    }
}
