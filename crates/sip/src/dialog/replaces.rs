//! The `Replaces` header (RFC 3891): the dialog an INVITE asks to take the place of. In an
//! attended transfer it reaches the transferee inside the REFER's `Refer-To` URI, and the
//! transferee sends it on, as it is, in the INVITE to the transfer target.

use crate::parse::is_token_byte;
use std::fmt;
use std::str::FromStr;

/// `Replaces: call-id;to-tag=…;from-tag=…[;early-only]`. The tags are seen from the
/// target: `to-tag` is its own tag of the dialog, `from-tag` its peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// Replace the dialog only while it is early (call pickup); an attended transfer
    /// replaces a confirmed one.
    pub early_only: bool,
}

/// Why a `Replaces` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplacesError {
    #[error("the Call-ID {0:?} is not a SIP Call-ID")]
    CallId(String),
    #[error("no {0} parameter")]
    Missing(&'static str),
    #[error("the {0} parameter appears twice")]
    Repeated(&'static str),
    #[error("the {name} value {value:?} is not a token")]
    NotToken { name: &'static str, value: String },
}

/// RFC 3261 `word`: what a Call-ID is made of, on either side of its `@`.
fn is_word_byte(b: u8) -> bool {
    is_token_byte(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

fn is_call_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    parts.all(|w| !w.is_empty() && w.bytes().all(is_word_byte))
}

impl FromStr for Replaces {
    type Err = ReplacesError;

    /// Parses a header value, whitespace around its parts allowed; parameters other than
    /// the three RFC 3891 defines are ignored, as `generic-param` allows.
    fn from_str(s: &str) -> Result<Replaces, ReplacesError> {
        let mut parts = s.split(';');
        let call_id = parts.next().unwrap_or_default().trim();
        if !is_call_id(call_id) {
            return Err(ReplacesError::CallId(call_id.to_owned()));
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for part in parts {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part.trim(), None),
            };
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                (&mut to_tag, "to-tag")
            } else if name.eq_ignore_ascii_case("from-tag") {
                (&mut from_tag, "from-tag")
            } else {
                early_only |= name.eq_ignore_ascii_case("early-only");
                continue;
            };
            let (tag, name) = slot;
            let value = value.unwrap_or_default();
            if value.is_empty() || !value.bytes().all(is_token_byte) {
                return Err(ReplacesError::NotToken {
                    name,
                    value: value.to_owned(),
                });
            }
            if tag.replace(value.to_owned()).is_some() {
                return Err(ReplacesError::Repeated(name));
            }
        }
        Ok(Replaces {
            call_id: call_id.to_owned(),
            to_tag: to_tag.ok_or(ReplacesError::Missing("to-tag"))?,
            from_tag: from_tag.ok_or(ReplacesError::Missing("from-tag"))?,
            early_only,
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_3891_example_and_writes_it_back() {
        let text = "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only";
        let r: Replaces = text.parse().expect("valid");
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(r.to_tag, "ff87ff");
        assert_eq!(r.from_tag, "r33th4x0r");
        assert!(r.early_only);
        assert_eq!(
            r.to_string(),
            "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r;early-only"
        );
        let spaced: Replaces = " 425928@bobster.example.org ; To-Tag=7743 ; from-tag=6472 ; x=1"
            .parse()
            .expect("valid");
        assert_eq!(
            spaced.to_string(),
            "425928@bobster.example.org;to-tag=7743;from-tag=6472"
        );
    }

    #[test]
    fn refuses_what_would_not_name_one_dialog_or_could_break_the_header() {
        let cases = [
            ("", ReplacesError::CallId(String::new())),
            (
                "a b;to-tag=1;from-tag=2",
                ReplacesError::CallId("a b".into()),
            ),
            ("a@;to-tag=1;from-tag=2", ReplacesError::CallId("a@".into())),
            ("abc;from-tag=2", ReplacesError::Missing("to-tag")),
            ("abc;to-tag=1", ReplacesError::Missing("from-tag")),
            (
                "abc;to-tag=1;to-tag=3;from-tag=2",
                ReplacesError::Repeated("to-tag"),
            ),
            (
                "abc;to-tag=1\r\nVia: x;from-tag=2",
                ReplacesError::NotToken {
                    name: "to-tag",
                    value: "1\r\nVia: x".into(),
                },
            ),
            (
                "abc;to-tag;from-tag=2",
                ReplacesError::NotToken {
                    name: "to-tag",
                    value: String::new(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Replaces>(), Err(want), "{text:?}");
        }
    }
}
