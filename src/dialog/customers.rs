//! The customer data the built-in bot verifies callers against and reads from: a JSON file
//! beside the dialplans (`{"customers": [...]}`), loaded once at startup. Each record needs
//! an `id` and a `name`; `phones`, `date_of_birth` (`YYYY-MM-DD`) and `cards` (each with
//! `last4`) make verification possible; every other field is the bot's to read
//! (`{customer.accounts.0.balance}`) once the caller is verified.

use super::entities::{calendar_date, Date};
use serde_json::Value;
use std::path::Path;

/// Most customers one file may hold: the file is read whole into memory.
const MAX_CUSTOMERS: usize = 100_000;
/// Largest customer file, in bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One customer, with the fields verification uses pulled out of the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// Numbers the customer calls from, digits and `+` only.
    pub phones: Vec<String>,
    pub date_of_birth: Option<Date>,
    /// The last four digits of each of the customer's cards.
    pub card_last4: Vec<String>,
    /// The whole record, as the file has it.
    pub record: Value,
}

/// Every customer of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Customers {
    list: Vec<Customer>,
}

impl Customers {
    /// Reads and checks a customer file; the error names the record and field at fault.
    pub fn load(path: &Path) -> Result<Customers, String> {
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if size > MAX_FILE_BYTES {
            return Err(format!("{size} bytes; at most {MAX_FILE_BYTES}"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Customers::parse(&text)
    }

    /// Parses the text of a customer file.
    pub fn parse(text: &str) -> Result<Customers, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let records = doc
            .get("customers")
            .and_then(Value::as_array)
            .ok_or("expected {\"customers\": [ ... ]}")?;
        if records.len() > MAX_CUSTOMERS {
            return Err(format!(
                "{} customers; at most {MAX_CUSTOMERS}",
                records.len()
            ));
        }
        let list = records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                Customer::from_record(record).map_err(|e| format!("customers[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Customers { list })
    }

    /// The customer who calls from this number, if the number is on file.
    pub fn by_phone(&self, number: &str) -> Option<&Customer> {
        let number = phone_digits(number);
        if number.len() < 3 {
            return None;
        }
        self.list
            .iter()
            .find(|c| c.phones.iter().any(|p| same_number(p, &number)))
    }

    /// Every customer, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Customer> {
        self.list.iter()
    }

    /// The customer with this id.
    pub fn get(&self, id: &str) -> Option<&Customer> {
        self.list.iter().find(|c| c.id == id)
    }
}

impl Customer {
    fn from_record(record: &Value) -> Result<Customer, String> {
        let text = |field: &str| -> Result<Option<String>, String> {
            match record.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{field}: expected a string")),
            }
        };
        let id = text("id")?.filter(|s| !s.is_empty()).ok_or("id: missing")?;
        let name = text("name")?
            .filter(|s| !s.is_empty())
            .ok_or("name: missing")?;
        let phones = match record.get("phones") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(phone_digits)
                        .ok_or("phones: expected strings")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("phones: expected a list of numbers".into()),
        };
        let date_of_birth = match text("date_of_birth")? {
            None => None,
            Some(s) => Some(parse_iso_date(&s).ok_or("date_of_birth: expected YYYY-MM-DD")?),
        };
        let card_last4 = match record.get("cards") {
            None => Vec::new(),
            Some(Value::Array(cards)) => cards
                .iter()
                .map(|card| {
                    card.get("last4")
                        .and_then(Value::as_str)
                        .filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()))
                        .map(str::to_owned)
                        .ok_or("cards: each needs last4, four digits")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("cards: expected a list".into()),
        };
        Ok(Customer {
            id,
            name,
            phones,
            date_of_birth,
            card_last4,
            record: record.clone(),
        })
    }
}

/// A number as compared: its digits, with a leading `+` kept.
fn phone_digits(s: &str) -> String {
    let plus = s.trim_start().starts_with('+');
    let digits = s.chars().filter(char::is_ascii_digit);
    if plus {
        std::iter::once('+').chain(digits).collect()
    } else {
        digits.collect()
    }
}

/// Whether two numbers are the same line: equal, or one the national form of the other
/// (`+447700900123` and `07700900123` share their last nine digits).
fn same_number(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let tail = |s: &str| -> String {
        let d: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
        d[d.len().saturating_sub(9)..].iter().collect()
    };
    a.len() >= 9 && b.len() >= 9 && tail(a) == tail(b)
}

/// `YYYY-MM-DD`, checked for a real calendar day.
fn parse_iso_date(s: &str) -> Option<Date> {
    let mut parts = s.trim().splitn(3, '-');
    let year: u16 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    birth_date(year, month, day)
}

/// A date of birth: a calendar day in a year a living customer can have been born in.
pub(crate) fn birth_date(year: u16, month: u8, day: u8) -> Option<Date> {
    (1850..=2200)
        .contains(&year)
        .then(|| calendar_date(year, month, day))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"customers": [
        {"id": "C1", "name": "Alice Johnson", "phones": ["+44 7700 900123"],
         "date_of_birth": "1980-03-05", "cards": [{"last4": "4821"}],
         "accounts": [{"name": "current account", "balance": 412.5}]},
        {"id": "C2", "name": "Bob Stone"}
    ]}"#;

    #[test]
    fn customers_are_found_by_their_numbers() {
        let c = Customers::parse(FILE).unwrap();
        assert_eq!(c.by_phone("+447700900123").unwrap().id, "C1");
        assert_eq!(c.by_phone("07700900123").unwrap().id, "C1");
        assert!(c.by_phone("+447700900999").is_none());
        assert!(c.by_phone("").is_none());
        let alice = c.get("C1").unwrap();
        assert_eq!(
            alice.date_of_birth,
            Some(Date {
                year: 1980,
                month: 3,
                day: 5
            })
        );
        assert_eq!(alice.card_last4, ["4821"]);
        assert_eq!(alice.record["accounts"][0]["balance"], 412.5);
        assert!(c.get("C2").unwrap().phones.is_empty());
    }

    #[test]
    fn a_bad_file_says_which_record_and_field() {
        for (text, expected) in [
            ("[]", "expected {\"customers\""),
            ("{", "not JSON"),
            (
                r#"{"customers": [{"name": "A"}]}"#,
                "customers[0]: id: missing",
            ),
            (
                r#"{"customers": [{"id": "1", "name": "A", "date_of_birth": "1980-02-30"}]}"#,
                "customers[0]: date_of_birth",
            ),
            (
                r#"{"customers": [{"id": "1", "name": "A", "cards": [{"last4": "12"}]}]}"#,
                "customers[0]: cards",
            ),
        ] {
            let e = Customers::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
