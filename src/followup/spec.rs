//! A dialplan's `[followup.NAME]` tables: the messages a call may promise, as templates
//! filled from the call's context when the follow-up is asked for.

use crate::context::Context;
use crate::dialog::engine::{url_encoded, walk};
use crate::dialog::plan::{template_parts, Part};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Longest text of an SMS or WhatsApp message, in characters: ten concatenated SMS.
const MAX_MESSAGE: usize = 1_600;
/// Longest e-mail body, in characters.
const MAX_EMAIL: usize = 10_000;
/// Longest subject, recipient and link, in characters.
const MAX_LINE: usize = 500;
/// Longest delay before a follow-up goes out.
const MAX_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// How a follow-up reaches the caller; the connector is told which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Whatsapp,
    Email,
}

/// One checked `[followup.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpSpec {
    pub channel: Channel,
    /// Template of the recipient: a number for SMS and WhatsApp (the caller's unless
    /// given), an address for e-mail.
    pub to: String,
    /// Template of the message.
    pub text: String,
    /// Template of an e-mail's subject.
    pub subject: Option<String>,
    /// Template of a WhatsApp message's link (a pre-filled form): every value filled in is
    /// percent-encoded, so it stays one path segment or query value.
    pub link: Option<String>,
    /// The `[connector.NAME]` of baton's config it goes out through.
    pub connector: String,
    /// How long after it is asked for it goes out.
    pub after: Duration,
}

/// `[followup.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFollowUp {
    channel: Channel,
    to: Option<String>,
    text: String,
    subject: Option<String>,
    link: Option<String>,
    connector: Option<String>,
    after: Option<String>,
}

/// What a follow-up says once filled from a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    pub link: Option<String>,
}

/// The values of the call a template may name beside `slot.NAME` and `customer.PATH`.
const CALL_VALUES: [&str; 4] = ["id", "caller", "customer_id", "intent"];

impl FollowUpSpec {
    /// Checks a table as written; each problem with the key it is at.
    pub(crate) fn check(raw: RawFollowUp) -> Result<FollowUpSpec, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let template = |errors: &mut Vec<_>, key: &'static str, text: &str, max: usize| {
            let problem = if text.trim().is_empty() {
                Err("is empty".to_owned())
            } else if text.chars().count() > max {
                Err(format!("longer than {max} characters"))
            } else {
                check_template(text)
            };
            if let Err(e) = problem {
                errors.push((key, e));
            }
        };
        let max_text = match raw.channel {
            Channel::Email => MAX_EMAIL,
            Channel::Sms | Channel::Whatsapp => MAX_MESSAGE,
        };
        template(&mut errors, "text", &raw.text, max_text);
        let to = match (&raw.to, raw.channel) {
            (Some(to), _) => to.clone(),
            (None, Channel::Sms | Channel::Whatsapp) => "{call.caller}".to_owned(),
            (None, Channel::Email) => {
                errors.push(("to", "is missing: an e-mail needs an address".to_owned()));
                String::new()
            }
        };
        if raw.to.is_some() {
            template(&mut errors, "to", &to, MAX_LINE);
        }
        match (&raw.subject, raw.channel) {
            (Some(subject), Channel::Email) => template(&mut errors, "subject", subject, MAX_LINE),
            (None, Channel::Email) => {
                errors.push(("subject", "is missing: an e-mail needs one".to_owned()));
            }
            (Some(_), _) => errors.push(("subject", "is only for e-mail".to_owned())),
            (None, _) => {}
        }
        match (&raw.link, raw.channel) {
            (Some(link), Channel::Whatsapp) => {
                template(&mut errors, "link", link, MAX_LINE);
                if !(link.starts_with("https://") || link.starts_with("http://")) {
                    errors.push(("link", "expected an https:// or http:// URL".to_owned()));
                }
            }
            (Some(_), _) => errors.push(("link", "is only for WhatsApp".to_owned())),
            (None, _) => {}
        }
        let connector = raw.connector.unwrap_or_else(|| "default".to_owned());
        if !is_code(&connector) {
            errors.push((
                "connector",
                "expected the name of a [connector.NAME] (letters, digits, _ and -)".to_owned(),
            ));
        }
        let after = match raw.after.as_deref().map(humantime::parse_duration) {
            None => Duration::ZERO,
            Some(Ok(after)) if after <= MAX_AFTER => after,
            Some(Ok(_)) => {
                errors.push(("after", "at most 30 days".to_owned()));
                Duration::ZERO
            }
            Some(Err(e)) => {
                errors.push(("after", format!("expected a duration such as \"2h\": {e}")));
                Duration::ZERO
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FollowUpSpec {
            channel: raw.channel,
            to,
            text: raw.text,
            subject: raw.subject,
            link: raw.link,
            connector,
            after,
        })
    }

    /// The follow-up filled from `doc`; the error names a value the context lacks, since a
    /// message with a hole in it must not go out.
    pub fn fill(&self, doc: &Context) -> Result<Filled, String> {
        let text = |template: &str| render(template, doc, |s| s.to_owned());
        Ok(Filled {
            to: text(&self.to)?,
            text: text(&self.text)?,
            subject: self.subject.as_deref().map(text).transpose()?,
            link: self
                .link
                .as_deref()
                .map(|link| render(link, doc, url_encoded))
                .transpose()?,
        })
    }
}

/// Letters, digits, `_` and `-`, 1 to 64 of them: the names of follow-ups and connectors.
pub(crate) fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks that every `{...}` names `slot.NAME`, `customer.PATH` or one of the call's values.
fn check_template(text: &str) -> Result<(), String> {
    for part in template_parts(text)? {
        let Part::Value(path) = part else { continue };
        let ok = match path.split_once('.') {
            Some(("slot" | "customer", rest)) => !rest.is_empty(),
            Some(("call", name)) => CALL_VALUES.contains(&name),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "\"{{{path}}}\" is not a value of the call: write {{slot.NAME}}, \
                 {{customer.FIELD}} or one of {}",
                CALL_VALUES.map(|v| format!("{{call.{v}}}")).join(", ")
            ));
        }
    }
    Ok(())
}

/// Fills a template from the context, each value passed through `each`.
fn render(template: &str, doc: &Context, each: impl Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::new();
    for part in template_parts(template)? {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Value(path) => {
                let text = value(doc, path)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("the call has no value for {{{path}}}"))?;
                out.push_str(&each(&text));
            }
        }
    }
    Ok(out)
}

/// A value of the context as text: `slot.NAME...`, `customer.PATH` in the customer data,
/// or `call.NAME`.
fn value(doc: &Context, path: &str) -> Option<String> {
    let mut keys = path.split('.');
    let found = match keys.next()? {
        "slot" => walk(doc.slots.get(keys.next()?)?, keys)?,
        "customer" => walk(doc.customer_data.get(keys.next()?)?, keys)?,
        "call" => {
            return match keys.next()? {
                "id" => Some(doc.call_id.clone()),
                "caller" => doc.caller.number.clone(),
                "customer_id" => doc.identity.customer_id.clone(),
                "intent" => doc.intent.name.clone(),
                _ => None,
            }
        }
        _ => return None,
    };
    match found {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(toml: &str) -> Result<FollowUpSpec, Vec<String>> {
        let raw: RawFollowUp = toml::from_str(toml).map_err(|e| vec![e.to_string()])?;
        FollowUpSpec::check(raw).map_err(|errors| {
            errors
                .into_iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect()
        })
    }

    fn doc() -> Context {
        let mut doc = Context {
            call_id: "c-1".into(),
            ..Context::default()
        };
        doc.caller.number = Some("+4915112345678".into());
        doc.slots.insert("card".into(), json!("4821"));
        doc.customer_data.insert(
            "profile".into(),
            json!({"email": "ada@example.com", "tier": 2}),
        );
        doc
    }

    #[test]
    fn an_sms_goes_to_the_caller_with_its_values_filled_in() {
        let s = spec("channel = \"sms\"\ntext = \"Card {slot.card} is blocked.\"").unwrap();
        assert_eq!(s.connector, "default");
        let filled = s.fill(&doc()).unwrap();
        assert_eq!(filled.to, "+4915112345678");
        assert_eq!(filled.text, "Card 4821 is blocked.");
    }

    #[test]
    fn a_whatsapp_link_keeps_each_value_one_query_value() {
        let s = spec(
            "channel = \"whatsapp\"\ntext = \"Your form\"\n\
             link = \"https://forms.example/new-card?call={call.id}&to={customer.profile.email}\"",
        )
        .unwrap();
        let link = s.fill(&doc()).unwrap().link.unwrap();
        assert_eq!(
            link,
            "https://forms.example/new-card?call=c-1&to=ada%40example.com"
        );
    }

    #[test]
    fn a_missing_value_is_named_rather_than_sent_blank() {
        let s = spec("channel = \"sms\"\ntext = \"Hello {customer.name}\"").unwrap();
        assert_eq!(
            s.fill(&doc()).unwrap_err(),
            "the call has no value for {customer.name}"
        );
    }

    #[test]
    fn every_problem_is_named_at_its_key() {
        let errors = spec(
            "channel = \"email\"\ntext = \"{caller}\"\nlink = \"ftp://x\"\n\
             connector = \"a b\"\nafter = \"soon\"",
        )
        .unwrap_err()
        .join("\n");
        for expected in [
            "text: \"{caller}\" is not a value of the call",
            "to: is missing",
            "subject: is missing",
            "link: is only for WhatsApp",
            "connector: expected the name",
            "after: expected a duration",
        ] {
            assert!(
                errors.contains(expected),
                "missing {expected:?} in:\n{errors}"
            );
        }
        let unknown = spec("channel = \"fax\"\ntext = \"x\"")
            .unwrap_err()
            .join("");
        assert!(unknown.contains("unknown variant `fax`"), "{unknown}");
    }
}
