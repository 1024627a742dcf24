//! Escalation reports: how many of the bot's calls went to a person, per week or month, by
//! intent and by reason; as JSON, CSV, SVG charts and one small HTML page.
//!
//! The numbers come from [`report`], a pure function over plain rows ([`CallRow`],
//! [`EscalationRow`]) that the archive reads (`Archive::report_rows`); every rendering is
//! string building, with the civil calendar (UTC) worked out here.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use thiserror::Error;

/// The key of calls and escalations without an intent.
pub const NO_INTENT: &str = "none";
/// Most periods one report spans.
pub const MAX_PERIODS: usize = 10_000;

const DAY_MS: i64 = 86_400_000;

/// How a report groups time: weeks start on Monday, both in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Monday to Sunday, labelled by its Monday (`2026-11-23`).
    Week,
    /// A calendar month (`2026-11`).
    Month,
}

impl Period {
    /// `week` or `month`.
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The name [`Period::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The first day (days since the epoch) of the period holding day `day`.
    fn start_of(self, day: i64) -> i64 {
        match self {
            // 1970-01-01 was a Thursday: three days after a Monday.
            Period::Week => day - (day + 3).rem_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1)
            }
        }
    }

    /// The first day of the period after the one starting on `start`.
    fn next(self, start: i64) -> i64 {
        match self {
            Period::Week => start + 7,
            Period::Month => {
                let (y, m, _) = civil_from_days(start);
                if m == 12 {
                    days_from_civil(y + 1, 1, 1)
                } else {
                    days_from_civil(y, m + 1, 1)
                }
            }
        }
    }

    /// How the period starting on `start` is named.
    fn label(self, start: i64) -> String {
        let (y, m, d) = civil_from_days(start);
        match self {
            Period::Week => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month => format!("{y:04}-{m:02}"),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) of a day since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both in range by construction: 1..=31 and 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a day since 1970-01-01.
fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day (since 1970-01-01, UTC) holding `ms`.
fn day_of(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).div_euclid(DAY_MS)
}

/// One call as a report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// When it ended, in ms since the Unix epoch; for an escalated call not archived
    /// (yet), when it was escalated.
    pub ended_ms: u64,
    /// What the caller wanted, as the call ended.
    pub intent: Option<String>,
    /// Whether the bot took part (it took a dialog step, or the call was escalated): only
    /// those calls count.
    pub bot: bool,
}

/// One escalation as a report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRow {
    /// When baton decided the call should go to a person, in ms since the Unix epoch.
    pub decided_ms: u64,
    /// What the caller wanted when the call was escalated.
    pub intent: Option<String>,
    /// The codes of its reasons (`caller_request`, `sentiment`, ...).
    pub reasons: Vec<String>,
}

/// What a report is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub calls: Vec<CallRow>,
    pub escalations: Vec<EscalationRow>,
}

/// The time a report covers, `[from_ms, to_ms)`; an open end reaches the oldest or newest
/// row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Range {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

impl Range {
    /// Whether `ms` falls in the range.
    fn holds(self, ms: u64) -> bool {
        self.from_ms.is_none_or(|from| ms >= from) && self.to_ms.is_none_or(|to| ms < to)
    }
}

/// Why a report could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The range holds more periods than [`MAX_PERIODS`].
    #[error("from, to: the range spans more than {MAX_PERIODS} {}s; narrow it", .0.as_str())]
    TooLong(Period),
}

/// The escalation report over a range, period by period and in total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// The whole range.
    pub total: Tally,
    /// Every period from the first to the last, those without calls included, oldest first.
    pub periods: Vec<PeriodTally>,
}

/// One period of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodTally {
    /// `2026-11-23` (a week, by its Monday) or `2026-11` (a month).
    pub period: String,
    /// Its first day, `2026-11-23`.
    pub start: String,
    /// Its bounds `[start_ms, end_ms)`, in ms since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(flatten)]
    pub tally: Tally,
}

/// The counts of a period, or of the whole range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// The bot's calls that ended in it.
    pub calls: u64,
    /// Escalations decided in it.
    pub escalated: u64,
    /// `escalated / calls`; 0 without calls.
    pub rate: f64,
    /// Per intent (its calls, escalations and rate), by name; [`NO_INTENT`] for none.
    pub by_intent: Vec<IntentTally>,
    /// Per reason code: the escalations that list it, and their share of the calls.
    pub by_reason: Vec<ReasonTally>,
}

/// The calls and escalations of one intent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentTally {
    pub intent: String,
    pub calls: u64,
    pub escalated: u64,
    pub rate: f64,
}

/// The escalations one reason took part in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonTally {
    /// The reason's code, `caller_request`.
    pub reason: String,
    pub escalated: u64,
    /// `escalated` over the calls of the period.
    pub share: f64,
}

/// Counts while a report is being made.
#[derive(Default)]
struct Count {
    calls: u64,
    escalated: u64,
    intents: BTreeMap<String, (u64, u64)>,
    reasons: BTreeMap<String, u64>,
}

impl Count {
    fn call(&mut self, intent: &str) {
        self.calls += 1;
        self.intents.entry(intent.to_owned()).or_default().0 += 1;
    }

    fn escalation(&mut self, intent: &str, reasons: &BTreeSet<&str>) {
        self.escalated += 1;
        self.intents.entry(intent.to_owned()).or_default().1 += 1;
        for &reason in reasons {
            *self.reasons.entry(reason.to_owned()).or_default() += 1;
        }
    }

    fn tally(self) -> Tally {
        let calls = self.calls;
        Tally {
            calls,
            escalated: self.escalated,
            rate: ratio(self.escalated, calls),
            by_intent: self
                .intents
                .into_iter()
                .map(|(intent, (calls, escalated))| IntentTally {
                    intent,
                    calls,
                    escalated,
                    rate: ratio(escalated, calls),
                })
                .collect(),
            by_reason: self
                .reasons
                .into_iter()
                .map(|(reason, escalated)| ReasonTally {
                    reason,
                    escalated,
                    share: ratio(escalated, calls),
                })
                .collect(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The intent a row is counted under.
fn intent_key(intent: &Option<String>) -> &str {
    intent
        .as_deref()
        .filter(|i| !i.is_empty())
        .unwrap_or(NO_INTENT)
}

/// The escalation report of `rows` over `range`, by `period`. Rows outside the range, and
/// calls the bot took no part in, are left out; a reason an escalation lists twice counts
/// once.
pub fn report(period: Period, range: Range, rows: &Rows) -> Result<Report, ReportError> {
    let mut total = Count::default();
    let mut by_start: BTreeMap<i64, Count> = BTreeMap::new();
    for call in rows
        .calls
        .iter()
        .filter(|c| c.bot && range.holds(c.ended_ms))
    {
        let intent = intent_key(&call.intent);
        total.call(intent);
        let start = period.start_of(day_of(call.ended_ms));
        by_start.entry(start).or_default().call(intent);
    }
    for esc in rows
        .escalations
        .iter()
        .filter(|e| range.holds(e.decided_ms))
    {
        let intent = intent_key(&esc.intent);
        let reasons: BTreeSet<&str> = esc.reasons.iter().map(String::as_str).collect();
        total.escalation(intent, &reasons);
        let start = period.start_of(day_of(esc.decided_ms));
        by_start
            .entry(start)
            .or_default()
            .escalation(intent, &reasons);
    }

    let first = range
        .from_ms
        .map(|ms| period.start_of(day_of(ms)))
        .or_else(|| by_start.keys().next().copied());
    let last = match range.to_ms {
        Some(0) => None,
        Some(to) => Some(period.start_of(day_of(to - 1))),
        None => by_start.keys().next_back().copied(),
    };
    let mut periods = Vec::new();
    if let (Some(first), Some(last)) = (first, last) {
        let mut start = first;
        while start <= last {
            if periods.len() == MAX_PERIODS {
                return Err(ReportError::TooLong(period));
            }
            let end = period.next(start);
            periods.push(PeriodTally {
                period: period.label(start),
                start: date(start),
                start_ms: start.saturating_mul(DAY_MS),
                end_ms: end.saturating_mul(DAY_MS),
                tally: by_start.remove(&start).unwrap_or_default().tally(),
            });
            start = end;
        }
    }
    Ok(Report {
        period,
        from_ms: range.from_ms,
        to_ms: range.to_ms,
        total: total.tally(),
        periods,
    })
}

/// What a report request asks for, read from its query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub period: Period,
    pub range: Range,
    pub format: Format,
}

/// How a report is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Request {
    /// Reads `period` (`week`, the default, or `month`), `from` and `to` (ms since the
    /// Unix epoch) and, when `formats` is set, `format` (`json`, the default, or `csv`).
    /// A bad parameter is named, with what was expected.
    pub fn parse(params: &[(String, String)], formats: bool) -> Result<Request, String> {
        let mut request = Request {
            period: Period::Week,
            range: Range::default(),
            format: Format::Json,
        };
        let mut seen = BTreeSet::new();
        for (name, value) in params {
            if !seen.insert(name.as_str()) {
                return Err(format!("{name}: given more than once"));
            }
            let ms = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|&ms| ms <= i64::MAX as u64)
                    .ok_or_else(|| {
                        format!("{name}: expected milliseconds since the Unix epoch, not {value:?}")
                    })
            };
            match name.as_str() {
                "period" => {
                    request.period = Period::parse(value)
                        .ok_or_else(|| format!("period: expected week or month, not {value:?}"))?;
                }
                "from" => request.range.from_ms = Some(ms()?),
                "to" => request.range.to_ms = Some(ms()?),
                "format" if formats => {
                    request.format = match value.as_str() {
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        _ => return Err(format!("format: expected json or csv, not {value:?}")),
                    };
                }
                _ => {
                    let known = if formats {
                        "period, from, to and format"
                    } else {
                        "period, from and to"
                    };
                    return Err(format!("{name}: unknown parameter; expected {known}"));
                }
            }
        }
        if let (Some(from), Some(to)) = (request.range.from_ms, request.range.to_ms) {
            if to <= from {
                return Err(format!("to: {to} is not after from ({from})"));
            }
        }
        Ok(request)
    }

    /// The query string of this request (`period=week&from=..`), without `format`.
    fn query(&self) -> String {
        let mut q = format!("period={}", self.period.as_str());
        if let Some(from) = self.range.from_ms {
            let _ = write!(q, "&from={from}");
        }
        if let Some(to) = self.range.to_ms {
            let _ = write!(q, "&to={to}");
        }
        q
    }
}

/// The CSV header, one row per period and group.
pub const CSV_HEADER: &str = "period,start,group,key,calls,escalated,rate";

impl Report {
    /// The report as CSV (RFC 4180, CRLF line ends): per period a `total` row, then an
    /// `intent` row per intent and a `reason` row per reason code, whose `calls` are the
    /// period's and whose `rate` is its share of them.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(CSV_HEADER);
        out.push_str("\r\n");
        for p in &self.periods {
            let t = &p.tally;
            let mut row = |group: &str, key: &str, calls: u64, escalated: u64, rate: f64| {
                let _ = write!(
                    out,
                    "{},{},{group},{},{calls},{escalated},{rate:.4}\r\n",
                    csv_field(&p.period),
                    csv_field(&p.start),
                    csv_field(key)
                );
            };
            row("total", "", t.calls, t.escalated, t.rate);
            for i in &t.by_intent {
                row("intent", &i.intent, i.calls, i.escalated, i.rate);
            }
            for r in &t.by_reason {
                row("reason", &r.reason, t.calls, r.escalated, r.share);
            }
        }
        out
    }

    /// A line chart of the escalation rate per period, as a standalone SVG document.
    pub fn rate_svg(&self) -> String {
        rate_chart(self)
    }

    /// Bar charts of the range's escalations by intent and by reason, as one SVG document.
    pub fn breakdown_svg(&self) -> String {
        breakdown_chart(&self.total)
    }

    /// The `/reports` page: both charts inline, and links to the JSON and the CSV of the
    /// same report. `request` is what asked for it.
    pub fn page(&self, request: &Request) -> String {
        let query = request.query();
        let other = match self.period {
            Period::Week => Period::Month,
            Period::Month => Period::Week,
        };
        let switch = Request {
            period: other,
            ..*request
        };
        let t = &self.total;
        let summary = format!(
            "{} of the bot's {} calls escalated ({}), {}.",
            t.escalated,
            t.calls,
            percent(t.rate),
            match (self.periods.first(), self.periods.last()) {
                (Some(only), _) if self.periods.len() == 1 => {
                    format!("{} {}", self.period.as_str(), only.period)
                }
                (Some(first), Some(last)) => format!(
                    "{}s {} to {}",
                    self.period.as_str(),
                    first.period,
                    last.period
                ),
                _ => "no periods with data".to_owned(),
            }
        );
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>baton: escalations by {period}</title>\n<style>\n\
             body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}\n\
             svg {{ max-width: 100%; height: auto; display: block; margin: 1rem 0; }}\n\
             </style>\n</head>\n<body>\n<h1>Escalations by {period}</h1>\n<p>{summary}</p>\n\
             <p><a href=\"/reports?{switch}\">by {other}</a> · \
             <a href=\"/v1/reports/escalations?{query}&amp;format=json\">JSON</a> · \
             <a href=\"/v1/reports/escalations?{query}&amp;format=csv\">CSV</a></p>\n\
             {rate}\n{breakdown}\n</body>\n</html>\n",
            period = self.period.as_str(),
            other = other.as_str(),
            summary = escape(&summary),
            switch = escape(&switch.query()),
            query = escape(&query),
            rate = self.rate_svg(),
            breakdown = self.breakdown_svg(),
        )
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// Text made safe for SVG or HTML, in content and in quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A rate as a percentage, `12.5%`, `40%`.
fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// At most this many characters of a label are drawn; the whole is in its tooltip.
const LABEL_CHARS: usize = 24;

fn shorten(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        label.to_owned()
    } else {
        let mut short: String = label.chars().take(LABEL_CHARS - 1).collect();
        short.push('…');
        short
    }
}

const SVG_OPEN: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\"";
const CHART_WIDTH: f64 = 720.0;
/// Most period labels on the x axis; the others are left to the tooltips.
const X_LABELS: usize = 8;

fn rate_chart(report: &Report) -> String {
    let (width, height) = (CHART_WIDTH, 320.0);
    let (left, right, top, bottom) = (64.0, 24.0, 40.0, 56.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let mut svg = format!(
        "{SVG_OPEN} width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"escalation rate per {period}\">\n\
         <text x=\"{left}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Escalation rate per {period}</text>\n",
        period = report.period.as_str()
    );
    // The y axis reaches the highest rate, rounded up to a tenth (a rate may pass 100%
    // when calls of one period were escalated in the one before).
    let highest = report
        .periods
        .iter()
        .map(|p| p.tally.rate)
        .fold(0.0_f64, f64::max);
    let y_max = ((highest * 10.0).ceil() / 10.0).max(0.1);
    let y = |rate: f64| top + plot_h - rate / y_max * plot_h;
    const Y_TICKS: u32 = 5;
    for i in 0..=Y_TICKS {
        let rate = y_max * f64::from(i) / f64::from(Y_TICKS);
        let at = y(rate);
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
            left + plot_w,
            left - 6.0,
            at + 4.0,
            escape(&percent(rate))
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base:.1}\" stroke=\"#333\"/>\n\
         <line x1=\"{left}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#333\"/>\n\
         <text x=\"16\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 16 {:.1})\" \
         text-anchor=\"middle\">escalated / calls</text>\n",
        left + plot_w,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        base = top + plot_h
    );
    let n = report.periods.len();
    if n == 0 {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#666\">\
             No calls in this range</text>",
            left + plot_w / 2.0,
            top + plot_h / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }
    let x = |i: usize| left + plot_w * (i as f64 + 0.5) / n as f64;
    let every = n.div_ceil(X_LABELS);
    for (i, p) in report.periods.iter().enumerate() {
        let at = x(i);
        let base = top + plot_h;
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{base:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            base + 4.0
        );
        if i % every == 0 {
            let _ = writeln!(
                svg,
                "<text x=\"{at:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                base + 18.0,
                escape(&p.period)
            );
        }
    }
    let points: Vec<String> = (0..n)
        .map(|i| format!("{:.1},{:.1}", x(i), y(report.periods[i].tally.rate)))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"/>",
        points.join(" ")
    );
    for (i, p) in report.periods.iter().enumerate() {
        let t = &p.tally;
        let tip = format!(
            "{} {}: {} ({} of {} calls)",
            report.period.as_str(),
            p.period,
            percent(t.rate),
            t.escalated,
            t.calls
        );
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#c0392b\"><title>{}</title></circle>",
            x(i),
            y(t.rate),
            escape(&tip)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Most bars in one section; the rest are counted in a note.
const MAX_BARS: usize = 20;
const BAR_ROW: f64 = 22.0;

/// One bar: its label, its length and the text after it.
struct Bar {
    label: String,
    value: u64,
    note: String,
}

fn breakdown_chart(total: &Tally) -> String {
    let mut intents: Vec<Bar> = total
        .by_intent
        .iter()
        .map(|i| Bar {
            label: i.intent.clone(),
            value: i.escalated,
            note: format!("{} of {} calls ({})", i.escalated, i.calls, percent(i.rate)),
        })
        .collect();
    let mut reasons: Vec<Bar> = total
        .by_reason
        .iter()
        .map(|r| Bar {
            label: r.reason.clone(),
            value: r.escalated,
            note: format!("{} ({} of calls)", r.escalated, percent(r.share)),
        })
        .collect();
    for bars in [&mut intents, &mut reasons] {
        bars.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.label.cmp(&b.label)));
    }
    let section_height = |bars: &[Bar]| {
        let rows = bars.len().clamp(1, MAX_BARS) + usize::from(bars.len() > MAX_BARS);
        36.0 + rows as f64 * BAR_ROW
    };
    let height = 16.0 + section_height(&intents) + 16.0 + section_height(&reasons);
    let width = CHART_WIDTH;
    let mut svg = format!(
        "{SVG_OPEN} width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"escalations by intent and by reason\">\n"
    );
    let mut top = 16.0;
    for (title, bars) in [
        ("Escalations by intent", &intents),
        ("Escalations by reason", &reasons),
    ] {
        bar_section(&mut svg, title, bars, top);
        top += section_height(bars) + 16.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws one titled section of horizontal bars with its top at `top`.
fn bar_section(svg: &mut String, title: &str, bars: &[Bar], top: f64) {
    let (label_w, note_w) = (190.0, 170.0);
    let bar_w = CHART_WIDTH - label_w - note_w - 16.0;
    let _ = writeln!(
        svg,
        "<text x=\"8\" y=\"{:.1}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        top + 6.0,
        escape(title)
    );
    let rows_top = top + 20.0;
    if bars.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{label_w}\" y=\"{:.1}\" font-size=\"12\" fill=\"#666\">No escalations in this range</text>",
            rows_top + 15.0
        );
        return;
    }
    let longest = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    for (i, bar) in bars.iter().take(MAX_BARS).enumerate() {
        let y = rows_top + i as f64 * BAR_ROW;
        let len = bar_w * bar.value as f64 / longest as f64;
        let _ = writeln!(
            svg,
            "<g><title>{tip}</title>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"#2e86c1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{note}</text></g>",
            label_w - 8.0,
            y + 15.0,
            y + 3.0,
            BAR_ROW - 6.0,
            label_w + len + 6.0,
            y + 15.0,
            tip = escape(&format!("{}: {}", bar.label, bar.note)),
            label = escape(&shorten(&bar.label)),
            note = escape(&bar.note),
        );
    }
    if bars.len() > MAX_BARS {
        let _ = writeln!(
            svg,
            "<text x=\"{label_w}\" y=\"{:.1}\" font-size=\"12\" fill=\"#666\">and {} more (see the CSV)</text>",
            rows_top + MAX_BARS as f64 * BAR_ROW + 15.0,
            bars.len() - MAX_BARS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds since the epoch of a UTC date and hour.
    fn at(y: i64, m: u32, d: u32, hour: i64) -> u64 {
        (days_from_civil(y, m, d) * DAY_MS + hour * 3_600_000) as u64
    }

    fn call(ms: u64, intent: Option<&str>, bot: bool) -> CallRow {
        CallRow {
            ended_ms: ms,
            intent: intent.map(str::to_owned),
            bot,
        }
    }

    fn esc(ms: u64, intent: Option<&str>, reasons: &[&str]) -> EscalationRow {
        EscalationRow {
            decided_ms: ms,
            intent: intent.map(str::to_owned),
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    /// Four weeks around the end of November 2026: the week of 23 November, of 30
    /// November (which holds 1 December), nothing the week of 7 December, and the week of
    /// 14 December.
    fn corpus() -> Rows {
        Rows {
            calls: vec![
                call(at(2026, 11, 23, 9), Some("block_card"), true),
                call(at(2026, 11, 24, 10), Some("block_card"), true),
                call(at(2026, 11, 25, 11), Some("balance"), true),
                call(at(2026, 11, 29, 23), None, true),
                // Straight to an agent: not the bot's.
                call(at(2026, 11, 26, 12), Some("balance"), false),
                call(at(2026, 11, 30, 8), Some("dispute"), true),
                call(at(2026, 12, 1, 8), Some("balance"), true),
                call(at(2026, 12, 2, 8), Some("balance"), true),
                call(at(2026, 12, 16, 8), Some("dispute"), true),
            ],
            escalations: vec![
                esc(
                    at(2026, 11, 23, 9),
                    Some("block_card"),
                    &["policy_intent", "caller_request"],
                ),
                esc(at(2026, 11, 29, 23), None, &["sentiment", "sentiment"]),
                esc(at(2026, 11, 30, 8), Some("dispute"), &["caller_request"]),
                esc(
                    at(2026, 12, 1, 8),
                    Some("balance"),
                    &["no_match", "sentiment"],
                ),
                esc(at(2026, 12, 16, 8), Some("dispute"), &["caller_request"]),
            ],
        }
    }

    fn intent<'a>(t: &'a Tally, name: &str) -> &'a IntentTally {
        t.by_intent
            .iter()
            .find(|i| i.intent == name)
            .unwrap_or_else(|| panic!("no intent {name}: {:?}", t.by_intent))
    }

    fn reason(t: &Tally, code: &str) -> u64 {
        t.by_reason
            .iter()
            .find(|r| r.reason == code)
            .map_or(0, |r| r.escalated)
    }

    #[test]
    fn civil_dates_round_trip_and_follow_each_other() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(date(days_from_civil(2000, 2, 29)), "2000-02-29");
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        assert_eq!(date(day_of(1_795_000_000_000)), "2026-11-18");
        let mut prev = civil_from_days(-800_000);
        for day in -799_999..800_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            let next_day = (y, m, d) == (prev.0, prev.1, prev.2 + 1);
            let next_month = d == 1 && (y, m) == (prev.0, prev.1 + 1);
            let next_year = (m, d) == (1, 1) && (prev.0 + 1, prev.1, prev.2) == (y, 12, 31);
            assert!(
                next_day || next_month || next_year,
                "{prev:?} then {y}-{m}-{d}"
            );
            prev = (y, m, d);
        }
    }

    #[test]
    fn report_periods_start_on_monday_and_on_the_first_of_the_month() {
        let monday = days_from_civil(2026, 11, 23);
        for day in monday..monday + 7 {
            assert_eq!(Period::Week.label(Period::Week.start_of(day)), "2026-11-23");
        }
        assert_eq!(
            Period::Week.label(Period::Week.start_of(monday + 7)),
            "2026-11-30"
        );
        // The week of the epoch began on Monday 29 December 1969.
        assert_eq!(date(Period::Week.start_of(0)), "1969-12-29");
        assert_eq!(
            Period::Month.label(Period::Month.start_of(days_from_civil(2026, 12, 31))),
            "2026-12"
        );
        assert_eq!(
            date(Period::Month.next(days_from_civil(2026, 12, 1))),
            "2027-01-01"
        );
    }

    #[test]
    fn report_by_week_counts_calls_escalations_intents_and_reasons() {
        let r = report(Period::Week, Range::default(), &corpus()).unwrap();
        let labels: Vec<&str> = r.periods.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(
            labels,
            ["2026-11-23", "2026-11-30", "2026-12-07", "2026-12-14"]
        );

        let first = &r.periods[0];
        assert_eq!(first.start, "2026-11-23");
        assert_eq!(first.start_ms, at(2026, 11, 23, 0) as i64);
        assert_eq!(first.end_ms, at(2026, 11, 30, 0) as i64);
        let t = &first.tally;
        assert_eq!(
            (t.calls, t.escalated),
            (4, 2),
            "the agent-only call is not the bot's"
        );
        assert!((t.rate - 0.5).abs() < 1e-9);
        let block = intent(t, "block_card");
        assert_eq!((block.calls, block.escalated), (2, 1));
        assert!((block.rate - 0.5).abs() < 1e-9);
        let none = intent(t, NO_INTENT);
        assert_eq!((none.calls, none.escalated, none.rate), (1, 1, 1.0));
        assert_eq!(intent(t, "balance").escalated, 0);
        assert_eq!(reason(t, "sentiment"), 1, "listed twice, counted once");
        assert_eq!(reason(t, "caller_request"), 1);
        assert_eq!(reason(t, "policy_intent"), 1);
        let share = t
            .by_reason
            .iter()
            .find(|r| r.reason == "sentiment")
            .unwrap();
        assert!((share.share - 0.25).abs() < 1e-9);

        // 30 November to 6 December spans the month boundary: one week.
        let t = &r.periods[1].tally;
        assert_eq!((t.calls, t.escalated), (3, 2));
        assert_eq!(reason(t, "caller_request"), 1);
        assert_eq!(reason(t, "no_match"), 1);

        let empty = &r.periods[2].tally;
        assert_eq!(
            (empty.calls, empty.escalated, empty.rate),
            (0, 0, 0.0),
            "a week without calls is listed, with a rate of 0"
        );
        assert!(empty.by_intent.is_empty() && empty.by_reason.is_empty());

        assert_eq!((r.total.calls, r.total.escalated), (8, 5));
        assert_eq!(reason(&r.total, "caller_request"), 3);
        let dispute = intent(&r.total, "dispute");
        assert_eq!(
            (dispute.calls, dispute.escalated, dispute.rate),
            (2, 2, 1.0)
        );
        let names: Vec<&str> = r
            .total
            .by_intent
            .iter()
            .map(|i| i.intent.as_str())
            .collect();
        assert_eq!(names, ["balance", "block_card", "dispute", "none"]);
    }

    #[test]
    fn report_by_month_splits_at_the_month_boundary() {
        let r = report(Period::Month, Range::default(), &corpus()).unwrap();
        let got: Vec<(&str, &str, u64, u64)> = r
            .periods
            .iter()
            .map(|p| {
                (
                    p.period.as_str(),
                    p.start.as_str(),
                    p.tally.calls,
                    p.tally.escalated,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("2026-11", "2026-11-01", 5, 3),
                ("2026-12", "2026-12-01", 3, 2)
            ]
        );
        assert_eq!(r.periods[1].end_ms, at(2027, 1, 1, 0) as i64);
    }

    #[test]
    fn report_range_keeps_rows_inside_and_lists_its_empty_periods() {
        let range = Range {
            from_ms: Some(at(2026, 11, 30, 0)),
            to_ms: Some(at(2026, 12, 29, 0)),
        };
        let r = report(Period::Week, range, &corpus()).unwrap();
        let labels: Vec<&str> = r.periods.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2026-11-30",
                "2026-12-07",
                "2026-12-14",
                "2026-12-21",
                "2026-12-28"
            ]
        );
        assert_eq!((r.total.calls, r.total.escalated), (4, 3));
        assert_eq!(r.periods[4].tally.calls, 0);

        let end_exclusive = Range {
            from_ms: None,
            to_ms: Some(at(2026, 11, 30, 8)),
        };
        let r = report(Period::Week, end_exclusive, &corpus()).unwrap();
        assert_eq!(r.periods.last().unwrap().period, "2026-11-30");
        assert_eq!(r.periods.last().unwrap().tally.calls, 0, "to is exclusive");

        let empty = report(Period::Week, Range::default(), &Rows::default()).unwrap();
        assert!(empty.periods.is_empty());
        assert_eq!(empty.total, Tally::default());

        let huge = Range {
            from_ms: Some(0),
            to_ms: Some(i64::MAX as u64),
        };
        assert_eq!(
            report(Period::Month, huge, &corpus()),
            Err(ReportError::TooLong(Period::Month))
        );
    }

    #[test]
    fn report_request_names_the_bad_parameter() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ok = Request::parse(
            &params(&[
                ("period", "month"),
                ("from", "5"),
                ("to", "9"),
                ("format", "csv"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(ok.period, Period::Month);
        assert_eq!(
            ok.range,
            Range {
                from_ms: Some(5),
                to_ms: Some(9)
            }
        );
        assert_eq!(ok.format, Format::Csv);
        let default = Request::parse(&[], true).unwrap();
        assert_eq!(
            (default.period, default.format),
            (Period::Week, Format::Json)
        );

        for (pairs, formats, name) in [
            (&[("period", "day")][..], true, "period:"),
            (&[("from", "yesterday")][..], true, "from:"),
            (&[("to", "-1")][..], true, "to:"),
            (&[("from", "9"), ("to", "9")][..], true, "to:"),
            (&[("format", "xml")][..], true, "format:"),
            (&[("format", "csv")][..], false, "format:"),
            (&[("colour", "red")][..], true, "colour:"),
            (
                &[("period", "week"), ("period", "month")][..],
                true,
                "period:",
            ),
        ] {
            let err = Request::parse(&params(pairs), formats).unwrap_err();
            assert!(err.starts_with(name), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn report_csv_has_total_intent_and_reason_rows_quoted_when_needed() {
        let mut rows = corpus();
        rows.calls.push(call(
            at(2026, 11, 24, 0),
            Some("card, \"lost\"\nor stolen"),
            true,
        ));
        let r = report(Period::Week, Range::default(), &rows).unwrap();
        let csv = r.to_csv();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "2026-11-23,2026-11-23,total,,5,2,0.4000");
        assert!(csv.contains("\r\n2026-11-23,2026-11-23,intent,block_card,2,1,0.5000\r\n"));
        assert!(csv.contains("\r\n2026-11-23,2026-11-23,intent,none,1,1,1.0000\r\n"));
        assert!(csv.contains("\r\n2026-11-23,2026-11-23,reason,sentiment,5,1,0.2000\r\n"));
        assert!(
            csv.contains(
                "\r\n2026-11-23,2026-11-23,intent,\"card, \"\"lost\"\"\nor stolen\",1,0,0.0000\r\n"
            ),
            "{csv}"
        );
        assert!(csv.contains("\r\n2026-12-07,2026-12-07,total,,0,0,0.0000\r\n"));
        assert!(csv.ends_with("\r\n"));
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a\rb"), "\"a\rb\"");
    }

    /// Checks that `doc` is well-formed enough: every tag closed in order, quoted
    /// attributes, no `<` or bare `&` in text. There is no XML crate to ask.
    fn check_xml(doc: &str) -> Result<(), String> {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = doc;
        let entity_ok = |text: &str| {
            text.match_indices('&').all(|(i, _)| {
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| text[i..].starts_with(e))
            })
        };
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            if text.contains('>') || !entity_ok(text) {
                return Err(format!("bad text {text:?}"));
            }
            let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if tag.contains('<') || !tag.matches('"').count().is_multiple_of(2) || !entity_ok(tag) {
                return Err(format!("bad tag <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name => {}
                    o => return Err(format!("</{name}> closes {o:?}")),
                }
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().ok_or("empty tag")?);
            }
        }
        if !rest.trim().is_empty() || !open.is_empty() {
            return Err(format!("unclosed {open:?}, trailing {rest:?}"));
        }
        Ok(())
    }

    #[test]
    fn report_svg_is_well_formed_with_every_text_escaped() {
        let mut rows = corpus();
        let nasty = "<script>alert('x')</script> & \"more\"";
        rows.calls
            .push(call(at(2026, 11, 24, 0), Some(nasty), true));
        rows.escalations
            .push(esc(at(2026, 11, 24, 0), Some(nasty), &["</text><b>"]));
        let r = report(Period::Week, Range::default(), &rows).unwrap();
        for svg in [r.rate_svg(), r.breakdown_svg()] {
            assert!(
                svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{svg}"
            );
            assert!(svg.trim_end().ends_with("</svg>"));
            check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
            assert!(!svg.contains("<script") && !svg.contains("<b>"), "{svg}");
        }
        let bars = r.breakdown_svg();
        assert!(bars.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{bars}");
        assert!(bars.contains("&lt;/text&gt;&lt;b&gt;"), "{bars}");
        let rate = r.rate_svg();
        assert!(rate.contains(">2026-11-23</text>"), "{rate}");
        assert!(rate.contains("<polyline"), "{rate}");
        assert!(
            rate.contains(">0%</text>") && rate.contains(">100%</text>"),
            "{rate}"
        );

        let page = r.page(&Request {
            period: Period::Week,
            range: Range {
                from_ms: Some(1),
                to_ms: None,
            },
            format: Format::Json,
        });
        check_xml(&page.replace("<meta charset=\"utf-8\">", ""))
            .unwrap_or_else(|e| panic!("{e}\n{page}"));
        assert!(
            page.contains("href=\"/v1/reports/escalations?period=week&amp;from=1&amp;format=csv\"")
        );
        assert!(page.contains("href=\"/reports?period=month&amp;from=1\""));

        let empty = report(Period::Month, Range::default(), &Rows::default()).unwrap();
        for svg in [empty.rate_svg(), empty.breakdown_svg()] {
            check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        }
        assert!(empty.rate_svg().contains("No calls in this range"));
    }

    #[test]
    fn report_breakdown_caps_its_bars() {
        let rows = Rows {
            calls: Vec::new(),
            escalations: (0..MAX_BARS + 3)
                .map(|i| {
                    esc(
                        at(2026, 1, 5, 0),
                        Some(&format!("intent_{i:02}")),
                        &["sentiment"],
                    )
                })
                .collect(),
        };
        let r = report(Period::Week, Range::default(), &rows).unwrap();
        let svg = r.breakdown_svg();
        check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.contains("and 3 more (see the CSV)"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), MAX_BARS + 1);
        assert_eq!(r.total.rate, 0.0, "escalations without calls: a rate of 0");
    }

    #[test]
    fn report_json_has_flat_periods() {
        let r = report(Period::Week, Range::default(), &corpus()).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["period"], "week");
        assert_eq!(json["periods"][0]["period"], "2026-11-23");
        assert_eq!(json["periods"][0]["calls"], 4);
        assert_eq!(json["periods"][0]["by_intent"][0]["intent"], "balance");
        assert_eq!(json["total"]["by_reason"][0]["reason"], "caller_request");
        assert_eq!(json["from_ms"], serde_json::Value::Null);
    }
}
