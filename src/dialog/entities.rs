//! Values callers speak, read from transcripts that carry recognition errors: digit strings,
//! dates of birth, yes or no, names and amounts of money.
//!
//! Every reader takes any text and returns `None` (or a low score) for what it cannot read;
//! none panics, however long or odd the input.

use rphonetic::DoubleMetaphone;

/// A calendar date as the caller gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// Which comes first in a date said as numbers only ("5 3 1980").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateOrder {
    /// 5 March: British usage, the default.
    #[default]
    DayMonth,
    /// March 5: US usage.
    MonthDay,
}

/// The digit string in `text` ("four eight two one", "4821", "forty eight twenty one" all
/// give "4821"); the longest run when there are several, the last of equals.
pub fn digits(text: &str) -> Option<String> {
    let mut best: Option<String> = None;
    let mut run = String::new();
    for item in items(&tokens(text)) {
        match item {
            Item::Number(n) => run.push_str(&n),
            Item::Ordinal(_) | Item::Month(_) | Item::Break => {
                keep_longest(&mut best, &mut run);
            }
        }
    }
    keep_longest(&mut best, &mut run);
    best
}

fn keep_longest(best: &mut Option<String>, run: &mut String) {
    if !run.is_empty() && best.as_ref().is_none_or(|b| run.len() >= b.len()) {
        *best = Some(std::mem::take(run));
    }
    run.clear();
}

/// A date in `text` ("fifth of March nineteen eighty", "March 5th 1980", "05/03/1980",
/// "5 3 1980"); `order` settles dates said as numbers only. Years 1900 to 2099; a two-digit
/// year below 30 is taken as 20xx, else 19xx.
pub fn date(text: &str, order: DateOrder) -> Option<Date> {
    let items: Vec<Item> = items(&tokens(text))
        .into_iter()
        .filter(|i| *i != Item::Break)
        .take(MAX_ITEMS)
        .collect();
    (0..items.len()).find_map(|start| date_at(&items[start..], order))
}

/// Whether `text` says yes (`Some(true)`), no (`Some(false)`), or neither clearly (`None`):
/// "yes please", "that's right", "nope", "not really"; "not sure" or a mix is `None`.
pub fn yes_no(text: &str) -> Option<bool> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .take(MAX_ITEMS)
        .collect();
    let (mut yes, mut no) = (0, 0);
    let mut i = 0;
    while i < words.len() {
        let found = ANSWERS
            .iter()
            .filter(|(phrase, _)| {
                let p: Vec<&str> = phrase.split(' ').collect();
                words[i..].starts_with(&p)
            })
            .max_by_key(|(phrase, _)| phrase.split(' ').count());
        match found {
            Some((phrase, answer)) => {
                match answer {
                    Answer::Yes => yes += 1,
                    Answer::No => no += 1,
                    Answer::Unsure => return None,
                }
                i += phrase.split(' ').count();
                // A negation takes the word after it: "not right", "don't think so".
                if phrase.ends_with(" not") || phrase.ends_with("n't") {
                    i += 1;
                }
            }
            None => i += 1,
        }
    }
    match (yes > 0, no > 0) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// How well a heard name matches the expected one, 0..=1, tolerant of spelling ("Jon Smyth"
/// for "John Smith" is high, "Mary Jones" low). The surname counts most.
pub fn name_match(heard: &str, expected: &str) -> f32 {
    let heard = name_parts(heard);
    let expected = name_parts(expected);
    if heard.is_empty() || expected.is_empty() {
        return 0.0;
    }
    let forward = align(&heard, &expected);
    let mut reversed = heard.clone();
    reversed.reverse();
    // Surname first ("Smith, John") is a fair answer, if a less usual one.
    let backward = SWAPPED_ORDER * align(&reversed, &expected);
    forward.max(backward)
}

/// An amount of money in `text`, in minor units (pence, cents): "four hundred and twelve
/// pounds fifty" and "£412.50" give 41250, "fifty pence" 50, "twelve fifty" 1250.
pub fn money(text: &str) -> Option<u64> {
    let toks = tokens(text);
    (0..toks.len()).find_map(|i| money_at(&toks, i))
}

/// Longest input, in tokens, the readers look at: past it, text is not an answer.
const MAX_ITEMS: usize = 512;
/// Discount for a name said surname first.
const SWAPPED_ORDER: f32 = 0.9;

/// One word or mark of a transcript, classified for the readers.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// ASCII digits as written.
    Literal(String),
    /// "5th", "fifth".
    Ordinal(u32),
    /// A digit word; `homophone` for words that are usually something else ("for", "to").
    Unit {
        value: u8,
        homophone: bool,
    },
    Teen(u8),
    Tens(u8),
    /// "double", "triple".
    Repeat(u8),
    /// "hundred", "thousand", "million".
    Scale(u64),
    And,
    /// "a", as in "a hundred".
    A,
    Month(u8),
    /// A decimal point: "point", or "." between digits.
    Point,
    /// "£", "pounds", "dollars".
    Major,
    /// "pence", "p", "cents".
    Minor,
    /// "um", "er": ignored everywhere.
    Filler,
    /// A comma or dash: numbers go on across it.
    Pause,
    /// Anything else, including the end of a sentence.
    Other,
}

/// `text` as tokens; only the first [`MAX_ITEMS`] * 4 are kept.
fn tokens(text: &str) -> Vec<Tok> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    let chars: Vec<char> = lower.chars().take(MAX_ITEMS * 16).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() && out.len() < MAX_ITEMS * 4 {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            classify_alnum(&s, &mut out);
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '\'') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(classify_word(s.trim_end_matches('\'')));
            continue;
        }
        let between_digits = i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        let group = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        match (c, out.last_mut()) {
            ('.', _) if between_digits => out.push(Tok::Point),
            // A thousands separator: "1,250" is one number, "4,8,2,1" four digits.
            (',', Some(Tok::Literal(n)))
                if between_digits
                    && group == 3
                    && !chars.get(i + 4).is_some_and(|c| c.is_ascii_alphanumeric()) =>
            {
                n.extend(&chars[i + 1..i + 4]);
                i += 4;
                continue;
            }
            (',' | ';' | ':' | '-' | '/', _) => out.push(Tok::Pause),
            ('£' | '$' | '€', _) => out.push(Tok::Major),
            (c, _) if c.is_whitespace() || c == '\'' || c == '"' => {}
            _ => out.push(Tok::Other),
        }
        i += 1;
    }
    resolve_homophones(&mut out);
    out
}

/// Classifies a token that starts with a digit: "4821", "5th", "50p".
fn classify_alnum(s: &str, out: &mut Vec<Tok>) {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    match suffix {
        "" => out.push(Tok::Literal(num.to_string())),
        "st" | "nd" | "rd" | "th" => match num.parse::<u32>() {
            Ok(n) if num.len() <= 3 => out.push(Tok::Ordinal(n)),
            _ => out.push(Tok::Other),
        },
        "p" => {
            out.push(Tok::Literal(num.to_string()));
            out.push(Tok::Minor);
        }
        _ => out.push(Tok::Other),
    }
}

fn classify_word(w: &str) -> Tok {
    let unit = |value, homophone| Tok::Unit { value, homophone };
    match w {
        "zero" | "nought" | "naught" | "nil" => unit(0, false),
        "oh" | "o" => unit(0, true),
        "one" => unit(1, false),
        "won" => unit(1, true),
        "two" => unit(2, false),
        "to" | "too" => unit(2, true),
        "three" => unit(3, false),
        "tree" => unit(3, true),
        "four" => unit(4, false),
        "for" | "fore" => unit(4, true),
        "five" => unit(5, false),
        "six" => unit(6, false),
        "seven" => unit(7, false),
        "eight" => unit(8, false),
        "ate" => unit(8, true),
        "nine" => unit(9, false),
        "ten" => Tok::Teen(10),
        "eleven" => Tok::Teen(11),
        "twelve" => Tok::Teen(12),
        "thirteen" => Tok::Teen(13),
        "fourteen" => Tok::Teen(14),
        "fifteen" => Tok::Teen(15),
        "sixteen" => Tok::Teen(16),
        "seventeen" => Tok::Teen(17),
        "eighteen" => Tok::Teen(18),
        "nineteen" => Tok::Teen(19),
        "twenty" => Tok::Tens(20),
        "thirty" => Tok::Tens(30),
        "forty" | "fourty" => Tok::Tens(40),
        "fifty" => Tok::Tens(50),
        "sixty" => Tok::Tens(60),
        "seventy" => Tok::Tens(70),
        "eighty" => Tok::Tens(80),
        "ninety" => Tok::Tens(90),
        "double" => Tok::Repeat(2),
        "triple" => Tok::Repeat(3),
        "hundred" => Tok::Scale(100),
        "thousand" => Tok::Scale(1_000),
        "million" => Tok::Scale(1_000_000),
        "and" => Tok::And,
        "a" => Tok::A,
        "point" => Tok::Point,
        "pound" | "pounds" | "quid" | "dollar" | "dollars" | "euro" | "euros" | "buck"
        | "bucks" => Tok::Major,
        "penny" | "pence" | "p" | "cent" | "cents" => Tok::Minor,
        "um" | "uh" | "er" | "erm" | "ah" | "hmm" | "mm" => Tok::Filler,
        _ => ordinal_word(w)
            .map(Tok::Ordinal)
            .or_else(|| month(w).map(Tok::Month))
            .unwrap_or(Tok::Other),
    }
}

fn ordinal_word(w: &str) -> Option<u32> {
    const ORDINALS: [&str; 19] = [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
    ];
    match w {
        "twentieth" => Some(20),
        "thirtieth" => Some(30),
        _ => ORDINALS.iter().position(|o| *o == w).map(|p| p as u32 + 1),
    }
}

fn month(w: &str) -> Option<u8> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let w = if w == "sept" { "sep" } else { w };
    MONTHS
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w)))
        .map(|p| p as u8 + 1)
}

/// Whether a token can stand beside a homophone and make it a digit: a spoken digit or a
/// single written one. "for 4821" is a preposition; "four eight to one" is not.
fn supports(t: &Tok) -> bool {
    match t {
        Tok::Literal(s) => s.len() == 1,
        Tok::Unit { homophone, .. } => !homophone,
        Tok::Teen(_) | Tok::Tens(_) | Tok::Repeat(_) => true,
        _ => false,
    }
}

/// Turns homophones ("for", "to", "oh") into digits only beside other digits, not across a
/// pause; the rest become ordinary words.
fn resolve_homophones(toks: &mut [Tok]) {
    let is_homophone = |t: &Tok| {
        matches!(
            t,
            Tok::Unit {
                homophone: true,
                ..
            }
        )
    };
    let mut supported = vec![false; toks.len()];
    let neighbour = |toks: &[Tok], i: usize, step: isize| -> Option<usize> {
        let mut j = i as isize + step;
        while j >= 0 && (j as usize) < toks.len() {
            if toks[j as usize] != Tok::Filler {
                return Some(j as usize);
            }
            j += step;
        }
        None
    };
    // Support spreads along a chain ("four to to"), so iterate until nothing changes.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..toks.len() {
            if !is_homophone(&toks[i]) || supported[i] {
                continue;
            }
            let ok = [-1, 1].iter().any(|&step| {
                neighbour(toks, i, step).is_some_and(|j| supports(&toks[j]) || supported[j])
            });
            if ok {
                supported[i] = true;
                changed = true;
            }
        }
    }
    for (t, ok) in toks.iter_mut().zip(supported) {
        if let Tok::Unit {
            homophone: homophone @ true,
            ..
        } = t
        {
            if ok {
                *homophone = false;
            } else {
                *t = Tok::Other;
            }
        }
    }
}

/// What the number readers see: numbers as digit strings, ordinals, months, and breaks
/// where something else was said.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Number(String),
    Ordinal(u32),
    Month(u8),
    Break,
}

fn items(toks: &[Tok]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (item, used) = match (&toks[i], toks.get(i + 1)) {
            (Tok::Filler | Tok::Pause, _) => (None, 1),
            (Tok::Month(m), _) => (Some(Item::Month(*m)), 1),
            (Tok::Ordinal(n), _) => (Some(Item::Ordinal(*n)), 1),
            // "twenty fifth".
            (Tok::Tens(t), Some(Tok::Ordinal(u))) if *u < 10 => {
                (Some(Item::Ordinal(u32::from(*t) + u)), 2)
            }
            (Tok::Repeat(n), Some(Tok::Unit { value, .. })) => {
                let digits = value.to_string().repeat(usize::from(*n));
                (Some(Item::Number(digits)), 2)
            }
            (Tok::Repeat(n), Some(Tok::Literal(s))) if s.len() == 1 => {
                (Some(Item::Number(s.repeat(usize::from(*n)))), 2)
            }
            (Tok::Literal(s), next) if !matches!(next, Some(Tok::Scale(_))) => {
                (Some(Item::Number(s.clone())), 1)
            }
            _ => match cardinal(toks, i) {
                Some((value, next)) => (Some(Item::Number(value.to_string())), next - i),
                None => (Some(Item::Break), 1),
            },
        };
        out.extend(item);
        i += used;
    }
    out
}

/// Where a cardinal number's words have got to, to know what may follow.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Last {
    Nothing,
    Unit,
    Teen,
    Tens,
    Hundred,
    Scale,
    And,
}

/// Reads a cardinal number from `toks[i..]` ("four hundred and twelve", "forty eight",
/// "5 thousand"): its value and the index after it. A digit after a digit ends the number,
/// so "four eight" is 4, then 8.
fn cardinal(toks: &[Tok], mut i: usize) -> Option<(u64, usize)> {
    let (mut total, mut current) = (0u64, 0u64);
    let mut last = Last::Nothing;
    let start = i;
    let mut end = i;
    while let Some(t) = toks.get(i) {
        let next = toks.get(i + 1);
        match (t, last) {
            (Tok::Filler, _) => {}
            (Tok::Literal(s), Last::Nothing) => {
                if s.len() > 15 {
                    return None;
                }
                current = s.parse().ok()?;
                last = Last::Unit;
            }
            (Tok::A, Last::Nothing) if matches!(next, Some(Tok::Scale(_))) => {
                current = 1;
                last = Last::Unit;
            }
            (
                Tok::Unit {
                    value,
                    homophone: false,
                },
                Last::Nothing | Last::Tens | Last::Hundred | Last::Scale | Last::And,
            ) => {
                current += u64::from(*value);
                last = Last::Unit;
            }
            (Tok::Teen(v), Last::Nothing | Last::Hundred | Last::Scale | Last::And) => {
                current += u64::from(*v);
                last = Last::Teen;
            }
            (Tok::Tens(v), Last::Nothing | Last::Hundred | Last::Scale | Last::And) => {
                current += u64::from(*v);
                last = Last::Tens;
            }
            (Tok::Scale(100), Last::Unit | Last::Teen | Last::Nothing) if current < 100 => {
                current = current.max(1) * 100;
                last = Last::Hundred;
            }
            (Tok::Scale(s), Last::Unit | Last::Teen | Last::Tens | Last::Hundred) => {
                total = total.checked_add(current.checked_mul(*s)?)?;
                current = 0;
                last = Last::Scale;
            }
            (Tok::And, Last::Hundred | Last::Scale)
                if matches!(
                    next,
                    Some(
                        Tok::Unit {
                            homophone: false,
                            ..
                        } | Tok::Teen(_)
                            | Tok::Tens(_)
                    )
                ) =>
            {
                last = Last::And;
            }
            _ => break,
        }
        i += 1;
        if *t != Tok::Filler {
            end = i;
        }
    }
    (end > start && last != Last::Nothing).then(|| (total + current, end))
}

/// A date starting exactly at `items[0]`, if one does.
fn date_at(items: &[Item], order: DateOrder) -> Option<Date> {
    // A month said by name settles the order whatever `order` says.
    if let Some(Item::Month(m)) = items.first() {
        for (day, rest) in days(&items[1..]) {
            if let Some(d) = years(rest).find_map(|y| valid(y, *m, day)) {
                return Some(d);
            }
        }
    }
    for (day, rest) in days(items) {
        if let Some(Item::Month(m)) = rest.first() {
            if let Some(d) = years(&rest[1..]).find_map(|y| valid(y, *m, day)) {
                return Some(d);
            }
        }
    }
    // ISO order: a four-digit year first, as written dates often are.
    if let Some(Item::Number(y)) = items.first() {
        if y.len() == 4 {
            let year: u16 = y.parse().ok()?;
            for (month, rest) in numbers(&items[1..], 12) {
                if let Some(d) = days(rest).find_map(|(day, _)| valid(year, month as u8, day)) {
                    return Some(d);
                }
            }
        }
    }
    let firsts: Vec<(u32, &[Item])> = match order {
        DateOrder::DayMonth => days(items).collect(),
        DateOrder::MonthDay => numbers(items, 12).collect(),
    };
    for (first, rest) in firsts {
        for (second, rest) in numbers(rest, 31) {
            let (day, month) = match order {
                DateOrder::DayMonth => (first, second),
                DateOrder::MonthDay => (second, first),
            };
            let Ok(month) = u8::try_from(month) else {
                continue;
            };
            if let Some(d) = years(rest).find_map(|y| valid(y, month, day)) {
                return Some(d);
            }
        }
    }
    None
}

/// The ways `items` can start with a day: an ordinal, or a number up to 31 said whole or
/// digit by digit ("zero five").
fn days(items: &[Item]) -> impl Iterator<Item = (u32, &[Item])> {
    let ordinal = match items.first() {
        Some(Item::Ordinal(n)) if (1..=31).contains(n) => Some((*n, &items[1..])),
        _ => None,
    };
    ordinal.into_iter().chain(numbers(items, 31))
}

/// The ways `items` can start with a number from 1 to `max`: one item, or two single digits.
fn numbers(items: &[Item], max: u32) -> impl Iterator<Item = (u32, &[Item])> {
    let mut found = Vec::new();
    if let Some(Item::Number(a)) = items.first() {
        if a.len() <= 2 {
            found.push((a.parse::<u32>().unwrap_or(0), &items[1..]));
        }
        if let (1, Some(Item::Number(b))) = (a.len(), items.get(1)) {
            if b.len() == 1 {
                found.push((format!("{a}{b}").parse().unwrap_or(0), &items[2..]));
            }
        }
    }
    found
        .into_iter()
        .filter(move |(n, _)| (1..=max).contains(n))
}

/// The ways `items` can start with a year: digit groups that make four digits together
/// ("19" "80", "1" "9" "8" "0"), or two digits alone.
fn years(items: &[Item]) -> impl Iterator<Item = u16> + '_ {
    let mut found = Vec::new();
    let mut joined = String::new();
    for item in items.iter().take(4) {
        let Item::Number(n) = item else { break };
        joined.push_str(n);
        if joined.len() == 4 {
            found.push(joined.parse().unwrap_or(0));
        }
        if joined.len() >= 4 {
            break;
        }
    }
    if let Some(Item::Number(n)) = items.first() {
        if n.len() == 2 {
            let yy: u16 = n.parse().unwrap_or(0);
            found.push(if yy < 30 { 2000 + yy } else { 1900 + yy });
        }
    }
    found.into_iter()
}

fn valid(year: u16, month: u8, day: u32) -> Option<Date> {
    if !(1900..=2099).contains(&year) {
        return None;
    }
    calendar_date(year, month, u8::try_from(day).ok()?)
}

/// The date, if it is a day of the calendar (30 February is not).
pub(crate) fn calendar_date(year: u16, month: u8, day: u8) -> Option<Date> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    (1..=days)
        .contains(&day)
        .then_some(Date { year, month, day })
}

/// An amount starting at `toks[i]`: a currency mark, then a number, then its unit, pence
/// after it; or a bare number, read as the major unit.
fn money_at(toks: &[Tok], i: usize) -> Option<u64> {
    let first_number = toks.iter().position(|t| {
        matches!(
            t,
            Tok::Literal(_) | Tok::Unit { .. } | Tok::Teen(_) | Tok::Tens(_) | Tok::A
        )
    });
    let mut j = i;
    let symbol = toks.get(j) == Some(&Tok::Major);
    if symbol {
        j += 1;
    }
    let (major, next) = cardinal(toks, j)?;
    j = next;
    // "412.50", "twelve point five zero": the fraction, as pence.
    if toks.get(j) == Some(&Tok::Point) {
        let mut fraction = String::new();
        j += 1;
        while let Some(t) = toks.get(j) {
            match t {
                Tok::Literal(s) if fraction.is_empty() => fraction.push_str(s),
                Tok::Unit {
                    value,
                    homophone: false,
                } => fraction.push_str(&value.to_string()),
                _ => break,
            }
            j += 1;
        }
        let mut cents: String = fraction.chars().take(2).collect();
        while cents.len() < 2 {
            cents.push('0');
        }
        return major.checked_mul(100)?.checked_add(cents.parse().ok()?);
    }
    match toks.get(j) {
        Some(Tok::Minor) if !symbol => return Some(major),
        Some(Tok::Major) => j += 1,
        _ if symbol => {}
        // A bare number is an amount only where an amount was asked for; "twelve fifty"
        // is then pounds and pence.
        _ if Some(i) == first_number => {}
        _ => return None,
    }
    if toks.get(j) == Some(&Tok::And) {
        j += 1;
    }
    let pence = match cardinal(toks, j) {
        Some((p, next)) if p < 100 => {
            let unit_ok = !matches!(toks.get(next), Some(Tok::Major));
            unit_ok.then_some(p)
        }
        _ => None,
    };
    major.checked_mul(100)?.checked_add(pence.unwrap_or(0))
}

/// Spoken answers to a yes-or-no question, longest match first.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Yes,
    No,
    Unsure,
}

const ANSWERS: &[(&str, Answer)] = &[
    ("yes", Answer::Yes),
    ("yeah", Answer::Yes),
    ("yep", Answer::Yes),
    ("yup", Answer::Yes),
    ("yea", Answer::Yes),
    ("ya", Answer::Yes),
    ("aye", Answer::Yes),
    ("sure", Answer::Yes),
    ("correct", Answer::Yes),
    ("right", Answer::Yes),
    ("absolutely", Answer::Yes),
    ("definitely", Answer::Yes),
    ("certainly", Answer::Yes),
    ("indeed", Answer::Yes),
    ("exactly", Answer::Yes),
    ("affirmative", Answer::Yes),
    ("ok", Answer::Yes),
    ("okay", Answer::Yes),
    ("alright", Answer::Yes),
    ("true", Answer::Yes),
    ("of course", Answer::Yes),
    ("go ahead", Answer::Yes),
    ("please do", Answer::Yes),
    ("uh huh", Answer::Yes),
    ("mm hmm", Answer::Yes),
    ("i do", Answer::Yes),
    ("it is", Answer::Yes),
    ("that's it", Answer::Yes),
    ("sounds good", Answer::Yes),
    ("no problem", Answer::Yes),
    ("no worries", Answer::Yes),
    ("no", Answer::No),
    ("nope", Answer::No),
    ("nah", Answer::No),
    ("nay", Answer::No),
    ("negative", Answer::No),
    ("wrong", Answer::No),
    ("incorrect", Answer::No),
    ("never", Answer::No),
    ("not really", Answer::No),
    ("not at all", Answer::No),
    ("not right", Answer::No),
    ("not correct", Answer::No),
    ("not true", Answer::No),
    ("that's not", Answer::No),
    ("that is not", Answer::No),
    ("it's not", Answer::No),
    ("it is not", Answer::No),
    ("it isn't", Answer::No),
    ("i don't", Answer::No),
    ("i do not", Answer::No),
    ("don't", Answer::No),
    ("not sure", Answer::Unsure),
    ("don't know", Answer::Unsure),
    ("do not know", Answer::Unsure),
    ("dunno", Answer::Unsure),
    ("maybe", Answer::Unsure),
    ("perhaps", Answer::Unsure),
    ("no idea", Answer::Unsure),
    ("not certain", Answer::Unsure),
    ("pardon", Answer::Unsure),
];

/// Words around a name that are not part of it.
const NOT_NAME: &[&str] = &[
    "mr", "mrs", "ms", "miss", "mx", "dr", "sir", "madam", "my", "name", "is", "it's", "its",
    "this", "i'm", "im", "i", "am", "called", "the", "it", "yes", "yeah", "er", "um", "uh",
];

/// Longest name, in parts, compared.
const MAX_NAME_PARTS: usize = 16;

fn name_parts(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('\u{2019}', "'")
        .split(|c: char| !(c.is_alphabetic() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty() && !NOT_NAME.contains(w))
        .take(MAX_NAME_PARTS)
        .map(str::to_string)
        .collect()
}

/// Best in-order pairing of heard parts to expected ones, weighted toward the surname.
fn align(heard: &[String], expected: &[String]) -> f32 {
    let n = expected.len();
    let weight = |k: usize| -> f32 {
        if n == 1 {
            1.0
        } else if k == n - 1 {
            0.6
        } else {
            0.4 / (n - 1) as f32
        }
    };
    // best[j]: best score for the expected parts so far using heard parts before j.
    let mut best = vec![0.0f32; heard.len() + 1];
    for (k, e) in expected.iter().enumerate() {
        let mut next = vec![0.0f32; heard.len() + 1];
        for j in 0..heard.len() {
            let take = best[j] + weight(k) * part_similarity(&heard[j], e);
            next[j + 1] = next[j].max(take).max(best[j + 1]);
        }
        next[0] = best[0];
        best = next;
    }
    best.into_iter().fold(0.0, f32::max).min(1.0)
}

/// How alike two parts of a name are, 0..=1: by spelling, by sound, or as an initial.
fn part_similarity(a: &str, b: &str) -> f32 {
    if a == b {
        return 1.0;
    }
    let (ca, cb) = (a.chars().count(), b.chars().count());
    if ca == 1 || cb == 1 {
        return if a.chars().next() == b.chars().next() {
            0.7
        } else {
            0.0
        };
    }
    let spelling = strsim::normalized_levenshtein(a, b) as f32;
    let ascii = |s: &str| -> String { s.chars().filter(char::is_ascii_alphabetic).collect() };
    let (aa, bb) = (ascii(a), ascii(b));
    if aa.is_empty() || bb.is_empty() {
        return spelling;
    }
    let encoder = DoubleMetaphone::new(None);
    let (ka, kb) = (encoder.double_metaphone(&aa), encoder.double_metaphone(&bb));
    let same_sound = [ka.primary(), ka.alternate()]
        .iter()
        .any(|k| !k.is_empty() && (*k == kb.primary() || *k == kb.alternate()));
    if same_sound {
        spelling.max(0.85 + 0.15 * spelling)
    } else {
        spelling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digits_are_read_however_they_are_said() {
        let cases: &[(&str, Option<&str>)] = &[
            ("four eight two one", Some("4821")),
            ("4821", Some("4821")),
            ("forty eight twenty one", Some("4821")),
            ("four eight two one.", Some("4821")),
            ("Four, eight, two, one.", Some("4821")),
            ("4, 8, 2, 1", Some("4821")),
            ("for eight to one", Some("4821")),
            ("four ate two won", Some("4821")),
            ("four eight too one", Some("4821")),
            ("oh four eight two", Some("0482")),
            ("Oh, four eight two one", Some("4821")),
            ("double four two one", Some("4421")),
            ("four um eight two one", Some("4821")),
            ("it's 48 21", Some("4821")),
            ("the last four are four eight two one", Some("4821")),
            ("I'm calling for 4821", Some("4821")),
            ("I want to pay", None),
            ("nineteen oh five", Some("1905")),
            ("four hundred and twelve", Some("412")),
            ("", None),
            ("no numbers here", None),
        ];
        for (text, want) in cases {
            assert_eq!(digits(text).as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn dates_of_birth_are_read_in_british_order() {
        let d = |year, month, day| Some(Date { year, month, day });
        let cases: &[(&str, Option<Date>)] = &[
            ("fifth of March nineteen eighty", d(1980, 3, 5)),
            ("March 5th 1980", d(1980, 3, 5)),
            ("05/03/1980", d(1980, 3, 5)),
            ("the 5th of March 1980", d(1980, 3, 5)),
            ("5 3 1980", d(1980, 3, 5)),
            ("5-3-1980", d(1980, 3, 5)),
            ("05.03.1980", d(1980, 3, 5)),
            ("1980-03-05", d(1980, 3, 5)),
            ("It's the fifth of March, 1980.", d(1980, 3, 5)),
            (
                "twenty fifth of December nineteen ninety nine",
                d(1999, 12, 25),
            ),
            (
                "thirty first of january two thousand and one",
                d(2001, 1, 31),
            ),
            ("twenty five twelve nineteen ninety nine", d(1999, 12, 25)),
            ("zero five zero three one nine eight zero", d(1980, 3, 5)),
            ("the first of may eighty five", d(1985, 5, 1)),
            ("march the third nineteen oh five", d(1905, 3, 3)),
            ("29th of February 2000", d(2000, 2, 29)),
            ("29th of February 2001", None),
            ("31/04/1980", None),
            (
                "my card ends 4821 and I was born on 5 3 1980",
                d(1980, 3, 5),
            ),
            ("I don't remember", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(date(text, DateOrder::DayMonth), *want, "{text:?}");
        }
        assert_eq!(date("5 3 1980", DateOrder::MonthDay), d(1980, 5, 3));
        assert_eq!(date("March 5th 1980", DateOrder::MonthDay), d(1980, 3, 5));
    }

    #[test]
    fn yes_and_no_are_told_apart_and_doubt_is_none() {
        let cases: &[(&str, Option<bool>)] = &[
            ("yes please", Some(true)),
            ("Yes.", Some(true)),
            ("yeah", Some(true)),
            ("that's right", Some(true)),
            ("That’s correct.", Some(true)),
            ("uh huh", Some(true)),
            ("yes, no problem", Some(true)),
            ("no", Some(false)),
            ("No.", Some(false)),
            ("nope", Some(false)),
            ("not really", Some(false)),
            ("no thank you", Some(false)),
            ("that's not right", Some(false)),
            ("I don't think so", Some(false)),
            ("I'm not sure", None),
            ("maybe", None),
            ("yeah no", None),
            ("what's the weather like", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(yes_no(text), *want, "{text:?}");
        }
    }

    #[test]
    fn names_match_through_spelling_and_sound() {
        let high = [
            ("Jon Smyth", "John Smith"),
            ("john smith", "John Smith"),
            ("my name is Jon Smith", "John Smith"),
            ("Catherine Jones", "Kathryn Jones"),
            ("Mr J Smith", "John Smith"),
            ("Smith, John", "John Smith"),
            ("Sean O'Brien", "Shaun O'Brien"),
        ];
        for (heard, expected) in high {
            let s = name_match(heard, expected);
            assert!(s >= 0.8, "{heard:?} / {expected:?}: {s}");
        }
        let low = [
            ("Mary Jones", "John Smith"),
            ("Peter Brown", "John Smith"),
            ("", "John Smith"),
            ("John Smith", ""),
        ];
        for (heard, expected) in low {
            let s = name_match(heard, expected);
            assert!(s < 0.4, "{heard:?} / {expected:?}: {s}");
        }
        // A right first name and a wrong surname is not a match.
        assert!(name_match("John Jones", "John Smith") < 0.6);
    }

    #[test]
    fn money_is_read_in_pence() {
        let cases: &[(&str, Option<u64>)] = &[
            ("four hundred and twelve pounds fifty", Some(41250)),
            ("£412.50", Some(41250)),
            ("412.50", Some(41250)),
            ("412 pounds 50", Some(41250)),
            (
                "four hundred and twelve pounds and fifty pence",
                Some(41250),
            ),
            ("fifty pence", Some(50)),
            ("50p", Some(50)),
            ("twelve fifty", Some(1250)),
            ("a hundred pounds", Some(10000)),
            ("£1,250", Some(125000)),
            ("two thousand five hundred dollars", Some(250000)),
            ("twelve point five", Some(1250)),
            ("I'd like to pay ten pounds please", Some(1000)),
            ("nothing", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(money(text), *want, "{text:?}");
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        let long = "four ".repeat(2500);
        let mixed = "🙂 ٣ 日本 ß 1st 99999999999999999999999 £ . , - / ".repeat(200);
        for text in [
            "",
            " ",
            "\u{0}",
            "'''",
            "£",
            ".",
            "5th",
            long.as_str(),
            mixed.as_str(),
        ] {
            let _ = digits(text);
            let _ = date(text, DateOrder::DayMonth);
            let _ = yes_no(text);
            let _ = name_match(text, text);
            let _ = money(text);
        }
    }

    proptest! {
        #[test]
        fn no_input_panics(text in ".{0,200}") {
            let _ = digits(&text);
            let _ = date(&text, DateOrder::DayMonth);
            let _ = date(&text, DateOrder::MonthDay);
            let _ = yes_no(&text);
            let s = name_match(&text, "John Smith");
            prop_assert!((0.0..=1.0).contains(&s));
            let _ = money(&text);
        }

        #[test]
        fn no_spoken_number_soup_panics(
            words in prop::collection::vec(
                prop::sample::select(vec![
                    "four", "for", "to", "oh", "and", "a", "hundred", "thousand", "million",
                    "twenty", "nineteen", "fifth", "march", "double", "point", "pounds",
                    "pence", "£", "99999999999", ",", ".", "/", "1st", "um",
                ]),
                0..40,
            )
        ) {
            let text = words.join(" ");
            let _ = digits(&text);
            let _ = date(&text, DateOrder::DayMonth);
            let _ = money(&text);
        }
    }
}
