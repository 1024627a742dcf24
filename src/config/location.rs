//! Where in a TOML file something is wrong: file, line, column and the key, so that config
//! and dialplan errors point an operator at the exact spot (`bank.toml:7:1: step 2 key "play"`).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, TableLike, Value};

/// One step of the way from the top of a TOML document to a key: a key name or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key inside a table.
    Key(String),
    /// A zero-based position inside an array or an array of tables.
    Index(usize),
}

/// The path to a key, rendered for people: `key "sip"`, `step 2 key "record.max_secs"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// A path made of plain key names, e.g. `["invite_rate_limit", "burst"]`.
    pub fn keys(names: &[&str]) -> Self {
        KeyPath(
            names
                .iter()
                .map(|n| Segment::Key((*n).to_owned()))
                .collect(),
        )
    }

    /// This path followed by a key.
    pub fn key(mut self, name: &str) -> Self {
        self.0.push(Segment::Key(name.to_owned()));
        self
    }

    /// This path followed by an array index (zero-based).
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key followed by an index reads as "step 2"; runs of keys read as `key "a.b"`.
        let mut parts: Vec<String> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        let mut segments = self.0.iter().peekable();
        while let Some(segment) = segments.next() {
            match segment {
                Segment::Key(name) => {
                    if let Some(Segment::Index(i)) = segments.peek() {
                        if keys.is_empty() {
                            parts.push(format!("{name} {}", i + 1));
                        } else {
                            keys.push(name);
                            parts.push(format!("key \"{}\" item {}", keys.join("."), i + 1));
                            keys.clear();
                        }
                        segments.next();
                    } else {
                        keys.push(name);
                    }
                }
                Segment::Index(i) => {
                    if !keys.is_empty() {
                        parts.push(format!("key \"{}\"", keys.join(".")));
                        keys.clear();
                    }
                    parts.push(format!("item {}", i + 1));
                }
            }
        }
        if !keys.is_empty() {
            parts.push(format!("key \"{}\"", keys.join(".")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A spot in a TOML file: 1-based line and column (in characters) and, when known, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the operator named it (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The key at that spot; empty when the spot is not inside a key (e.g. a syntax error).
    pub key: KeyPath,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if !self.key.0.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        Ok(())
    }
}

/// A parsed TOML file that keeps its text and spans, to turn byte offsets and key paths
/// into [`Location`]s.
pub(crate) struct SourceFile<'a> {
    file: &'a Path,
    text: &'a str,
    doc: ImDocument<&'a str>,
}

impl<'a> SourceFile<'a> {
    /// Parses `text`; a syntax error comes back already located (with a best-effort key).
    pub(crate) fn parse(file: &'a Path, text: &'a str) -> Result<Self, (Location, String)> {
        match ImDocument::parse(text) {
            Ok(doc) => Ok(SourceFile { file, text, doc }),
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = key_near_syntax_error(text, offset);
                let at = locate(file, text, offset, key);
                Err((at, one_line(e.message())))
            }
        }
    }

    /// The top-level table of the document.
    pub(crate) fn root(&self) -> &toml_edit::Table {
        self.doc.as_table()
    }

    /// The location of a byte offset, naming the innermost key whose key or value holds it.
    pub(crate) fn at_offset(&self, offset: usize) -> Location {
        let mut path = Vec::new();
        find_in_table(self.root(), offset, &mut path);
        locate(self.file, self.text, offset, KeyPath(path))
    }

    /// The location of the key at `path` (its first character); falls back to the nearest
    /// enclosing key that exists, then to the top of the file.
    pub(crate) fn at_key(&self, path: &KeyPath) -> Location {
        let offset = (0..=path.0.len())
            .rev()
            .find_map(|n| key_span(self.root(), &path.0[..n]))
            .map_or(0, |s| s.start);
        locate(self.file, self.text, offset, path.clone())
    }

    /// The location of a deserialization error, with serde's wording turned into the
    /// operator's ("unknown field" becomes "unknown key").
    pub(crate) fn at_error(&self, error: &toml_edit::de::Error) -> (Location, String) {
        let at = self.at_offset(error.span().map_or(0, |s| s.start));
        let message = one_line(error.message()).replacen("unknown field", "unknown key", 1);
        (at, message)
    }
}

/// Turns a multi-line parser message into one line for `file:line:col: message` output.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn locate(file: &Path, text: &str, offset: usize, key: KeyPath) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Location {
        file: file.to_owned(),
        line,
        column,
        key,
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

fn find_in_table(table: &dyn TableLike, offset: usize, path: &mut Vec<Segment>) -> bool {
    for (name, item) in table.iter() {
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        path.push(Segment::Key(name.to_owned()));
        if contains(key_span, offset) || find_in_item(item, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_item(item: &Item, offset: usize, path: &mut Vec<Segment>) -> bool {
    match item {
        Item::None => false,
        Item::Value(value) => find_in_value(value, offset, path),
        // A `[table]` header's span may not cover its body, so always look inside.
        Item::Table(table) => find_in_table(table, offset, path) || contains(table.span(), offset),
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                path.push(Segment::Index(i));
                if find_in_table(table, offset, path) || contains(table.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
    }
}

fn find_in_value(value: &Value, offset: usize, path: &mut Vec<Segment>) -> bool {
    if !contains(value.span(), offset) {
        return false;
    }
    match value {
        Value::InlineTable(table) => {
            find_in_table(table, offset, path);
        }
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                path.push(Segment::Index(i));
                if find_in_value(element, offset, path) {
                    break;
                }
                path.pop();
            }
        }
        _ => {}
    }
    true
}

/// The span of the key (or array element) at `path`, if the document has it.
fn key_span(root: &toml_edit::Table, path: &[Segment]) -> Option<Range<usize>> {
    span_in_table(root, path, None)
}

fn span_in_table(
    table: &dyn TableLike,
    path: &[Segment],
    here: Option<Range<usize>>,
) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return here;
    };
    let Segment::Key(name) = first else {
        return None;
    };
    let (key, item) = table.get_key_value(name)?;
    span_in_item(item, rest, key.span())
}

fn span_in_item(item: &Item, path: &[Segment], here: Option<Range<usize>>) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return here;
    };
    match (first, item) {
        (Segment::Key(_), _) => span_in_table(item.as_table_like()?, path, here),
        (Segment::Index(i), Item::ArrayOfTables(tables)) => {
            let table = tables.get(*i)?;
            span_in_table(table, rest, table.span())
        }
        (Segment::Index(_), Item::Value(value)) => span_in_value(value, path, here),
        _ => None,
    }
}

fn span_in_value(
    value: &Value,
    path: &[Segment],
    here: Option<Range<usize>>,
) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return here;
    };
    match (first, value) {
        (Segment::Key(_), Value::InlineTable(table)) => span_in_table(table, path, here),
        (Segment::Index(i), Value::Array(array)) => {
            let element = array.get(*i)?;
            span_in_value(element, rest, element.span())
        }
        _ => None,
    }
}

/// Best-effort key for a syntax error, read from the `[table]` headers above it and the
/// `key =` on its line: the document did not parse, so there are no spans to walk.
fn key_near_syntax_error(text: &str, offset: usize) -> KeyPath {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut table: Vec<Segment> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in text.get(..line_start).unwrap_or_default().lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let count = seen.entry(name.trim().to_owned()).or_default();
            table = dotted(name);
            table.push(Segment::Index(*count));
            *count += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = dotted(name);
        }
    }
    let current = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default();
    if let Some((lhs, _)) = current.split_once('=') {
        let lhs = lhs.trim();
        let bare = |c: char| c.is_ascii_alphanumeric() || "_-. ".contains(c);
        if !lhs.is_empty() && lhs.chars().all(bare) {
            table.extend(dotted(lhs));
        }
    } else if current.trim_start().starts_with('[') {
        table.clear();
    }
    KeyPath(table)
}

fn dotted(name: &str) -> Vec<Segment> {
    name.split('.')
        .map(|part| Segment::Key(part.trim().to_owned()))
        .collect()
}

/// Deserializes a table of a parsed document, keeping spans so errors can be located.
pub(crate) fn deserialize_table<T: serde::de::DeserializeOwned>(
    table: &toml_edit::Table,
) -> Result<T, toml_edit::de::Error> {
    deserialize_value(Value::InlineTable(table.clone().into_inline_table()))
}

/// Deserializes one value of a parsed document, keeping spans so errors can be located.
pub(crate) fn deserialize_value<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, toml_edit::de::Error> {
    use serde::de::IntoDeserializer as _;
    T::deserialize(value.into_deserializer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_read_like_the_file() {
        assert_eq!(KeyPath::keys(&["sip"]).to_string(), "key \"sip\"");
        assert_eq!(
            KeyPath::keys(&["invite_rate_limit", "burst"]).to_string(),
            "key \"invite_rate_limit.burst\""
        );
        let step = KeyPath::keys(&["step"]).index(1);
        assert_eq!(step.to_string(), "step 2");
        assert_eq!(
            step.key("record").key("max_secs").to_string(),
            "step 2 key \"record.max_secs\""
        );
        assert_eq!(KeyPath::default().to_string(), "");
    }

    #[test]
    fn offsets_and_keys_map_to_lines_and_columns() {
        let text = "a = 1\n[t]\nb = [1, { c = \"é\", d = 2 }]\n[[s]]\ne = 3\n[[s]]\nf = 4\n";
        let source = SourceFile::parse(Path::new("f.toml"), text).unwrap();
        let d = text.find("d =").unwrap();
        let at = source.at_offset(d);
        assert_eq!((at.line, at.column), (3, 20), "columns count characters");
        assert_eq!(at.to_string(), "f.toml:3:20: key \"t.b\" item 2 key \"d\"");
        let f = source.at_key(&KeyPath::keys(&["s"]).index(1).key("f"));
        assert_eq!(f.to_string(), "f.toml:7:1: s 2 key \"f\"");
        // A key that is not in the file points at its nearest enclosing key.
        let missing = source.at_key(&KeyPath::keys(&["t", "zzz"]));
        assert_eq!((missing.line, missing.column), (2, 2));
    }

    #[test]
    fn syntax_errors_guess_the_key_from_the_headers_above() {
        let text = "[[s]]\na = 1\n[[s]]\nb = \"open\n";
        let Err((at, message)) = SourceFile::parse(Path::new("f.toml"), text) else {
            panic!("parsed");
        };
        assert_eq!(at.to_string(), "f.toml:4:10: s 2 key \"b\"");
        assert!(!message.contains('\n'));
    }
}
