//! A short summary of a call's context for the agent who picks it up: who is calling and what
//! they want, what was done, where the bot got to, what comes next, and the caller's mood.
//!
//! It is built by fixed rules, not generated: the same context always gives the same words,
//! at most five sentences and [`MAX_CHARS`] characters whatever the context holds, so an
//! agent can read it in a few seconds while the call rings.

use super::document::{Context, Summary};
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest summary text, in characters.
pub const MAX_CHARS: usize = 400;

/// Summarises `ctx`, turning intent codes into words by rule ("block_card" -> "block card").
pub fn summarize(ctx: &Context) -> Summary {
    summarize_with(ctx, &BTreeMap::new())
}

/// As [`summarize`], with descriptions of intents by code, each a phrase that reads after
/// "wants to" ("block_card" -> "block a lost or stolen card").
pub fn summarize_with(ctx: &Context, descriptions: &BTreeMap<String, String>) -> Summary {
    let want = ctx
        .intent
        .name
        .as_deref()
        .map(|name| Want::new(name, descriptions, ctx));
    let mut parts = [
        Some(situation(ctx, want.as_ref())),
        actions(ctx),
        Some(progress(ctx)),
        Some(next_step(ctx, want.as_ref())),
        sentiment(ctx),
    ];
    fit(&mut parts, MAX_CHARS);
    let [situation, actions, progress, next_step, sentiment] = parts;
    let text = [&situation, &actions, &progress, &next_step, &sentiment]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    Summary {
        text,
        situation,
        actions,
        progress,
        next_step,
        sentiment,
    }
}

/// Below this confidence the intent is reported as a guess.
const UNSURE: f32 = 0.5;
/// Most actions named one by one.
const ACTIONS_NAMED: usize = 3;
/// Most slots named beside the intent.
const SLOTS_NAMED: usize = 2;
/// Longest quoted caller phrase or free-text value, in characters.
const QUOTE_CHARS: usize = 40;
/// Shortest a part is cut to when the whole is too long.
const MIN_PART_CHARS: usize = 30;

/// What the caller wants, in words.
struct Want {
    /// A verb phrase ("block card") or a topic ("balance").
    phrase: String,
    verb_led: bool,
    /// The key slots, in words ("ending 4821").
    detail: Option<String>,
    sure: bool,
}

impl Want {
    fn new(code: &str, descriptions: &BTreeMap<String, String>, ctx: &Context) -> Want {
        let (phrase, verb_led) = match descriptions.get(code) {
            Some(d) => (clean(d, QUOTE_CHARS * 2), true),
            None => {
                let words = words_of(code);
                let verb_led = words.split(' ').next().is_some_and(|w| VERBS.contains(&w));
                (words, verb_led)
            }
        };
        let confidence = ctx.intent.confidence;
        Want {
            phrase,
            verb_led,
            detail: slots(ctx),
            sure: confidence == 0.0 || confidence >= UNSURE,
        }
    }

    /// "wants to block card (ending 4821)", "may be calling about balance".
    fn clause(&self) -> String {
        let lead = match (self.verb_led, self.sure) {
            (true, true) => "wants to",
            (true, false) => "may want to",
            (false, true) => "is calling about",
            (false, false) => "may be calling about",
        };
        match &self.detail {
            Some(d) => format!("{lead} {} ({d})", self.phrase),
            None => format!("{lead} {}", self.phrase),
        }
    }

    /// The intent as a task: "block card (ending 4821)", "deal with balance".
    fn task(&self) -> String {
        let task = if self.verb_led {
            self.phrase.clone()
        } else {
            format!("help with {}", self.phrase)
        };
        match &self.detail {
            Some(d) => format!("{task} ({d})"),
            None => task,
        }
    }
}

/// Who is calling, verified how, and what they want.
fn situation(ctx: &Context, want: Option<&Want>) -> String {
    let mut who = caller_name(ctx).unwrap_or_else(|| "Caller".to_string());
    if let Some(last) = ctx
        .caller
        .memory
        .as_ref()
        .and_then(|m| m.previous_calls.first())
    {
        let what = last
            .outcome
            .as_deref()
            .or(last.intent.as_deref())
            .map(words_of)
            .unwrap_or_else(|| clean(&last.summary, QUOTE_CHARS));
        who = if what.is_empty() {
            format!("{who} (returning)")
        } else {
            format!("{who} (returning; last call: {what})")
        };
    }
    let id = &ctx.identity;
    let verified = if id.verified {
        match id.method.as_deref() {
            Some("agent") => "verified by an agent".to_string(),
            Some(m) => format!("verified ({})", words_of(m)),
            None => "verified".to_string(),
        }
    } else if id.failed_attempts > 0 {
        format!(
            "not verified ({} failed attempt{})",
            id.failed_attempts,
            plural(id.failed_attempts as usize)
        )
    } else {
        "not yet verified".to_string()
    };
    let wants = match want {
        Some(w) => w.clause(),
        None => match ctx.bot.unmatched.last() {
            Some(said) => format!(
                "what they want is unclear (said \"{}\")",
                clean(said, QUOTE_CHARS)
            ),
            None => "what they want is not known yet".to_string(),
        },
    };
    format!("{who} {verified}; {wants}.")
}

/// What was done for the caller, latest last, by whom.
fn actions(ctx: &Context) -> Option<String> {
    if ctx.actions.is_empty() {
        return None;
    }
    let skipped = ctx.actions.len().saturating_sub(ACTIONS_NAMED);
    let named: Vec<String> = ctx.actions[skipped..]
        .iter()
        .map(|a| {
            let what = words_of(&a.name);
            let detail = scalar(&a.detail)
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            format!("{what}{detail} ({})", who_words(&a.by))
        })
        .collect();
    let earlier = if skipped > 0 {
        format!(" after {skipped} earlier action{}", plural(skipped))
    } else {
        String::new()
    };
    Some(format!("Done: {}{earlier}.", named.join(", ")))
}

/// What the bot tried, where it got stuck, and who runs the call now.
fn progress(ctx: &Context) -> String {
    let bot = &ctx.bot;
    let mut clause = match bot.attempts.last() {
        Some(last) => {
            let others = bot.attempts.len() - 1;
            let mut s = format!("Bot tried {}", attempt_words(last));
            if others > 0 {
                s.push_str(&format!(" after {others} other attempt{}", plural(others)));
            }
            s
        }
        None if ctx.transcript.is_empty() && bot.path.is_empty() && ctx.intent.name.is_none() => {
            "Nothing said yet".to_string()
        }
        None => "Bot has not attempted a resolution".to_string(),
    };
    if let Some(reason) = &bot.stuck {
        clause.push_str(&format!("; stuck: {}", clean(reason, QUOTE_CHARS)));
    }
    if bot.reprompts >= 2 {
        clause.push_str(&format!("; asked again {} times", bot.reprompts));
    }
    let running = &ctx.participants.running;
    if running != "bot" {
        clause.push_str(&format!("; {} is handling the call", who_words(running)));
    }
    format!("{clause}.")
}

/// The one thing to do next, by fixed priority, and promises left open by earlier calls.
fn next_step(ctx: &Context, want: Option<&Want>) -> String {
    let bot_running = ctx.participants.running == "bot";
    let task = want.map(Want::task);
    let handover = ctx
        .escalation
        .as_ref()
        .filter(|d| d.escalate && bot_running);
    let step = if let Some(decision) = handover {
        let who = match &decision.skill {
            Some(skill) => format!("a {} agent", clean(skill, 30)),
            None => "an agent".to_string(),
        };
        let why: Vec<&str> = decision
            .reasons
            .iter()
            .take(2)
            .map(|r| r.code.words())
            .collect();
        format!("{who} should take over ({})", why.join("; "))
    } else if ctx.bot.stuck.is_some() && bot_running {
        match &task {
            Some(t) => format!("an agent should take over and {t}"),
            None => "an agent should take over".to_string(),
        }
    } else if !ctx.identity.verified {
        "verify the caller's identity".to_string()
    } else if let Some(t) = task.filter(|_| ctx.actions.is_empty()) {
        t
    } else if want.is_none() {
        "find out what the caller needs".to_string()
    } else {
        "confirm the outcome with the caller".to_string()
    };
    let open: Vec<String> = ctx
        .caller
        .memory
        .iter()
        .flat_map(|m| &m.open_follow_ups)
        .take(2)
        .map(|f| clean(f, QUOTE_CHARS))
        .filter(|f| !f.is_empty())
        .collect();
    if open.is_empty() {
        format!("Next: {step}.")
    } else {
        format!("Next: {step}; still open from before: {}.", open.join(", "))
    }
}

fn sentiment(ctx: &Context) -> Option<String> {
    let label = clean(ctx.vibe.label.as_deref()?, 20);
    Some(match ctx.vibe.trend.as_deref().map(|t| clean(t, 20)) {
        Some(trend) if !trend.is_empty() => format!("Sentiment: {label}, {trend}."),
        _ => format!("Sentiment: {label}."),
    })
}

/// The caller's name from fetched customer data, if the data has one.
fn caller_name(ctx: &Context) -> Option<String> {
    let data = &ctx.customer_data;
    let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::trim);
    let name = match (text("name"), text("first_name"), text("last_name")) {
        (Some(n), _, _) if !n.is_empty() => n.to_string(),
        (_, Some(f), Some(l)) => format!("{f} {l}"),
        _ => return None,
    };
    let name = clean(&name, QUOTE_CHARS);
    (!name.is_empty()).then_some(name)
}

/// The key slots in words, digits first: "ending 4821, reason stolen".
fn slots(ctx: &Context) -> Option<String> {
    let is_digits = |name: &str| {
        ["last4", "last_four", "digits", "ending", "card_number"]
            .iter()
            .any(|k| name.contains(k))
    };
    let mut named: Vec<String> = Vec::new();
    let ordered = ctx
        .slots
        .iter()
        .filter(|(n, _)| is_digits(n))
        .chain(ctx.slots.iter().filter(|(n, _)| !is_digits(n)));
    for (name, value) in ordered {
        let Some(v) = scalar(value) else { continue };
        if is_digits(name) {
            // Only the last four of a card number belong on a screen.
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            let tail = &digits[digits.len().saturating_sub(4)..];
            if !tail.is_empty() {
                named.push(format!("ending {tail}"));
            }
        } else {
            named.push(format!("{} {v}", words_of(name)));
        }
        if named.len() == SLOTS_NAMED {
            break;
        }
    }
    (!named.is_empty()).then(|| named.join(", "))
}

/// A JSON value short enough to show, as text; objects and arrays are not.
fn scalar(value: &Value) -> Option<String> {
    let s = match value {
        Value::String(s) => clean(s, QUOTE_CHARS),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// "block_card: failed, CRM timeout" -> "block card (failed, CRM timeout)".
fn attempt_words(attempt: &str) -> String {
    match attempt.split_once(':') {
        Some((code, outcome)) if !outcome.trim().is_empty() => {
            format!("{} ({})", words_of(code), clean(outcome, QUOTE_CHARS))
        }
        _ => clean(&words_of(attempt), QUOTE_CHARS),
    }
}

/// "agent:17" -> "agent 17".
fn who_words(who: &str) -> String {
    match who.split_once(':') {
        Some((kind, id)) => clean(&format!("{kind} {id}"), QUOTE_CHARS),
        None => clean(who, QUOTE_CHARS),
    }
}

/// A snake_case code as words: "date_of_birth" -> "date of birth".
fn words_of(code: &str) -> String {
    clean(&code.replace(['_', '-'], " "), QUOTE_CHARS)
}

/// Free text made safe for one line: control characters and runs of space collapsed, cut to
/// `max` characters with an ellipsis.
fn clean(text: &str, max: usize) -> String {
    let one_line = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    clip(&one_line, max)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Shortens the longest parts until all, joined by spaces, fit in `max` characters.
fn fit(parts: &mut [Option<String>], max: usize) {
    let len = |parts: &[Option<String>]| -> usize {
        let present: Vec<usize> = parts.iter().flatten().map(|p| p.chars().count()).collect();
        present.iter().sum::<usize>() + present.len().saturating_sub(1)
    };
    while len(parts) > max {
        let excess = len(parts) - max;
        let Some(longest) = parts.iter_mut().flatten().max_by_key(|p| p.chars().count()) else {
            return;
        };
        let n = longest.chars().count();
        if n <= MIN_PART_CHARS {
            // Every part is as short as it may get; cut the whole instead.
            let mut text = parts
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            text = clip(&text, max);
            for p in parts.iter_mut() {
                *p = None;
            }
            parts[0] = Some(text);
            return;
        }
        let keep = n.saturating_sub(excess).max(MIN_PART_CHARS);
        // The ellipsis ends the cut sentence.
        *longest = clip(longest.trim_end_matches('.'), keep);
    }
}

/// Verbs an intent code can start with, so "block_card" reads "wants to block card" and
/// "balance" reads "is calling about balance".
const VERBS: &[&str] = &[
    "activate", "add", "apply", "block", "book", "cancel", "change", "check", "close", "confirm",
    "dispute", "find", "freeze", "get", "increase", "make", "open", "order", "pay", "reduce",
    "remove", "renew", "replace", "report", "request", "reset", "send", "set", "speak", "stop",
    "talk", "transfer", "unblock", "update", "verify",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::document::{
        Action, CustomerMemory, PreviousCall, TranscriptLine, VibeState,
    };
    use serde_json::json;

    fn line(text: &str) -> TranscriptLine {
        TranscriptLine {
            speaker: "caller".into(),
            text: text.into(),
            is_final: true,
            utterance: 1,
            ..Default::default()
        }
    }

    /// The bank example: verified, wants the stolen card blocked, nothing tried yet.
    fn stolen_card() -> Context {
        let mut ctx = Context::default();
        ctx.identity.verified = true;
        ctx.identity.method = Some("date_of_birth".into());
        ctx.intent.name = Some("block_card".into());
        ctx.intent.confidence = 0.86;
        ctx.slots.insert("card_last4".into(), json!("4821"));
        ctx.slots.insert("reason".into(), json!("stolen"));
        ctx.transcript.push(line("my credit card was stolen"));
        ctx.vibe = VibeState {
            label: Some("anxious".into()),
            trend: Some("deteriorating".into()),
            ..Default::default()
        };
        ctx
    }

    fn sentences(text: &str) -> usize {
        text.matches(". ").count() + usize::from(text.ends_with('.'))
    }

    #[test]
    fn a_fresh_call_says_nothing_is_known_yet() {
        let s = summarize(&Context::default());
        assert_eq!(
            s.text,
            "Caller not yet verified; what they want is not known yet. Nothing said yet. \
             Next: verify the caller's identity."
        );
        assert_eq!(s.actions, None);
        assert_eq!(s.sentiment, None);
    }

    #[test]
    fn a_verified_caller_with_an_intent_and_a_slot() {
        let s = summarize(&stolen_card());
        assert_eq!(
            s.text,
            "Caller verified (date of birth); wants to block card (ending 4821, reason \
             stolen). Bot has not attempted a resolution. Next: block card (ending 4821, \
             reason stolen). Sentiment: anxious, deteriorating."
        );
        assert_eq!(
            s.situation.as_deref(),
            Some("Caller verified (date of birth); wants to block card (ending 4821, reason stolen).")
        );
    }

    #[test]
    fn a_description_replaces_the_code_and_a_full_card_number_shows_its_last_four() {
        let mut ctx = stolen_card();
        ctx.slots.clear();
        ctx.slots
            .insert("card_number".into(), json!("4111 1111 1111 4821"));
        let descriptions = BTreeMap::from([(
            "block_card".to_string(),
            "block a lost or stolen card".to_string(),
        )]);
        let s = summarize_with(&ctx, &descriptions);
        let situation = s.situation.unwrap();
        assert!(
            situation.contains("wants to block a lost or stolen card (ending 4821)"),
            "{situation}"
        );
        assert!(!s.text.contains("4111"), "{}", s.text);
    }

    #[test]
    fn actions_taken_by_an_agent_are_named_with_who_did_them() {
        let mut ctx = stolen_card();
        ctx.participants.running = "agent:17".into();
        ctx.participants.agents.push("agent:17".into());
        ctx.actions.push(Action {
            name: "card_blocked".into(),
            detail: json!("4821"),
            by: "agent:17".into(),
            at_ms: 1,
        });
        ctx.actions.push(Action {
            name: "sms_sent".into(),
            detail: json!({"to": "+447700900000"}),
            by: "bot".into(),
            at_ms: 2,
        });
        let s = summarize(&ctx);
        assert_eq!(
            s.actions.as_deref(),
            Some("Done: card blocked 4821 (agent 17), sms sent (bot).")
        );
        assert!(s
            .progress
            .unwrap()
            .contains("agent 17 is handling the call"));
        assert_eq!(
            s.next_step.as_deref(),
            Some("Next: confirm the outcome with the caller.")
        );
    }

    #[test]
    fn an_escalation_names_the_skill_and_why() {
        use crate::escalation::{Code, Decision, Reason, Urgency};
        let mut ctx = stolen_card();
        ctx.participants.running = "bot".into();
        let reason = |code| Reason {
            code,
            score: 1.0,
            evidence: Vec::new(),
        };
        ctx.escalation = Some(Decision {
            escalate: true,
            urgency: Urgency::Immediate,
            score: 0.7,
            reasons: vec![reason(Code::PolicyIntent), reason(Code::Sentiment)],
            skill: Some("fraud".into()),
            at_ms: 9_000,
        });
        assert_eq!(
            summarize(&ctx).next_step.as_deref(),
            Some(
                "Next: a fraud agent should take over (policy for this request; the caller \
                 is upset)."
            )
        );
    }

    #[test]
    fn a_stuck_bot_says_what_it_tried_and_hands_over() {
        let mut ctx = stolen_card();
        ctx.bot
            .attempts
            .push("verify_card: failed, digits did not match".into());
        ctx.bot
            .attempts
            .push("block_card: failed, CRM timeout".into());
        ctx.bot.stuck = Some("card system unavailable".into());
        ctx.bot.reprompts = 3;
        let s = summarize(&ctx);
        assert_eq!(
            s.progress.as_deref(),
            Some(
                "Bot tried block card (failed, CRM timeout) after 1 other attempt; stuck: card \
                 system unavailable; asked again 3 times."
            )
        );
        assert!(s
            .next_step
            .unwrap()
            .starts_with("Next: an agent should take over and block card"));
    }

    #[test]
    fn a_returning_caller_brings_the_last_call_and_open_promises() {
        let mut ctx = Context::default();
        ctx.customer_data.insert("name".into(), json!("Jane Doe"));
        ctx.caller.memory = Some(CustomerMemory {
            customer_id: Some("C-1001".into()),
            previous_calls: vec![PreviousCall {
                call_id: "c1".into(),
                intent: Some("dispute_transaction".into()),
                outcome: Some("dispute form sent".into()),
                summary: "Disputed a payment.".into(),
                ..Default::default()
            }],
            open_follow_ups: vec!["callback in 48 h".into()],
        });
        ctx.identity.failed_attempts = 1;
        ctx.intent.name = Some("balance".into());
        ctx.intent.confidence = 0.42;
        let s = summarize(&ctx);
        assert_eq!(
            s.situation.as_deref(),
            Some(
                "Jane Doe (returning; last call: dispute form sent) not verified (1 failed \
                 attempt); may be calling about balance."
            )
        );
        assert_eq!(
            s.next_step.as_deref(),
            Some("Next: verify the caller's identity; still open from before: callback in 48 h.")
        );
    }

    #[test]
    fn an_unmatched_phrase_is_quoted_when_the_intent_is_unknown() {
        let mut ctx = Context::default();
        ctx.identity.verified = true;
        ctx.transcript.push(line("the thing with the other thing"));
        ctx.bot
            .unmatched
            .push("the thing with the other thing".into());
        let s = summarize(&ctx);
        assert!(
            s.text
                .contains("unclear (said \"the thing with the other thing\")"),
            "{}",
            s.text
        );
        assert!(
            s.text.contains("Next: find out what the caller needs."),
            "{}",
            s.text
        );
    }

    #[test]
    fn the_summary_stays_short_whatever_the_context_holds() {
        let mut ctx = stolen_card();
        let long = "x".repeat(5000);
        let words = "very long words ".repeat(300);
        ctx.customer_data.insert("name".into(), json!(words));
        ctx.intent.name = Some(long.clone());
        ctx.slots.insert("card_last4".into(), json!(long));
        ctx.bot.unmatched.push(words.clone());
        ctx.bot.attempts = vec![words.clone(); 50];
        ctx.bot.stuck = Some(format!("line\nbreak\t{words}"));
        ctx.participants.running = format!("agent:{words}");
        for i in 0..100 {
            ctx.actions.push(Action {
                name: format!("action_{i}_{words}"),
                detail: json!(words),
                by: "agent:17".into(),
                at_ms: i,
            });
        }
        ctx.vibe.label = Some(words.clone());
        ctx.vibe.trend = Some(words);
        let s = summarize(&ctx);
        assert!(
            s.text.chars().count() <= MAX_CHARS,
            "{} chars",
            s.text.chars().count()
        );
        assert!(sentences(&s.text) <= 5, "{}", s.text);
        assert!(!s.text.contains('\n') && !s.text.contains('\t'));
    }

    #[test]
    fn the_same_context_gives_the_same_words() {
        let ctx = stolen_card();
        assert_eq!(summarize(&ctx), summarize(&ctx.clone()));
    }

    #[test]
    fn an_old_summary_without_parts_still_reads() {
        let s: Summary = serde_json::from_value(json!({"text": "hello"})).unwrap();
        assert_eq!(s.text, "hello");
        assert_eq!(s.situation, None);
        let back = serde_json::to_value(summarize(&stolen_card())).unwrap();
        assert!(back["text"].is_string() && back["next_step"].is_string());
    }
}
