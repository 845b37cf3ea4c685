//! Known events and intents: demand changes that someone declared ahead of
//! time, applied to forecasts, and learned from once they have happened.
//!
//! - An [`Event`] affects the workloads its [`Selector`] matches (globs on the
//!   host and workload names, and labels), for one resource or all of them,
//!   during the windows of its [`Schedule`]: once (`[start, end)`), or
//!   recurring (a 5-field [`CronSpec`] in UTC giving the window starts, and a
//!   duration). Its [`Effect`] multiplies demand or adds to it (in the
//!   resource's unit).
//! - An [`Intent`] is a one-off event announced at run time ("batch import
//!   starts at 02:00 for 2 h, x3 CPU", "video edit starting now").
//! - A [`Calendar`] holds the events and what has been learned about them,
//!   answers which events are active for a series at a time
//!   ([`Calendar::active`]), and shifts a forecast's quantile table for them
//!   ([`Calendar::apply`]).
//! - An [`EffectLearner`] watches actual demand against the forecast without
//!   the event while a window is open, and when it closes updates the
//!   effect the calendar applies for that event and series (declared and
//!   learned stay visible side by side, see [`LearnedEffect`]).
//!
//! The store keeps events in its `events` table (kind, selector, start, end,
//! effect JSON); [`Event::to_stored`] and [`Event::from_stored`] convert, and
//! the effect JSON is documented at [`Event::to_stored`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use prescient_core::{Resource, SeriesKey, TimestampMs};
use serde::{Deserialize, Serialize};

/// An event's id: the store's row id for stored events.
pub type EventId = i64;

/// A workload's labels (as the store keeps them).
pub type Labels = BTreeMap<String, String>;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const MINUTES_PER_DAY: i64 = 1440;

// ---------------------------------------------------------------------------
// Cron

/// What is wrong with one field of a cron spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// A value that is neither a number nor a known name.
    #[error("'{0}' is not a number")]
    NotANumber(String),
    /// A value outside the field's range.
    #[error("'{token}' is outside {min}-{max}")]
    OutOfRange {
        /// The value as written.
        token: String,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// A range whose end is below its start.
    #[error("range '{0}' runs backwards")]
    Backwards(String),
    /// A step that is not a number of at least 1.
    #[error("step in '{0}' must be a number of at least 1")]
    BadStep(String),
    /// An empty item in a list (`1,,2`) or an empty field.
    #[error("empty item in '{0}'")]
    EmptyItem(String),
}

/// A cron spec that does not parse, or can never fire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing but blanks.
    #[error(
        "cron spec is empty: expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily"
    )]
    Empty,
    /// Not 5 fields.
    #[error(
        "cron spec '{spec}' has {found} field(s): expected 5 (minute hour day-of-month month day-of-week)"
    )]
    FieldCount {
        /// The spec as given.
        spec: String,
        /// How many fields it has.
        found: usize,
    },
    /// An `@` macro that is not one of the known ones.
    #[error(
        "unknown cron macro '{0}' (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
    )]
    UnknownMacro(String),
    /// A field that does not parse.
    #[error("cron field {field} ({name}): {problem}")]
    Field {
        /// Its position, from 1.
        field: usize,
        /// Its name (`minute`, `hour`, `day-of-month`, `month`, `day-of-week`).
        name: &'static str,
        /// What is wrong.
        problem: FieldProblem,
    },
    /// Days of the month that no allowed month has (`0 0 30 2 *`).
    #[error("cron spec '{0}' never fires: none of its months has any of its days of the month")]
    Never(String),
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for the values from `min` on (months, days of the week).
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

/// A parsed 5-field cron spec, in UTC: `minute hour day-of-month month
/// day-of-week`.
///
/// Each field is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or
/// `a/n` (from `a` to the field's end), or a comma-separated list of these.
/// Months and days of the week may be given by their English three-letter
/// names (`jan`, `mon`, any case); day of week 0 and 7 are both Sunday. The
/// macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
/// (`@midnight`) and `@hourly` stand for their usual specs.
///
/// As in Vixie cron, when both the day of the month and the day of the week
/// are restricted (neither field starts with `*`), a day matches if either
/// matches (`0 9 1 * mon`: the 1st of each month and every Monday);
/// otherwise both must.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSpec {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    dom_restricted: bool,
    dow_restricted: bool,
}

impl CronSpec {
    /// Parses a spec; errors name the field and the bad token.
    pub fn parse(spec: &str) -> Result<CronSpec, CronError> {
        let text = spec.trim();
        if text.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if let Some(name) = text.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownMacro(text.to_string())),
            }
        } else {
            text
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount {
                spec: text.to_string(),
                found: fields.len(),
            });
        }
        let mut bits = [0u64; 5];
        for (i, (field, text)) in FIELDS.iter().zip(&fields).enumerate() {
            bits[i] = parse_field(field, text).map_err(|problem| CronError::Field {
                field: i + 1,
                name: field.name,
                problem,
            })?;
        }
        // Day of week 7 is Sunday, like 0.
        let weekdays = (bits[4] | (bits[4] >> 7)) & 0x7f;
        let cron = CronSpec {
            source: text.to_string(),
            minutes: bits[0],
            hours: bits[1],
            days: bits[2],
            months: bits[3],
            weekdays,
            dom_restricted: !fields[2].starts_with('*'),
            dow_restricted: !fields[4].starts_with('*'),
        };
        // Only a restricted day of the month combined with an unrestricted
        // day of the week can rule out every day (a `*/n` day of the month
        // always holds the 1st, which falls on every weekday some month).
        if cron.dom_restricted && !cron.dow_restricted {
            let possible = (1..=12u32)
                .filter(|&m| cron.months & (1 << m) != 0)
                .any(|m| (1..=max_days_in_month(m)).any(|d| cron.days & (1 << d) != 0));
            if !possible {
                return Err(CronError::Never(text.to_string()));
            }
        }
        Ok(cron)
    }

    /// The spec as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the spec fires in the minute that holds `ts`.
    pub fn matches(&self, ts: TimestampMs) -> bool {
        let minute = ts.div_euclid(MINUTE_MS);
        let day = minute.div_euclid(MINUTES_PER_DAY);
        let of_day = minute.rem_euclid(MINUTES_PER_DAY);
        let (_, m, d) = civil_from_days(day);
        self.months & (1 << m) != 0
            && self.day_matches(d, weekday(day))
            && self.hours & (1 << (of_day / 60)) != 0
            && self.minutes & (1 << (of_day % 60)) != 0
    }

    /// The first time the spec fires at or after `ts` (always on a whole
    /// minute), or `None` if that is beyond the range of a timestamp.
    pub fn next_at_or_after(&self, ts: TimestampMs) -> Option<TimestampMs> {
        // Round up to a whole minute.
        let mut minute = ts.div_euclid(MINUTE_MS) + i64::from(ts.rem_euclid(MINUTE_MS) != 0);
        let mut day = minute.div_euclid(MINUTES_PER_DAY);
        minute = minute.rem_euclid(MINUTES_PER_DAY);
        // The Gregorian calendar repeats every 400 years (a whole number of
        // weeks), so a spec that fires at all fires within that many years:
        // at most 12 month jumps and 372 day steps a year.
        for _ in 0..400 * 384 {
            let (y, m, d) = civil_from_days(day);
            if self.months & (1 << m) == 0 {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                day = days_from_civil(ny, nm, 1);
                minute = 0;
                continue;
            }
            if self.day_matches(d, weekday(day))
                && let Some(at) = self.first_minute_from(minute)
            {
                return day
                    .checked_mul(MINUTES_PER_DAY)?
                    .checked_add(at)?
                    .checked_mul(MINUTE_MS);
            }
            day += 1;
            minute = 0;
        }
        None
    }

    fn day_matches(&self, day_of_month: u32, weekday: u32) -> bool {
        let dom = self.days & (1 << day_of_month) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first firing minute of a day at or after minute `from` of it.
    fn first_minute_from(&self, from: i64) -> Option<i64> {
        let (h0, m0) = (from / 60, from % 60);
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let start = if h == h0 { m0 } else { 0 };
            let rest = self.minutes >> start;
            if rest != 0 {
                return Some(h * 60 + start + i64::from(rest.trailing_zeros()));
            }
        }
        None
    }
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSpec({:?})", self.source)
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for CronSpec {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSpec::parse(s)
    }
}

impl TryFrom<String> for CronSpec {
    type Error = CronError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        CronSpec::parse(&s)
    }
}

impl From<CronSpec> for String {
    fn from(c: CronSpec) -> String {
        c.source
    }
}

/// The set of values a field allows, as bits.
fn parse_field(spec: &FieldSpec, text: &str) -> Result<u64, FieldProblem> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(FieldProblem::EmptyItem(text.to_string()));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| FieldProblem::BadStep(item.to_string()))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (lo, hi) = (field_value(spec, a)?, field_value(spec, b)?);
            if hi < lo {
                return Err(FieldProblem::Backwards(range.to_string()));
            }
            (lo, hi)
        } else {
            let v = field_value(spec, range)?;
            // `a/n` runs from `a` to the end of the field.
            (v, if step.is_some() { spec.max } else { v })
        };
        let step = step.unwrap_or(1) as usize;
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn field_value(spec: &FieldSpec, token: &str) -> Result<u32, FieldProblem> {
    if token.is_empty() {
        return Err(FieldProblem::EmptyItem(token.to_string()));
    }
    let out_of_range = || FieldProblem::OutOfRange {
        token: token.to_string(),
        min: spec.min,
        max: spec.max,
    };
    if token.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too long for a u32 is out of range, not "not a number".
        let v: u32 = token.parse().map_err(|_| out_of_range())?;
        return if (spec.min..=spec.max).contains(&v) {
            Ok(v)
        } else {
            Err(out_of_range())
        };
    }
    let lower = token.to_ascii_lowercase();
    spec.names
        .iter()
        .position(|n| *n == lower)
        .map(|i| spec.min + i as u32)
        .ok_or_else(|| FieldProblem::NotANumber(token.to_string()))
}

fn max_days_in_month(m: u32) -> u32 {
    match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week of a day counted from 1970-01-01 (a Thursday): 0 = Sunday.
fn weekday(day: i64) -> u32 {
    (day + 4).rem_euclid(7) as u32
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------
// Selectors

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Nothing but blanks.
    #[error("selector is empty: use '*' to select every workload")]
    Empty,
    /// An empty term (`a,,b`, a trailing comma).
    #[error("selector '{selector}': term {term} is empty")]
    EmptyTerm {
        /// The selector as given.
        selector: String,
        /// The term's position, from 1.
        term: usize,
    },
    /// `key=` or `=value`.
    #[error("selector '{selector}': term {term} '{text}' needs both a key and a value")]
    Incomplete {
        /// The selector as given.
        selector: String,
        /// The term's position, from 1.
        term: usize,
        /// The term.
        text: String,
    },
    /// A key with blanks in it.
    #[error("selector '{selector}': term {term}: key '{key}' must not contain blanks")]
    BadKey {
        /// The selector as given.
        selector: String,
        /// The term's position, from 1.
        term: usize,
        /// The key.
        key: String,
    },
    /// The same key twice.
    #[error("selector '{selector}': '{key}' is given twice")]
    Duplicate {
        /// The selector as given.
        selector: String,
        /// The repeated key (`host`, `workload`, or a label).
        key: String,
    },
}

/// Which workloads an event affects: comma-separated terms, all of which
/// must match.
///
/// - `host=GLOB`: the host name;
/// - `workload=GLOB`, or a bare `GLOB`: the workload name;
/// - `KEY=GLOB`: the workload's label `KEY` (`label.KEY=GLOB` for a label
///   named `host` or `workload`).
///
/// A glob matches the whole name, `*` standing for any run of characters
/// and `?` for one; there is no escape. `*` alone selects every workload.
/// Example: `host=web-*,batch-?,env=prod`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector {
    source: String,
    host: Option<Glob>,
    workload: Option<Glob>,
    labels: Vec<(String, Glob)>,
}

impl Selector {
    /// Every workload.
    pub fn all() -> Selector {
        Selector {
            source: "*".into(),
            host: None,
            workload: Some(Glob::new("*")),
            labels: Vec::new(),
        }
    }

    /// Parses a selector; errors name the term at fault.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let source = text.trim();
        if source.is_empty() {
            return Err(SelectorError::Empty);
        }
        let mut sel = Selector {
            source: source.to_string(),
            host: None,
            workload: None,
            labels: Vec::new(),
        };
        let duplicate = |key: &str| SelectorError::Duplicate {
            selector: source.to_string(),
            key: key.to_string(),
        };
        for (i, term) in source.split(',').enumerate() {
            let term_no = i + 1;
            let term = term.trim();
            if term.is_empty() {
                return Err(SelectorError::EmptyTerm {
                    selector: source.to_string(),
                    term: term_no,
                });
            }
            let Some((key, value)) = term.split_once('=') else {
                if sel.workload.is_some() {
                    return Err(duplicate("workload"));
                }
                sel.workload = Some(Glob::new(term));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(SelectorError::Incomplete {
                    selector: source.to_string(),
                    term: term_no,
                    text: term.to_string(),
                });
            }
            if key.chars().any(char::is_whitespace) {
                return Err(SelectorError::BadKey {
                    selector: source.to_string(),
                    term: term_no,
                    key: key.to_string(),
                });
            }
            let slot = match key {
                "host" => &mut sel.host,
                "workload" => &mut sel.workload,
                _ => {
                    let label = key.strip_prefix("label.").unwrap_or(key);
                    if label.is_empty() {
                        return Err(SelectorError::Incomplete {
                            selector: source.to_string(),
                            term: term_no,
                            text: term.to_string(),
                        });
                    }
                    if sel.labels.iter().any(|(k, _)| k == label) {
                        return Err(duplicate(label));
                    }
                    sel.labels.push((label.to_string(), Glob::new(value)));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(duplicate(key));
            }
            *slot = Some(Glob::new(value));
        }
        Ok(sel)
    }

    /// Whether the workload `workload` on `host`, with `labels`, is selected.
    pub fn matches(&self, host: &str, workload: &str, labels: &Labels) -> bool {
        self.host.as_ref().is_none_or(|g| g.matches(host))
            && self.workload.as_ref().is_none_or(|g| g.matches(workload))
            && self
                .labels
                .iter()
                .all(|(k, g)| labels.get(k).is_some_and(|v| g.matches(v)))
    }

    /// Whether the series' workload is selected.
    pub fn matches_key(&self, key: &SeriesKey, labels: &Labels) -> bool {
        self.matches(&key.host.0, &key.workload.0, labels)
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({:?})", self.source)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl TryFrom<String> for Selector {
    type Error = SelectorError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Selector::parse(&s)
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.source
    }
}

/// A glob over whole names: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(Vec<char>);

impl Glob {
    fn new(pattern: &str) -> Glob {
        Glob(pattern.chars().collect())
    }

    fn matches(&self, text: &str) -> bool {
        let p = &self.0;
        if p.len() == 1 && p[0] == '*' {
            return true;
        }
        if !p.iter().any(|&c| c == '*' || c == '?') {
            return text.chars().eq(p.iter().copied());
        }
        let t: Vec<char> = text.chars().collect();
        // Greedy matching that backtracks to the last `*` only: linear in
        // practice, O(len(p) * len(t)) at worst.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

// ---------------------------------------------------------------------------
// Events

/// What an event does to demand while it is active.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Demand times this factor (>= 0).
    Multiply(f64),
    /// Demand plus this amount, in the resource's unit (may be negative;
    /// demand stays >= 0).
    Add(f64),
}

impl Effect {
    fn problem(&self) -> Option<String> {
        match *self {
            Effect::Multiply(f) if !(f.is_finite() && f >= 0.0) => {
                Some(format!("multiply factor {f} must be a finite number >= 0"))
            }
            Effect::Add(x) if !x.is_finite() => Some(format!("add amount {x} must be finite")),
            _ => None,
        }
    }

    fn same_kind(&self, other: &Effect) -> bool {
        matches!(
            (self, other),
            (Effect::Multiply(_), Effect::Multiply(_)) | (Effect::Add(_), Effect::Add(_))
        )
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Effect::Multiply(x) => write!(f, "x{}", round_sig(x)),
            Effect::Add(x) if x >= 0.0 => write!(f, "+{}", round_sig(x)),
            Effect::Add(x) => write!(f, "{}", round_sig(x)),
        }
    }
}

/// `x` rounded to 3 significant digits, for messages.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// When an event is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Once, during `[start, end)`.
    Once {
        /// When it starts.
        start: TimestampMs,
        /// When it ends (exclusive).
        end: TimestampMs,
    },
    /// From each time the cron spec fires, for `duration_ms`; only
    /// occurrences that start in `[from, until)` count.
    Recurring {
        /// When occurrences start (UTC).
        cron: CronSpec,
        /// How long each occurrence lasts (> 0).
        duration_ms: i64,
        /// No occurrence starts before this, if set.
        from: Option<TimestampMs>,
        /// No occurrence starts at or after this, if set.
        until: Option<TimestampMs>,
    },
}

/// A known change in demand: who it affects, when, and how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its id (the store's row id for stored events).
    pub id: EventId,
    /// A name for people ("nightly batch import").
    pub name: String,
    /// What kind of event (`release`, `sale`, `maintenance`, `intent`, ...).
    pub kind: String,
    /// Which workloads it affects.
    pub selector: Selector,
    /// The resource it affects; all of them if `None` (only for [`Effect::Multiply`]).
    pub resource: Option<Resource>,
    /// When it is active.
    pub schedule: Schedule,
    /// What it does to demand, as declared.
    pub effect: Effect,
    /// When it was cancelled: not active from then on.
    pub cancelled_at: Option<TimestampMs>,
}

/// An event that is not valid, or a stored event that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// A field with a value that cannot work.
    #[error("event {id} '{name}': {field}: {problem}")]
    Invalid {
        /// The event's id.
        id: EventId,
        /// Its name.
        name: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A cron spec that does not parse.
    #[error("event {id} '{name}': {source}")]
    Cron {
        /// The event's id.
        id: EventId,
        /// Its name.
        name: String,
        /// The parse error.
        source: CronError,
    },
    /// A selector that does not parse.
    #[error("event {id} '{name}': {source}")]
    Selector {
        /// The event's id.
        id: EventId,
        /// Its name.
        name: String,
        /// The parse error.
        source: SelectorError,
    },
    /// The effect JSON of a stored event does not describe an effect.
    #[error("event row {id}: effect JSON: {problem}")]
    StoredEffect {
        /// The row id.
        id: EventId,
        /// What is wrong.
        problem: String,
    },
}

impl Event {
    /// Checks the event: the schedule's times, the effect's numbers, and
    /// that an additive effect names its resource.
    pub fn validate(&self) -> Result<(), EventError> {
        let invalid = |field: &'static str, problem: String| EventError::Invalid {
            id: self.id,
            name: self.name.clone(),
            field,
            problem,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        match &self.schedule {
            Schedule::Once { start, end } if end < start => {
                return Err(invalid(
                    "schedule",
                    format!("ends ({end} ms) before it starts ({start} ms)"),
                ));
            }
            Schedule::Recurring { duration_ms, .. } if *duration_ms <= 0 => {
                return Err(invalid(
                    "duration_ms",
                    format!("{duration_ms} ms: an occurrence must last more than 0 ms"),
                ));
            }
            Schedule::Recurring {
                from: Some(from),
                until: Some(until),
                ..
            } if until < from => {
                return Err(invalid(
                    "until",
                    format!("{until} ms is before from ({from} ms)"),
                ));
            }
            _ => {}
        }
        if let Some(problem) = self.effect.problem() {
            return Err(invalid("effect", problem));
        }
        if matches!(self.effect, Effect::Add(_)) && self.resource.is_none() {
            return Err(invalid(
                "resource",
                "an additive effect is in the resource's unit, so the event must name its resource"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the event concerns this series (selector and resource).
    pub fn selects(&self, key: &SeriesKey, labels: &Labels) -> bool {
        self.resource.is_none_or(|r| r == key.resource) && self.selector.matches_key(key, labels)
    }

    /// The window `[start, end)` of the occurrence active at `ts`, if any
    /// (for overlapping occurrences of a recurring event, the earliest).
    pub fn window_at(&self, ts: TimestampMs) -> Option<(TimestampMs, TimestampMs)> {
        if self.cancelled_at.is_some_and(|c| ts >= c) {
            return None;
        }
        match &self.schedule {
            Schedule::Once { start, end } => (*start <= ts && ts < *end).then_some((*start, *end)),
            Schedule::Recurring {
                cron,
                duration_ms,
                from,
                until,
            } => {
                let earliest = ts.saturating_sub(duration_ms.saturating_sub(1));
                let s = cron.next_at_or_after(from.map_or(earliest, |f| earliest.max(f)))?;
                (s <= ts && until.is_none_or(|u| s < u))
                    .then_some((s, s.saturating_add(*duration_ms)))
            }
        }
    }

    /// The windows during which the event is active that overlap
    /// `[from, to)`, in order, overlapping occurrences merged and cut at the
    /// cancellation. Lazy: the cost is in the windows read.
    pub fn windows(&self, from: TimestampMs, to: TimestampMs) -> Windows<'_> {
        let to = self.cancelled_at.map_or(to, |c| to.min(c));
        let cursor = match &self.schedule {
            Schedule::Once { .. } => from,
            Schedule::Recurring {
                duration_ms,
                from: valid_from,
                ..
            } => {
                let earliest = from.saturating_sub(duration_ms.saturating_sub(1));
                valid_from.map_or(earliest, |f| earliest.max(f))
            }
        };
        Windows {
            event: self,
            from,
            to,
            cursor: Some(cursor),
            budget: WINDOW_LOOKUP_BUDGET,
        }
    }

    /// The fields of the store's `events` row for this event (see the
    /// store's `NewEvent`; `created_by` and `created_at` are the caller's).
    ///
    /// The `effect` JSON holds what the other columns do not:
    ///
    /// ```json
    /// {"name": "nightly batch", "resource": "cpu", "multiply": 1.5,
    ///  "cron": "0 2 * * *", "duration_ms": 3600000}
    /// ```
    ///
    /// with exactly one of `multiply` and `add`; `name` (default: the kind),
    /// `resource` (default: all) and the pair `cron` + `duration_ms` (a
    /// recurring event) may be left out. A one-off event's window is the
    /// row's `start`/`end`; a recurring event's `start`/`end` bound when its
    /// occurrences may start (`i64::MIN`/`i64::MAX` when unbounded, so that
    /// the store's time-range query always returns it).
    pub fn to_stored(&self) -> StoredEvent {
        let mut details = StoredDetails {
            name: Some(self.name.clone()),
            resource: self.resource,
            multiply: None,
            add: None,
            cron: None,
            duration_ms: None,
        };
        match self.effect {
            Effect::Multiply(f) => details.multiply = Some(f),
            Effect::Add(x) => details.add = Some(x),
        }
        let (start, end) = match &self.schedule {
            Schedule::Once { start, end } => (*start, *end),
            Schedule::Recurring {
                cron,
                duration_ms,
                from,
                until,
            } => {
                details.cron = Some(cron.as_str().to_string());
                details.duration_ms = Some(*duration_ms);
                (from.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX))
            }
        };
        StoredEvent {
            kind: self.kind.clone(),
            selector: self.selector.as_str().to_string(),
            start,
            end,
            // Serialising a struct of strings and numbers cannot fail; a
            // non-finite number (which `validate` refuses) would become null.
            effect: serde_json::to_value(&details).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The event of a store row (see [`Event::to_stored`] for the effect
    /// JSON), checked with [`Event::validate`].
    pub fn from_stored(
        id: EventId,
        stored: &StoredEvent,
        cancelled_at: Option<TimestampMs>,
    ) -> Result<Event, EventError> {
        let bad = |problem: String| EventError::StoredEffect { id, problem };
        let details = StoredDetails::deserialize(&stored.effect).map_err(|e| bad(e.to_string()))?;
        let name = details.name.clone().unwrap_or_else(|| stored.kind.clone());
        let effect = match (details.multiply, details.add) {
            (Some(f), None) => Effect::Multiply(f),
            (None, Some(x)) => Effect::Add(x),
            _ => {
                return Err(bad(
                    "must hold exactly one of \"multiply\" and \"add\"".into()
                ));
            }
        };
        let schedule = match (details.cron, details.duration_ms) {
            (None, None) => Schedule::Once {
                start: stored.start,
                end: stored.end,
            },
            (Some(cron), Some(duration_ms)) => Schedule::Recurring {
                cron: CronSpec::parse(&cron).map_err(|source| EventError::Cron {
                    id,
                    name: name.clone(),
                    source,
                })?,
                duration_ms,
                from: (stored.start != i64::MIN).then_some(stored.start),
                until: (stored.end != i64::MAX).then_some(stored.end),
            },
            _ => {
                return Err(bad(
                    "\"cron\" and \"duration_ms\" go together: give both or neither".into(),
                ));
            }
        };
        let selector =
            Selector::parse(&stored.selector).map_err(|source| EventError::Selector {
                id,
                name: name.clone(),
                source,
            })?;
        let event = Event {
            id,
            name,
            kind: stored.kind.clone(),
            selector,
            resource: details.resource,
            schedule,
            effect,
            cancelled_at,
        };
        event.validate()?;
        Ok(event)
    }
}

/// The columns of the store's `events` row that describe an event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// `kind`.
    pub kind: String,
    /// `selector`: a [`Selector`].
    pub selector: String,
    /// `start_ms`.
    pub start: TimestampMs,
    /// `end_ms`.
    pub end: TimestampMs,
    /// `effect`: see [`Event::to_stored`].
    pub effect: serde_json::Value,
}

/// The store's `effect` JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multiply: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    add: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
}

/// The active windows of an event over a range: see [`Event::windows`].
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    event: &'a Event,
    from: TimestampMs,
    to: TimestampMs,
    /// Where to look for the next occurrence; `None` when done.
    cursor: Option<TimestampMs>,
    /// Cron look-ups left.
    budget: u32,
}

/// The most occurrences [`Event::windows`] looks up: a horizon of a week
/// of an every-minute event takes 10,080. A range that holds more (a
/// minutely event over months) is cut short rather than taking unbounded
/// time: the windows after the cut are not returned.
pub const WINDOW_LOOKUP_BUDGET: u32 = 20_000;

impl Iterator for Windows<'_> {
    type Item = (TimestampMs, TimestampMs);

    fn next(&mut self) -> Option<Self::Item> {
        let cursor = self.cursor.take()?;
        let (start, end) = match &self.event.schedule {
            Schedule::Once { start, end } => (*start, *end),
            Schedule::Recurring {
                cron,
                duration_ms,
                until,
                ..
            } => {
                let starts_ok = |s: TimestampMs| s < self.to && until.is_none_or(|u| s < u);
                if self.budget == 0 {
                    return None;
                }
                self.budget -= 1;
                let start = cron.next_at_or_after(cursor).filter(|&s| starts_ok(s))?;
                let mut end = start.saturating_add(*duration_ms);
                // Merge the occurrences that start before this one ends.
                let mut next = None;
                if self.budget > 0 {
                    self.budget -= 1;
                    next = start.checked_add(1).and_then(|t| cron.next_at_or_after(t));
                }
                while let Some(n) = next.filter(|&n| n <= end && starts_ok(n)) {
                    end = end.max(n.saturating_add(*duration_ms));
                    next = None;
                    if self.budget > 0 {
                        self.budget -= 1;
                        next = n.checked_add(1).and_then(|t| cron.next_at_or_after(t));
                    }
                }
                // Out of budget, `next` is `None` and the iteration ends
                // after this window (never with an overlapping one).
                self.cursor = next;
                (start, end)
            }
        };
        let end = self.event.cancelled_at.map_or(end, |c| end.min(c));
        if start >= self.to || end <= self.from || end <= start {
            self.cursor = None;
            return None;
        }
        Some((start, end))
    }
}

// ---------------------------------------------------------------------------
// Intents

/// When an intent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStart {
    /// When it is announced.
    Now,
    /// At a given time.
    At(TimestampMs),
    /// At the next time the UTC clock shows `hour:minute` (now included).
    NextTimeOfDay {
        /// 0-23.
        hour: u32,
        /// 0-59.
        minute: u32,
    },
}

/// A one-off event announced at run time: "batch import starts at 02:00 for
/// 2 h, x3 CPU", "video edit starting now, +4 GiB memory for 1 h".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// A name for people.
    pub name: String,
    /// Which workloads it affects.
    pub selector: Selector,
    /// The resource it affects; all of them if `None` (multiply only).
    pub resource: Option<Resource>,
    /// When it starts.
    pub start: IntentStart,
    /// How long it lasts.
    pub duration_ms: i64,
    /// What it does to demand.
    pub effect: Effect,
}

impl Intent {
    /// The one-off event this intent announces at `now`, with `id`.
    pub fn to_event(&self, id: EventId, now: TimestampMs) -> Result<Event, EventError> {
        let invalid = |field: &'static str, problem: String| EventError::Invalid {
            id,
            name: self.name.clone(),
            field,
            problem,
        };
        let start = match self.start {
            IntentStart::Now => now,
            IntentStart::At(ts) => ts,
            IntentStart::NextTimeOfDay { hour, minute } => {
                if hour > 23 || minute > 59 {
                    return Err(invalid(
                        "start",
                        format!("{hour:02}:{minute:02} is not a time of day (00:00 to 23:59)"),
                    ));
                }
                let of_day = i64::from(hour * 60 + minute) * MINUTE_MS;
                let today = now
                    .div_euclid(DAY_MS)
                    .saturating_mul(DAY_MS)
                    .saturating_add(of_day);
                if today >= now {
                    today
                } else {
                    today.saturating_add(DAY_MS)
                }
            }
        };
        if self.duration_ms <= 0 {
            return Err(invalid(
                "duration_ms",
                format!(
                    "{} ms: an intent must last more than 0 ms",
                    self.duration_ms
                ),
            ));
        }
        let event = Event {
            id,
            name: self.name.clone(),
            kind: "intent".into(),
            selector: self.selector.clone(),
            resource: self.resource,
            schedule: Schedule::Once {
                start,
                end: start.saturating_add(self.duration_ms),
            },
            effect: self.effect,
            cancelled_at: None,
        };
        event.validate()?;
        Ok(event)
    }
}

// ---------------------------------------------------------------------------
// Calendar

/// What an [`Calendar::apply`] call cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The table is not `horizon` rows of `levels` values.
    #[error(
        "forecast table has {values} values: expected {horizon} steps x {levels} levels = {expected}"
    )]
    TableShape {
        /// Values given.
        values: usize,
        /// Steps.
        horizon: usize,
        /// Levels.
        levels: usize,
        /// `horizon * levels`.
        expected: usize,
    },
    /// A step that is not positive.
    #[error("step_ms is {0}: it must be > 0")]
    BadStep(i64),
}

/// Whether an applied effect is the declared one or learned from past
/// occurrences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectSource {
    /// As declared.
    Declared,
    /// Learned from this many occurrences.
    Learned {
        /// Occurrences seen.
        occurrences: u32,
    },
}

/// What has been learned of an event's effect on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedEffect {
    /// The effect as declared when it was last learned from.
    pub declared: Effect,
    /// The effect learned (what [`Calendar::apply`] uses).
    pub learned: Effect,
    /// Occurrences it was learned from.
    pub occurrences: u32,
    /// The estimate from the latest occurrence alone.
    pub last_estimate: Effect,
    /// When the latest occurrence ended.
    pub last_end: TimestampMs,
    /// Precision (1 / variance) of the learned value on the learning scale
    /// (the log of the factor, or the amount divided by `scale`), after
    /// forgetting.
    pub precision: f64,
    /// For an additive effect, the baseline level the learning scale is
    /// relative to (the mean baseline of the first occurrence); 1 for a
    /// multiplier.
    pub scale: f64,
}

/// An event active for a series at a time: see [`Calendar::active`].
#[derive(Debug, Clone, PartialEq)]
pub struct Active<'a> {
    /// The event.
    pub event: &'a Event,
    /// The window of the occurrence.
    pub window: (TimestampMs, TimestampMs),
    /// The effect that applies (learned if there is one).
    pub effect: Effect,
    /// Where it comes from.
    pub source: EffectSource,
}

/// An effect [`Calendar::apply`] applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The event.
    pub event: EventId,
    /// Its name.
    pub name: String,
    /// The effect used.
    pub effect: Effect,
    /// Where it comes from.
    pub source: EffectSource,
    /// The first horizon step it touched.
    pub first_step: usize,
    /// The last horizon step it touched.
    pub last_step: usize,
}

/// The known events, and what has been learned of their effects, per
/// series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calendar {
    events: BTreeMap<EventId, Event>,
    #[serde(with = "learned_list")]
    learned: BTreeMap<(EventId, SeriesKey), LearnedEffect>,
}

impl Calendar {
    /// An empty calendar.
    pub fn new() -> Calendar {
        Calendar::default()
    }

    /// Adds an event, or replaces the one with its id (returned). What was
    /// learned of a replaced event is kept if its declared effect is
    /// unchanged (reloading from the store), and dropped if it changed:
    /// whoever re-declared it knows something the past does not.
    pub fn insert(&mut self, event: Event) -> Result<Option<Event>, EventError> {
        event.validate()?;
        let id = event.id;
        if self
            .events
            .get(&id)
            .is_some_and(|old| old.effect != event.effect)
        {
            self.learned.retain(|(e, _), _| *e != id);
        }
        Ok(self.events.insert(id, event))
    }

    /// Removes an event and what was learned of it.
    pub fn remove(&mut self, id: EventId) -> Option<Event> {
        self.learned.retain(|(e, _), _| *e != id);
        self.events.remove(&id)
    }

    /// Cancels an event from `at` on; false if there is no such event.
    pub fn cancel(&mut self, id: EventId, at: TimestampMs) -> bool {
        match self.events.get_mut(&id) {
            Some(e) => {
                e.cancelled_at = Some(e.cancelled_at.map_or(at, |c| c.min(at)));
                true
            }
            None => false,
        }
    }

    /// Drops one-off events that ended before `before` (and what was
    /// learned of them).
    pub fn prune(&mut self, before: TimestampMs) {
        let done: Vec<EventId> = self
            .events
            .values()
            .filter(|e| match e.schedule {
                Schedule::Once { end, .. } => end < before,
                Schedule::Recurring { until, .. } => until.is_some_and(|u| u < before),
            } || e.cancelled_at.is_some_and(|c| c < before))
            .map(|e| e.id)
            .collect();
        for id in done {
            self.remove(id);
        }
    }

    /// The event with this id.
    pub fn get(&self, id: EventId) -> Option<&Event> {
        self.events.get(&id)
    }

    /// Every event, by id.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.values()
    }

    /// What has been learned of an event's effect on a series.
    pub fn learned(&self, id: EventId, key: &SeriesKey) -> Option<&LearnedEffect> {
        self.learned.get(&(id, key.clone()))
    }

    /// Everything learned: event, series, effect.
    pub fn all_learned(&self) -> impl Iterator<Item = (EventId, &SeriesKey, &LearnedEffect)> {
        self.learned.iter().map(|((id, key), l)| (*id, key, l))
    }

    /// The effect of `event` on `key` that forecasts use: the learned one
    /// if it was learned for the effect as declared now, else the declared.
    pub fn effect_for(&self, event: &Event, key: &SeriesKey) -> (Effect, EffectSource) {
        match self.learned(event.id, key) {
            Some(l) if l.occurrences > 0 && l.learned.same_kind(&event.effect) => (
                l.learned,
                EffectSource::Learned {
                    occurrences: l.occurrences,
                },
            ),
            _ => (event.effect, EffectSource::Declared),
        }
    }

    /// The events active for the series at `ts`, by id.
    pub fn active(&self, key: &SeriesKey, labels: &Labels, ts: TimestampMs) -> Vec<Active<'_>> {
        self.events
            .values()
            .filter(|e| e.selects(key, labels))
            .filter_map(|e| {
                let window = e.window_at(ts)?;
                let (effect, source) = self.effect_for(e, key);
                Some(Active {
                    event: e,
                    window,
                    effect,
                    source,
                })
            })
            .collect()
    }

    /// What `value`, observed at `ts`, would have been without the events
    /// active for the series then (the effects that [`Calendar::apply`]
    /// would use, undone: amounts taken off, then factors divided out),
    /// floored at 0. Feed models this during event windows, or a recurring
    /// event becomes part of the daily pattern they learn and is then
    /// applied twice. A factor below 0.001 (a workload stopped) cannot be
    /// undone: the value is returned as it is.
    pub fn without_events(
        &self,
        key: &SeriesKey,
        labels: &Labels,
        ts: TimestampMs,
        value: f64,
    ) -> f64 {
        let (mut factor, mut amount) = (1.0, 0.0);
        for a in self.active(key, labels, ts) {
            match a.effect {
                Effect::Multiply(f) => factor *= f,
                Effect::Add(x) => amount += x,
            }
        }
        if (factor == 1.0 && amount == 0.0) || factor < 1e-3 {
            return value;
        }
        ((value - amount) / factor).max(0.0)
    }

    /// Shifts a forecast for the events that select the series: a
    /// row-major quantile table (`values[h * levels.len() + i]`, step `h`
    /// covering `[start + h * step_ms, start + (h + 1) * step_ms)`), as
    /// [`crate::Model::forecast`] writes it.
    ///
    /// A step wholly inside an active window is multiplied by the factor
    /// (every quantile) or has the amount added; a step the window covers
    /// in part gets the same share of the change (the step's value is a
    /// mean over the step). Several events compose: factors multiply,
    /// amounts add, factors first. Rows stay >= 0 and non-decreasing.
    /// Returns what was applied, for the forecast's explanation.
    #[allow(clippy::too_many_arguments)] // mirrors `Model::forecast`, plus the series
    pub fn apply(
        &self,
        key: &SeriesKey,
        labels: &Labels,
        start: TimestampMs,
        step_ms: i64,
        horizon: usize,
        levels: &[f64],
        values: &mut [f64],
    ) -> Result<Vec<Applied>, CalendarError> {
        if step_ms <= 0 {
            return Err(CalendarError::BadStep(step_ms));
        }
        let width = levels.len();
        let expected = horizon.checked_mul(width);
        if expected != Some(values.len()) {
            return Err(CalendarError::TableShape {
                values: values.len(),
                horizon,
                levels: width,
                expected: expected.unwrap_or(usize::MAX),
            });
        }
        let step_at = |h: usize| start.saturating_add((h as i64).saturating_mul(step_ms));
        let end = step_at(horizon);
        let mut factor: Vec<f64> = Vec::new();
        let mut amount: Vec<f64> = Vec::new();
        let mut applied = Vec::new();
        for event in self.events.values().filter(|e| e.selects(key, labels)) {
            let (effect, source) = self.effect_for(event, key);
            let (mut first, mut last) = (usize::MAX, 0);
            for (ws, we) in event.windows(start, end) {
                // Steps that overlap [ws, we).
                let h0 = (ws.saturating_sub(start).max(0) / step_ms) as usize;
                let h1 = (we.saturating_sub(start).saturating_add(step_ms - 1) / step_ms)
                    .clamp(0, horizon as i64) as usize;
                for h in h0..h1.min(horizon) {
                    let (t0, t1) = (step_at(h), step_at(h + 1));
                    // In i128: near the ends of time the differences of
                    // saturated timestamps would overflow.
                    let overlap = (i128::from(we.min(t1)) - i128::from(ws.max(t0))) as f64;
                    let length = (i128::from(t1) - i128::from(t0)) as f64;
                    if overlap <= 0.0 || length <= 0.0 {
                        continue;
                    }
                    let share = overlap / length;
                    if factor.is_empty() {
                        factor = vec![1.0; horizon];
                        amount = vec![0.0; horizon];
                    }
                    match effect {
                        Effect::Multiply(f) => factor[h] *= 1.0 + (f - 1.0) * share,
                        Effect::Add(x) => amount[h] += x * share,
                    }
                    first = first.min(h);
                    last = last.max(h);
                }
            }
            if first <= last {
                applied.push(Applied {
                    event: event.id,
                    name: event.name.clone(),
                    effect,
                    source,
                    first_step: first,
                    last_step: last,
                });
            }
        }
        if factor.is_empty() || width == 0 {
            return Ok(applied);
        }
        for (h, row) in values.chunks_mut(width).enumerate() {
            let (f, x) = (factor[h], amount[h]);
            if f == 1.0 && x == 0.0 {
                continue;
            }
            for v in row.iter_mut() {
                *v = *v * f + x;
            }
            // Back to a valid row (>= 0, non-decreasing) after a negative
            // amount.
            crate::stats::tidy_rows(row, width);
        }
        Ok(applied)
    }
}

/// The learned effects as a list of entries: their map key holds a
/// [`SeriesKey`], which JSON cannot have as a map key.
mod learned_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        event: EventId,
        key: SeriesKey,
        effect: LearnedEffect,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(EventId, SeriesKey), LearnedEffect>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|((event, key), effect)| Entry {
            event: *event,
            key: key.clone(),
            effect: effect.clone(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(EventId, SeriesKey), LearnedEffect>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| ((e.event, e.key), e.effect))
            .collect())
    }
}

// ---------------------------------------------------------------------------
// Learning

/// How the [`EffectLearner`] weighs what it sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearnerConfig {
    /// How far the declared effect may be off, as a standard deviation on
    /// the learning scale (log factor; amount relative to the baseline
    /// level): 0.5 trusts a declared x1.5 to within about x0.9 to x2.5.
    pub prior_sd: f64,
    /// The least variation expected between occurrences on the same scale:
    /// no single occurrence, however long and clean, counts for more than
    /// this allows.
    pub occurrence_sd: f64,
    /// The weight the past keeps at each new occurrence (0-1): in the long
    /// run each occurrence counts for about `1 - forget` of the estimate.
    pub forget: f64,
    /// The fewest usable steps an occurrence needs to be learned from.
    pub min_steps: u32,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            prior_sd: 0.5,
            occurrence_sd: 0.1,
            forget: 0.8,
            min_steps: 3,
        }
    }
}

/// One occurrence of an event being watched on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenWindow {
    event: EventId,
    key: SeriesKey,
    start: TimestampMs,
    end: TimestampMs,
    /// Steps where this event alone was active and both numbers usable.
    steps: u32,
    /// Steps skipped because another event was active too.
    overlapped: u32,
    sum_actual: f64,
    sum_baseline: f64,
    /// Sums of log(actual / baseline) and its square, over steps where both
    /// are > 0 (for the spread of a multiplier).
    log_steps: u32,
    sum_log: f64,
    sum_log2: f64,
    /// Sum of (actual - baseline)^2 (for the spread of an amount).
    sum_diff2: f64,
}

/// What one occurrence taught: see [`EffectLearner::observe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectUpdate {
    /// The event.
    pub event: EventId,
    /// Its name.
    pub name: String,
    /// The series.
    pub key: SeriesKey,
    /// The occurrence's window.
    pub window: (TimestampMs, TimestampMs),
    /// Steps it was measured over.
    pub steps: u32,
    /// The effect this occurrence alone shows.
    pub estimate: Effect,
    /// The effect learned, now applied.
    pub learned: Effect,
    /// The effect declared.
    pub declared: Effect,
    /// Occurrences learned from so far.
    pub occurrences: u32,
}

impl fmt::Display for EffectUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event '{}' on {}: this occurrence {} over {} steps; learned {} from {} occurrence(s) (declared {})",
            self.name,
            self.key,
            self.estimate,
            self.steps,
            self.learned,
            self.occurrences,
            self.declared
        )
    }
}

/// Learns the real size of events' effects, per event and series.
///
/// Feed it every observation of a series with the median the engine
/// forecast for it *without* events (the baseline). While exactly one event
/// is active for the series it accumulates actual and baseline; steps where
/// several are active are skipped, as their effects cannot be told apart.
/// When the occurrence's window has ended (seen at the series' next
/// observation, or at [`EffectLearner::close_ended`]) it estimates the
/// occurrence's effect (ratio of sums for a factor, mean difference for an
/// amount) and folds it into the calendar's [`LearnedEffect`]: a
/// precision-weighted average on the log scale for factors (relative to
/// the baseline level for amounts) that starts at the declared effect
/// (`prior_sd`), weighs each occurrence by how consistent it was within
/// itself (but never above `occurrence_sd`), and lets the past fade by
/// `forget` per occurrence, so it follows an effect that drifts.
///
/// The baseline must not have learned from the event itself: take it from
/// a forecast made before the window opened, or from models that were not
/// fed the window's values, or the effect will be underestimated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EffectLearner {
    /// How it weighs what it sees.
    pub config: LearnerConfig,
    open: Vec<OpenWindow>,
}

impl EffectLearner {
    /// A learner with `config`.
    pub fn new(config: LearnerConfig) -> EffectLearner {
        EffectLearner {
            config,
            open: Vec::new(),
        }
    }

    /// Occurrences being watched.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Records the observation `actual` of `key` at `ts`, whose baseline
    /// forecast median (without events) was `baseline`; returns what the
    /// occurrences of this series that have now ended taught.
    pub fn observe(
        &mut self,
        calendar: &mut Calendar,
        key: &SeriesKey,
        labels: &Labels,
        ts: TimestampMs,
        actual: f64,
        baseline: f64,
    ) -> Vec<EffectUpdate> {
        let updates = self.close_where(calendar, |w| &w.key == key && w.end <= ts);
        if !(actual.is_finite() && baseline.is_finite() && actual >= 0.0 && baseline >= 0.0) {
            return updates;
        }
        let active = calendar.active(key, labels, ts);
        let alone = active.len() == 1;
        for a in &active {
            let i = match self
                .open
                .iter()
                .position(|w| w.event == a.event.id && &w.key == key && w.start == a.window.0)
            {
                Some(i) => i,
                None => {
                    self.open.push(OpenWindow {
                        event: a.event.id,
                        key: key.clone(),
                        start: a.window.0,
                        end: a.window.1,
                        steps: 0,
                        overlapped: 0,
                        sum_actual: 0.0,
                        sum_baseline: 0.0,
                        log_steps: 0,
                        sum_log: 0.0,
                        sum_log2: 0.0,
                        sum_diff2: 0.0,
                    });
                    self.open.len() - 1
                }
            };
            let w = &mut self.open[i];
            if !alone {
                w.overlapped += 1;
                continue;
            }
            w.steps += 1;
            w.sum_actual += actual;
            w.sum_baseline += baseline;
            w.sum_diff2 += (actual - baseline).powi(2);
            if actual > 0.0 && baseline > 0.0 {
                let r = (actual / baseline).ln();
                w.log_steps += 1;
                w.sum_log += r;
                w.sum_log2 += r * r;
            }
        }
        updates
    }

    /// Closes the occurrences of any series whose window ended at or before
    /// `now` (for series that stopped reporting), learning from them.
    pub fn close_ended(&mut self, calendar: &mut Calendar, now: TimestampMs) -> Vec<EffectUpdate> {
        self.close_where(calendar, |w| w.end <= now)
    }

    fn close_where(
        &mut self,
        calendar: &mut Calendar,
        done: impl Fn(&OpenWindow) -> bool,
    ) -> Vec<EffectUpdate> {
        let mut updates = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if done(&self.open[i]) {
                let w = self.open.swap_remove(i);
                updates.extend(self.learn(calendar, &w));
            } else {
                i += 1;
            }
        }
        updates
    }

    fn learn(&self, calendar: &mut Calendar, w: &OpenWindow) -> Option<EffectUpdate> {
        let c = &self.config;
        let event = calendar.get(w.event)?.clone();
        if w.steps < c.min_steps.max(1) {
            return None;
        }
        let n = f64::from(w.steps);
        let mean_baseline = w.sum_baseline / n;
        let prior_entry = calendar
            .learned(w.event, &w.key)
            .filter(|l| l.learned.same_kind(&event.effect))
            .cloned();
        // The occurrence's estimate `e` and its variance `v` on the learning
        // scale, and the scale itself.
        let (e, v, scale) = match event.effect {
            Effect::Multiply(_) => {
                if w.sum_baseline <= 0.0 {
                    return None;
                }
                // A workload that stopped (x0) is learned as x0.001.
                let ratio = (w.sum_actual / w.sum_baseline).max(1e-3);
                let k = f64::from(w.log_steps);
                let var = if w.log_steps >= 2 {
                    ((w.sum_log2 - w.sum_log * w.sum_log / k) / (k - 1.0)).max(0.0) / k
                } else {
                    0.0
                };
                (ratio.ln(), var, 1.0)
            }
            Effect::Add(declared) => {
                // Relative to the level (an idle workload's baseline is 0:
                // then relative to what it does during the event).
                let scale = prior_entry
                    .as_ref()
                    .map_or_else(
                        || mean_baseline.max(w.sum_actual / n).max(declared.abs()),
                        |l| l.scale,
                    )
                    .max(1e-12);
                let d = (w.sum_actual - w.sum_baseline) / n;
                let var = ((w.sum_diff2 - n * d * d) / (n - 1.0).max(1.0)).max(0.0);
                (d / scale, var / (n * scale * scale), scale)
            }
        };
        let to_scale = |effect: Effect| match effect {
            Effect::Multiply(f) => f.max(1e-9).ln(),
            Effect::Add(x) => x / scale,
        };
        let from_scale = |z: f64| match event.effect {
            Effect::Multiply(_) => Effect::Multiply(z.exp()),
            Effect::Add(_) => Effect::Add(z * scale),
        };
        let (mean, precision, occurrences) = match &prior_entry {
            Some(l) => (to_scale(l.learned), l.precision, l.occurrences),
            None => (
                to_scale(event.effect),
                1.0 / c.prior_sd.max(1e-6).powi(2),
                0,
            ),
        };
        let p = 1.0 / (v + c.occurrence_sd.max(1e-6).powi(2));
        let precision_after = c.forget.clamp(0.0, 1.0) * precision + p;
        let mean_after = mean + (e - mean) * p / precision_after;
        if !mean_after.is_finite() {
            return None;
        }
        let learned = LearnedEffect {
            declared: event.effect,
            learned: from_scale(mean_after),
            occurrences: occurrences + 1,
            last_estimate: from_scale(e),
            last_end: w.end,
            precision: precision_after,
            scale,
        };
        let update = EffectUpdate {
            event: event.id,
            name: event.name.clone(),
            key: w.key.clone(),
            window: (w.start, w.end),
            steps: w.steps,
            estimate: learned.last_estimate,
            learned: learned.learned,
            declared: event.effect,
            occurrences: learned.occurrences,
        };
        calendar.learned.insert((w.event, w.key.clone()), learned);
        Some(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;

    /// UTC time from its parts.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> TimestampMs {
        days_from_civil(y, mo, d) * DAY_MS + h * HOUR + mi * MINUTE_MS
    }

    fn cron(s: &str) -> CronSpec {
        CronSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn next(spec: &str, from: TimestampMs) -> TimestampMs {
        cron(spec).next_at_or_after(from).unwrap()
    }

    fn key(host: &str, workload: &str) -> SeriesKey {
        SeriesKey::new(host, workload, Resource::Cpu)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn event(id: EventId, selector: &str, schedule: Schedule, effect: Effect) -> Event {
        Event {
            id,
            name: format!("event {id}"),
            kind: "test".into(),
            selector: Selector::parse(selector).unwrap(),
            resource: Some(Resource::Cpu),
            schedule,
            effect,
            cancelled_at: None,
        }
    }

    fn daily(spec: &str, duration_ms: i64) -> Schedule {
        Schedule::Recurring {
            cron: cron(spec),
            duration_ms,
            from: None,
            until: None,
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(weekday(0), 4);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(1900, 3, 1) - 1),
            (1900, 2, 28)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2000, 3, 1) - 1),
            (2000, 2, 29)
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2026-11-23 is a Monday.
        assert_eq!(weekday(days_from_civil(2026, 11, 23)), 1);
        for day in (-1_000_000..1_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn next_occurrence_of_simple_specs() {
        let t = utc(2026, 11, 23, 10, 17); // a Monday
        assert_eq!(next("* * * * *", t), t);
        assert_eq!(next("* * * * *", t + 1), t + MINUTE_MS);
        assert_eq!(next("30 2 * * *", t), utc(2026, 11, 24, 2, 30));
        assert_eq!(next("@hourly", t), utc(2026, 11, 23, 11, 0));
        assert_eq!(next("@daily", t), utc(2026, 11, 24, 0, 0));
        assert_eq!(next("@monthly", t), utc(2026, 12, 1, 0, 0));
        assert_eq!(next("@yearly", t), utc(2027, 1, 1, 0, 0));
        // Year end rolls over.
        assert_eq!(
            next("0 0 * * *", utc(2026, 12, 31, 23, 59)),
            utc(2027, 1, 1, 0, 0)
        );
        // Before the epoch (trace time can start at 0 and look back).
        assert_eq!(next("0 12 * * *", -HOUR), 12 * HOUR);
    }

    #[test]
    fn next_occurrence_with_steps_ranges_and_lists() {
        let t = utc(2026, 11, 23, 10, 17);
        assert_eq!(next("*/15 * * * *", t), utc(2026, 11, 23, 10, 30));
        assert_eq!(next("5-10/2 * * * *", t), utc(2026, 11, 23, 11, 5));
        assert_eq!(next("20/20 * * * *", t), utc(2026, 11, 23, 10, 20));
        assert_eq!(next("50/20 * * * *", t), utc(2026, 11, 23, 10, 50));
        assert_eq!(next("0 9,13,18 * * *", t), utc(2026, 11, 23, 13, 0));
        assert_eq!(next("0 1-3,22 * * *", t), utc(2026, 11, 23, 22, 0));
        let c = cron("5-10/2 * * * *");
        let mins: Vec<i64> = (0..60)
            .filter(|m| c.matches(t - 17 * MINUTE_MS + m * MINUTE_MS))
            .collect();
        assert_eq!(mins, [5, 7, 9]);
    }

    #[test]
    fn next_occurrence_by_day_of_week() {
        // Friday 2026-11-27 17:50: next working-hours quarter is Monday 09:00.
        let fri = utc(2026, 11, 27, 17, 50);
        assert_eq!(weekday(days_from_civil(2026, 11, 27)), 5);
        assert_eq!(next("*/15 9-17 * * mon-fri", fri), utc(2026, 11, 30, 9, 0));
        assert_eq!(
            next("*/15 9-17 * * 1-5", fri - 10 * MINUTE_MS),
            fri - 5 * MINUTE_MS
        );
        // 0 and 7 are both Sunday; names in any case.
        assert_eq!(next("0 3 * * 7", fri), utc(2026, 11, 29, 3, 0));
        assert_eq!(next("0 3 * * 0", fri), utc(2026, 11, 29, 3, 0));
        assert_eq!(next("0 3 * * SUN", fri), utc(2026, 11, 29, 3, 0));
        assert_eq!(next("0 3 * * sat,sun", fri), utc(2026, 11, 28, 3, 0));
        // Restricted day of month and day of week: either matches.
        assert_eq!(next("0 9 1 * mon", fri), utc(2026, 11, 30, 9, 0));
        assert_eq!(
            next("0 9 1 * mon", utc(2026, 11, 30, 10, 0)),
            utc(2026, 12, 1, 9, 0)
        );
        // With `*` in the day of month, both must: Mondays only.
        assert_eq!(
            next("0 9 */1 * mon", utc(2026, 11, 30, 10, 0)),
            utc(2026, 12, 7, 9, 0)
        );
        // The first Monday that is a 13th.
        assert_eq!(next("0 0 */13 * mon", fri), {
            // Day-of-month */13 is {1, 14, 27}; the next Monday among them.
            let mut d = days_from_civil(2026, 11, 28);
            loop {
                let (_, _, dd) = civil_from_days(d);
                if weekday(d) == 1 && [1, 14, 27].contains(&dd) {
                    break d * DAY_MS;
                }
                d += 1;
            }
        });
    }

    #[test]
    fn next_occurrence_at_month_ends() {
        // The 31st skips 30-day months and February.
        assert_eq!(
            next("0 0 31 * *", utc(2026, 1, 31, 0, 1)),
            utc(2026, 3, 31, 0, 0)
        );
        assert_eq!(
            next("0 0 31 * *", utc(2026, 4, 1, 0, 0)),
            utc(2026, 5, 31, 0, 0)
        );
        // The 30th skips February.
        assert_eq!(
            next("0 0 30 * *", utc(2026, 1, 30, 1, 0)),
            utc(2026, 3, 30, 0, 0)
        );
        // February 29th waits for a leap year; 2100 is not one.
        assert_eq!(
            next("0 0 29 2 *", utc(2023, 3, 1, 0, 0)),
            utc(2024, 2, 29, 0, 0)
        );
        assert_eq!(
            next("0 0 29 2 *", utc(2096, 3, 1, 0, 0)),
            utc(2104, 2, 29, 0, 0)
        );
        // The last day of each month, as a list of candidates, in February.
        assert_eq!(
            next("0 0 28-31 feb *", utc(2026, 2, 1, 0, 0)),
            utc(2026, 2, 28, 0, 0)
        );
        assert_eq!(
            next("59 23 * 2 *", utc(2026, 2, 28, 23, 59) + 1),
            utc(2027, 2, 1, 23, 59)
        );
    }

    #[test]
    fn cron_errors_name_the_field_and_token() {
        let err = |s: &str| CronSpec::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("0 25 * * *"),
            "cron field 2 (hour): '25' is outside 0-23"
        );
        assert_eq!(
            err("60 * * * *"),
            "cron field 1 (minute): '60' is outside 0-59"
        );
        assert_eq!(
            err("0 0 0 * *"),
            "cron field 3 (day-of-month): '0' is outside 1-31"
        );
        assert_eq!(
            err("0 0 * 13 *"),
            "cron field 4 (month): '13' is outside 1-12"
        );
        assert_eq!(
            err("0 0 * * 8"),
            "cron field 5 (day-of-week): '8' is outside 0-7"
        );
        assert_eq!(
            err("0 1-30 * * *"),
            "cron field 2 (hour): '30' is outside 0-23"
        );
        assert_eq!(
            err("0 0 * * funday"),
            "cron field 5 (day-of-week): 'funday' is not a number"
        );
        assert_eq!(
            err("0 5-2 * * *"),
            "cron field 2 (hour): range '5-2' runs backwards"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "cron field 1 (minute): step in '*/0' must be a number of at least 1"
        );
        assert_eq!(
            err("1,,2 * * * *"),
            "cron field 1 (minute): empty item in '1,,2'"
        );
        assert_eq!(
            err("99999999999 * * * *"),
            "cron field 1 (minute): '99999999999' is outside 0-59"
        );
        assert_eq!(
            err("0 0 * *"),
            "cron spec '0 0 * *' has 4 field(s): expected 5 (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(CronSpec::parse("  ").unwrap_err(), CronError::Empty);
        assert!(err("@fortnightly").contains("'@fortnightly'"));
        assert_eq!(
            err("0 0 30 2 *"),
            "cron spec '0 0 30 2 *' never fires: none of its months has any of its days of the month"
        );
        // ...but with a day of week too, it fires on that weekday instead.
        assert!(CronSpec::parse("0 0 30 2 mon").is_ok());
    }

    #[test]
    fn selectors_match_globs_and_labels() {
        let l = labels(&[("env", "prod"), ("tier", "db-primary")]);
        let m = |s: &str, host: &str, w: &str| Selector::parse(s).unwrap().matches(host, w, &l);
        assert!(m("*", "any", "thing"));
        assert!(m("batch-*", "h1", "batch-import"));
        assert!(!m("batch-*", "h1", "web"));
        assert!(m("workload=batch-?", "h1", "batch-7"));
        assert!(!m("workload=batch-?", "h1", "batch-17"));
        assert!(m("host=web-*,env=prod", "web-3", "x"));
        assert!(!m("host=web-*,env=prod", "db-1", "x"));
        assert!(!m("env=staging", "h", "x"));
        assert!(m("tier=db-*, env = prod", "h", "x"));
        assert!(!m("missing=*", "h", "x"), "a missing label does not match");
        assert!(m("*a*b*c", "h", "xxaxxbxxbc"));
        assert!(!m("*a*b*c", "h", "xxaxxbxxb"));
        assert!(m("vidéo-*", "h", "vidéo-édition"));
        assert!(!m("label.host=h?", "h", "x"));
        let mut with_host_label = l.clone();
        with_host_label.insert("host".into(), "h1".into());
        assert!(
            Selector::parse("label.host=h?")
                .unwrap()
                .matches("other", "x", &with_host_label)
        );
    }

    #[test]
    fn selector_errors_name_the_term() {
        let err = |s: &str| Selector::parse(s).unwrap_err().to_string();
        assert_eq!(
            err(""),
            "selector is empty: use '*' to select every workload"
        );
        assert_eq!(err("a,,b"), "selector 'a,,b': term 2 is empty");
        assert_eq!(
            err("host=,x"),
            "selector 'host=,x': term 1 'host=' needs both a key and a value"
        );
        assert_eq!(
            err("a b=c"),
            "selector 'a b=c': term 1: key 'a b' must not contain blanks"
        );
        assert_eq!(
            err("host=a,host=b"),
            "selector 'host=a,host=b': 'host' is given twice"
        );
        assert_eq!(
            err("x*,workload=y"),
            "selector 'x*,workload=y': 'workload' is given twice"
        );
    }

    #[test]
    fn active_follows_schedules_resources_and_cancellation() {
        let mut cal = Calendar::new();
        let t0 = utc(2026, 11, 23, 0, 0);
        cal.insert(event(
            1,
            "batch-*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(2.0),
        ))
        .unwrap();
        cal.insert(event(
            2,
            "*",
            Schedule::Once {
                start: t0 + 10 * HOUR,
                end: t0 + 11 * HOUR,
            },
            Effect::Add(1.0),
        ))
        .unwrap();
        let k = key("h", "batch-1");
        let none = Labels::new();
        let ids_in = |cal: &Calendar, ts| -> Vec<EventId> {
            cal.active(&k, &none, ts)
                .iter()
                .map(|a| a.event.id)
                .collect()
        };
        assert_eq!(ids_in(&cal, t0 + HOUR), Vec::<EventId>::new());
        assert_eq!(ids_in(&cal, t0 + 2 * HOUR), [1]);
        assert_eq!(ids_in(&cal, t0 + 4 * HOUR - 1), [1]);
        assert_eq!(ids_in(&cal, t0 + 4 * HOUR), Vec::<EventId>::new());
        assert_eq!(ids_in(&cal, t0 + 10 * HOUR + 5), [2]);
        assert_eq!(ids_in(&cal, t0 + DAY_MS + 3 * HOUR), [1]);
        let a = &cal.active(&k, &none, t0 + 3 * HOUR)[0];
        assert_eq!(a.window, (t0 + 2 * HOUR, t0 + 4 * HOUR));
        // Another resource, or a workload the selector leaves out.
        let mem = SeriesKey::new("h", "batch-1", Resource::Memory);
        assert!(cal.active(&mem, &none, t0 + 3 * HOUR).is_empty());
        assert!(
            cal.active(&key("h", "web"), &none, t0 + 3 * HOUR)
                .is_empty()
        );
        // Cancelled from the second day's occurrence on.
        assert!(cal.cancel(1, t0 + DAY_MS + 2 * HOUR + 30 * MINUTE_MS));
        assert_eq!(ids_in(&cal, t0 + DAY_MS + 2 * HOUR), [1]);
        assert_eq!(ids_in(&cal, t0 + DAY_MS + 3 * HOUR), Vec::<EventId>::new());
        assert_eq!(
            ids_in(&cal, t0 + 2 * DAY_MS + 3 * HOUR),
            Vec::<EventId>::new()
        );
    }

    #[test]
    fn recurring_bounds_and_overlapping_occurrences() {
        let t0 = utc(2026, 11, 23, 0, 0);
        let mut e = event(
            1,
            "*",
            Schedule::Recurring {
                cron: cron("0 * * * *"),
                duration_ms: 90 * MINUTE_MS,
                from: Some(t0 + 2 * HOUR),
                until: Some(t0 + 5 * HOUR),
            },
            Effect::Multiply(2.0),
        );
        // Hourly occurrences lasting 90 min merge into one window, from
        // the first allowed start to 90 min after the last.
        let w: Vec<_> = e.windows(t0, t0 + DAY_MS).collect();
        assert_eq!(w, [(t0 + 2 * HOUR, t0 + 4 * HOUR + 90 * MINUTE_MS)]);
        assert_eq!(e.window_at(t0 + HOUR), None);
        assert_eq!(
            e.window_at(t0 + 3 * HOUR + 10),
            Some((t0 + 2 * HOUR, t0 + 3 * HOUR + 30 * MINUTE_MS))
        );
        assert_eq!(
            e.window_at(t0 + 5 * HOUR + 10),
            Some((t0 + 4 * HOUR, t0 + 5 * HOUR + 30 * MINUTE_MS))
        );
        e.cancelled_at = Some(t0 + 3 * HOUR);
        let w: Vec<_> = e.windows(t0, t0 + DAY_MS).collect();
        assert_eq!(w, [(t0 + 2 * HOUR, t0 + 3 * HOUR)]);
        // A query that starts inside a window still sees it.
        let d = event(2, "*", daily("0 2 * * *", 2 * HOUR), Effect::Multiply(2.0));
        let w: Vec<_> = d.windows(t0 + 3 * HOUR, t0 + DAY_MS + 3 * HOUR).collect();
        assert_eq!(
            w,
            [
                (t0 + 2 * HOUR, t0 + 4 * HOUR),
                (t0 + DAY_MS + 2 * HOUR, t0 + DAY_MS + 4 * HOUR)
            ]
        );
    }

    #[test]
    fn apply_shifts_the_steps_inside_windows() {
        let t0 = utc(2026, 11, 23, 0, 0);
        let step = HOUR;
        let levels = [0.1, 0.5, 0.9];
        let mut cal = Calendar::new();
        // x2 from 02:00 to 04:00; +1 core from 03:30 to 05:00.
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(2.0),
        ))
        .unwrap();
        cal.insert(event(
            2,
            "*",
            Schedule::Once {
                start: t0 + 3 * HOUR + 30 * MINUTE_MS,
                end: t0 + 5 * HOUR,
            },
            Effect::Add(1.0),
        ))
        .unwrap();
        // Off-selector: must not apply.
        cal.insert(event(
            3,
            "web",
            daily("* * * * *", HOUR),
            Effect::Multiply(10.0),
        ))
        .unwrap();
        let mut values: Vec<f64> = (0..6).flat_map(|_| [1.0, 2.0, 3.0]).collect();
        let applied = cal
            .apply(
                &key("h", "batch"),
                &Labels::new(),
                t0,
                step,
                6,
                &levels,
                &mut values,
            )
            .unwrap();
        let rows: Vec<&[f64]> = values.chunks(3).collect();
        assert_eq!(rows[0], [1.0, 2.0, 3.0]);
        assert_eq!(rows[1], [1.0, 2.0, 3.0]);
        assert_eq!(rows[2], [2.0, 4.0, 6.0]);
        // Half the step has the extra core.
        assert_eq!(rows[3], [2.5, 4.5, 6.5]);
        assert_eq!(rows[4], [2.0, 3.0, 4.0]);
        assert_eq!(rows[5], [1.0, 2.0, 3.0]);
        assert_eq!(applied.len(), 2);
        assert_eq!(
            (
                applied[0].event,
                applied[0].first_step,
                applied[0].last_step
            ),
            (1, 2, 3)
        );
        assert_eq!(
            (
                applied[1].event,
                applied[1].first_step,
                applied[1].last_step
            ),
            (2, 3, 4)
        );
        assert_eq!(applied[0].source, EffectSource::Declared);

        // A window covering a quarter of a step moves it a quarter of the way.
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            Schedule::Once {
                start: t0 + 45 * MINUTE_MS,
                end: t0 + 60 * MINUTE_MS,
            },
            Effect::Multiply(3.0),
        ))
        .unwrap();
        let mut v = vec![1.0, 2.0, 4.0, 1.0, 2.0, 4.0];
        cal.apply(&key("h", "w"), &Labels::new(), t0, step, 2, &levels, &mut v)
            .unwrap();
        assert_eq!(v, [1.5, 3.0, 6.0, 1.0, 2.0, 4.0]);
    }

    #[test]
    fn without_events_undoes_what_apply_does() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(2.0),
        ))
        .unwrap();
        cal.insert(event(
            2,
            "*",
            Schedule::Once {
                start: 3 * HOUR,
                end: 4 * HOUR,
            },
            Effect::Add(1.0),
        ))
        .unwrap();
        let (k, l) = (key("h", "w"), Labels::new());
        assert_eq!(cal.without_events(&k, &l, HOUR, 5.0), 5.0);
        assert_eq!(cal.without_events(&k, &l, 2 * HOUR, 5.0), 2.5);
        // x2 applied first, then +1: 2 -> 5 -> back to 2.
        let mut v = vec![2.0];
        cal.apply(&k, &l, 3 * HOUR, HOUR, 1, &[0.5], &mut v)
            .unwrap();
        assert_eq!(v, [5.0]);
        assert_eq!(cal.without_events(&k, &l, 3 * HOUR, 5.0), 2.0);
        assert_eq!(cal.without_events(&k, &l, 3 * HOUR, 0.5), 0.0);
        cal.insert(event(
            3,
            "*",
            daily("0 2 * * *", HOUR),
            Effect::Multiply(0.0),
        ))
        .unwrap();
        assert_eq!(cal.without_events(&k, &l, 2 * HOUR, 0.7), 0.7);
    }

    #[test]
    fn apply_keeps_rows_valid_and_checks_the_table() {
        let t0 = 0;
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            Schedule::Once {
                start: 0,
                end: HOUR,
            },
            Effect::Add(-2.0),
        ))
        .unwrap();
        let levels = [0.1, 0.5, 0.9];
        let mut v = vec![1.0, 2.5, 4.0];
        cal.apply(&key("h", "w"), &Labels::new(), t0, HOUR, 1, &levels, &mut v)
            .unwrap();
        assert_eq!(v, [0.0, 0.5, 2.0]);
        let mut bad = vec![1.0; 5];
        assert_eq!(
            cal.apply(
                &key("h", "w"),
                &Labels::new(),
                t0,
                HOUR,
                2,
                &levels,
                &mut bad
            )
            .unwrap_err()
            .to_string(),
            "forecast table has 5 values: expected 2 steps x 3 levels = 6"
        );
        assert!(matches!(
            cal.apply(&key("h", "w"), &Labels::new(), t0, 0, 1, &levels, &mut v),
            Err(CalendarError::BadStep(0))
        ));
        // A huge horizon of steps near the end of time must not overflow.
        let mut v = vec![1.0; 3 * 4];
        cal.apply(
            &key("h", "w"),
            &Labels::new(),
            i64::MAX - 10,
            i64::MAX / 2,
            4,
            &levels,
            &mut v,
        )
        .unwrap();
    }

    #[test]
    fn events_are_validated() {
        let mut e = event(1, "*", daily("0 2 * * *", 0), Effect::Multiply(2.0));
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "event 1 'event 1': duration_ms: 0 ms: an occurrence must last more than 0 ms"
        );
        e.schedule = daily("0 2 * * *", HOUR);
        e.effect = Effect::Multiply(-1.0);
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("multiply factor -1")
        );
        e.effect = Effect::Add(1.0);
        e.resource = None;
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("must name its resource")
        );
        e.resource = Some(Resource::Memory);
        e.schedule = Schedule::Once { start: 5, end: 4 };
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("ends (4 ms) before it starts (5 ms)")
        );
        let mut cal = Calendar::new();
        assert!(cal.insert(e).is_err());
        assert_eq!(cal.events().count(), 0);
    }

    #[test]
    fn intents_start_now_at_a_time_or_at_a_time_of_day() {
        let now = utc(2026, 11, 23, 14, 10);
        let intent = |start| Intent {
            name: "video edit".into(),
            selector: Selector::parse("editor").unwrap(),
            resource: Some(Resource::Cpu),
            start,
            duration_ms: HOUR,
            effect: Effect::Add(4.0),
        };
        let window = |e: &Event| match e.schedule {
            Schedule::Once { start, end } => (start, end),
            _ => panic!("an intent is one-off"),
        };
        let e = intent(IntentStart::Now).to_event(7, now).unwrap();
        assert_eq!(window(&e), (now, now + HOUR));
        assert_eq!(e.kind, "intent");
        let e = intent(IntentStart::NextTimeOfDay { hour: 2, minute: 0 })
            .to_event(8, now)
            .unwrap();
        assert_eq!(
            window(&e),
            (utc(2026, 11, 24, 2, 0), utc(2026, 11, 24, 3, 0))
        );
        let e = intent(IntentStart::NextTimeOfDay {
            hour: 14,
            minute: 10,
        })
        .to_event(8, now)
        .unwrap();
        assert_eq!(window(&e).0, now);
        let e = intent(IntentStart::At(now + 5 * HOUR))
            .to_event(9, now)
            .unwrap();
        assert_eq!(window(&e).0, now + 5 * HOUR);
        let err = intent(IntentStart::NextTimeOfDay {
            hour: 24,
            minute: 0,
        })
        .to_event(9, now)
        .unwrap_err();
        assert!(
            err.to_string().contains("24:00 is not a time of day"),
            "{err}"
        );
        // The calendar applies it to the editor from now on.
        let mut cal = Calendar::new();
        cal.insert(intent(IntentStart::Now).to_event(7, now).unwrap())
            .unwrap();
        assert_eq!(
            cal.active(&key("h", "editor"), &Labels::new(), now + 1)
                .len(),
            1
        );
    }

    #[test]
    fn events_round_trip_through_the_store_fields() {
        let recurring = Event {
            id: 4,
            name: "nightly batch".into(),
            kind: "batch".into(),
            selector: Selector::parse("host=db-*,batch-*,env=prod").unwrap(),
            resource: Some(Resource::Cpu),
            schedule: Schedule::Recurring {
                cron: cron("0 2 * * mon-fri"),
                duration_ms: 2 * HOUR,
                from: Some(1_000),
                until: None,
            },
            effect: Effect::Multiply(1.5),
            cancelled_at: None,
        };
        let stored = recurring.to_stored();
        assert_eq!(stored.selector, "host=db-*,batch-*,env=prod");
        assert_eq!((stored.start, stored.end), (1_000, i64::MAX));
        assert_eq!(
            stored.effect,
            serde_json::json!({"name": "nightly batch", "resource": "cpu", "multiply": 1.5,
                               "cron": "0 2 * * mon-fri", "duration_ms": 7_200_000})
        );
        assert_eq!(Event::from_stored(4, &stored, None).unwrap(), recurring);

        let once = Event {
            id: 5,
            name: "sale".into(),
            kind: "sale".into(),
            selector: Selector::all(),
            resource: None,
            schedule: Schedule::Once { start: 10, end: 20 },
            effect: Effect::Multiply(3.0),
            cancelled_at: Some(15),
        };
        let stored = once.to_stored();
        assert_eq!((stored.start, stored.end), (10, 20));
        assert_eq!(Event::from_stored(5, &stored, Some(15)).unwrap(), once);

        // A hand-written row: the name defaults to the kind.
        let row = StoredEvent {
            kind: "release".into(),
            selector: "api".into(),
            start: 0,
            end: 100,
            effect: serde_json::json!({"add": 2.0, "resource": "memory"}),
        };
        let e = Event::from_stored(9, &row, None).unwrap();
        assert_eq!((e.name.as_str(), e.effect), ("release", Effect::Add(2.0)));

        let bad = |effect: serde_json::Value| {
            let row = StoredEvent {
                effect,
                ..row.clone()
            };
            Event::from_stored(9, &row, None).unwrap_err().to_string()
        };
        assert_eq!(
            bad(serde_json::json!({"multiply": 2.0, "add": 1.0})),
            "event row 9: effect JSON: must hold exactly one of \"multiply\" and \"add\""
        );
        assert!(
            bad(serde_json::json!({"multiply": 2.0, "cron": "0 2 * * *"})).contains("go together")
        );
        assert!(bad(serde_json::json!({"multiply": 2.0, "colour": "red"})).contains("colour"));
        assert_eq!(
            bad(serde_json::json!({"multiply": 2.0, "cron": "0 25 * * *", "duration_ms": 1})),
            "event 9 'release': cron field 2 (hour): '25' is outside 0-23"
        );
        assert!(bad(serde_json::json!({"add": 2.0})).contains("must name its resource"));
        assert!(bad(serde_json::json!("x2")).starts_with("event row 9: effect JSON: invalid type"));
    }

    #[test]
    fn calendar_state_round_trips_through_json_and_postcard() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "batch-*",
            daily("*/30 2-4 * * 1-5", HOUR),
            Effect::Multiply(2.0),
        ))
        .unwrap();
        cal.learned.insert(
            (1, key("h", "batch-1")),
            LearnedEffect {
                declared: Effect::Multiply(2.0),
                learned: Effect::Multiply(1.8),
                occurrences: 3,
                last_estimate: Effect::Multiply(1.7),
                last_end: 99,
                precision: 120.0,
                scale: 1.0,
            },
        );
        let json = serde_json::to_string(&cal).unwrap();
        assert_eq!(serde_json::from_str::<Calendar>(&json).unwrap(), cal);
        let bytes = postcard::to_stdvec(&cal).unwrap();
        assert_eq!(postcard::from_bytes::<Calendar>(&bytes).unwrap(), cal);
        // A damaged cron spec is refused on the way in.
        let broken = json.replace("*/30 2-4", "*/30 2-40");
        let err = serde_json::from_str::<Calendar>(&broken).unwrap_err();
        assert!(err.to_string().contains("'40' is outside 0-23"), "{err}");
        let mut learner = EffectLearner::default();
        let mut c2 = cal.clone();
        learner.observe(
            &mut c2,
            &key("h", "batch-1"),
            &Labels::new(),
            utc(2026, 11, 23, 2, 0),
            2.0,
            1.0,
        );
        let bytes = postcard::to_stdvec(&learner).unwrap();
        assert_eq!(
            postcard::from_bytes::<EffectLearner>(&bytes).unwrap(),
            learner
        );
    }

    /// A deterministic generator for test noise.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            // SplitMix64.
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-12), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// Runs `days` days of a series at 5-minute steps whose demand is
    /// `base(ts)` times `truth` during the event, with 10 % noise, through
    /// the learner; returns the updates.
    fn learn_days(
        cal: &mut Calendar,
        learner: &mut EffectLearner,
        k: &SeriesKey,
        days: std::ops::Range<i64>,
        truth: f64,
        base: impl Fn(TimestampMs) -> f64,
    ) -> Vec<EffectUpdate> {
        let mut rng = Rng(7);
        let step = 5 * MINUTE_MS;
        let mut updates = Vec::new();
        for i in days.start * 288..days.end * 288 {
            let ts = i * step;
            let b = base(ts);
            let in_event = !cal.active(k, &Labels::new(), ts).is_empty();
            let actual = b * if in_event { truth } else { 1.0 } * (1.0 + 0.1 * rng.normal());
            updates.extend(learner.observe(cal, k, &Labels::new(), ts, actual.max(0.0), b));
        }
        updates
    }

    #[test]
    fn a_recurring_event_declared_x1_5_that_is_x2_is_learned_as_x2() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(1.5),
        ))
        .unwrap();
        let k = key("h", "batch");
        let mut learner = EffectLearner::default();
        let base = |ts: i64| 2.0 + (ts as f64 / DAY_MS as f64 * std::f64::consts::TAU).sin();
        let updates = learn_days(&mut cal, &mut learner, &k, 0..4, 2.0, base);
        assert_eq!(updates.len(), 4, "one update per occurrence");
        let factors: Vec<f64> = updates
            .iter()
            .map(|u| match u.learned {
                Effect::Multiply(f) => f,
                Effect::Add(_) => unreachable!(),
            })
            .collect();
        eprintln!("declared x1.5, true x2: learned after each occurrence {factors:.3?}");
        // Moves most of the way at the first occurrence, then settles.
        assert!(factors[0] > 1.85, "{factors:?}");
        for f in &factors[2..] {
            assert!((f - 2.0).abs() < 0.05, "{factors:?}");
        }
        let learned = cal.learned(1, &k).unwrap();
        assert_eq!(learned.occurrences, 4);
        assert_eq!(learned.declared, Effect::Multiply(1.5));
        assert!(
            updates[3].to_string().contains("(declared x1.5)"),
            "{}",
            updates[3]
        );
        // And apply now uses it.
        let mut v = vec![1.0, 2.0];
        let applied = cal
            .apply(
                &k,
                &Labels::new(),
                4 * DAY_MS + 2 * HOUR,
                5 * MINUTE_MS,
                1,
                &[0.5, 0.9],
                &mut v,
            )
            .unwrap();
        assert_eq!(applied[0].source, EffectSource::Learned { occurrences: 4 });
        assert!(
            (v[0] - 2.0).abs() < 0.05 && (v[1] - 4.0).abs() < 0.1,
            "{v:?}"
        );
        // Another series that the event also selects has learned nothing.
        assert_eq!(
            cal.effect_for(cal.get(1).unwrap(), &key("h", "other")).1,
            EffectSource::Declared
        );
        // Reloading the same event keeps what was learned; re-declaring it drops it.
        let same = cal.get(1).unwrap().clone();
        cal.insert(same.clone()).unwrap();
        assert_eq!(cal.learned(1, &k).map(|l| l.occurrences), Some(4));
        cal.insert(Event {
            effect: Effect::Multiply(3.0),
            ..same
        })
        .unwrap();
        assert!(cal.learned(1, &k).is_none());
    }

    #[test]
    fn an_additive_event_is_learned_and_a_no_show_pulls_it_back() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Add(1.0),
        ))
        .unwrap();
        let k = key("h", "batch");
        let mut learner = EffectLearner::default();
        // True effect: x2 on a flat 3 cores, i.e. +3 cores.
        let updates = learn_days(&mut cal, &mut learner, &k, 0..3, 2.0, |_| 3.0);
        let Effect::Add(x) = updates.last().unwrap().learned else {
            panic!()
        };
        assert!((x - 3.0).abs() < 0.15, "{updates:?}");
        // Then the batch stops running: the effect fades towards 0.
        let before = x;
        let updates = learn_days(&mut cal, &mut learner, &k, 3..6, 1.0, |_| 3.0);
        let Effect::Add(after) = updates.last().unwrap().learned else {
            panic!()
        };
        assert!(after < before * 0.5, "{before} -> {after}");
    }

    #[test]
    fn an_idle_workload_learns_what_its_event_adds() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Add(2.0),
        ))
        .unwrap();
        let k = key("h", "batch");
        let mut learner = EffectLearner::default();
        let mut rng = Rng(3);
        let mut last = None;
        for i in 0..3 * 288 {
            let ts = i * 5 * MINUTE_MS;
            let on = !cal.active(&k, &Labels::new(), ts).is_empty();
            // Idle (baseline 0) but for 4 cores during the event.
            let actual = if on {
                (4.0 + 0.2 * rng.normal()).max(0.0)
            } else {
                0.0
            };
            last = learner
                .observe(&mut cal, &k, &Labels::new(), ts, actual, 0.0)
                .pop()
                .or(last);
        }
        let u = last.expect("learned");
        let Effect::Add(x) = u.learned else { panic!() };
        assert!((x - 4.0).abs() < 0.2, "{u}");
        assert_eq!(u.occurrences, 3);
    }

    #[test]
    fn overlapping_events_are_not_learned_from() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(1.5),
        ))
        .unwrap();
        cal.insert(event(
            2,
            "*",
            daily("0 2 * * *", 2 * HOUR),
            Effect::Multiply(1.2),
        ))
        .unwrap();
        let mut learner = EffectLearner::default();
        let updates = learn_days(&mut cal, &mut learner, &key("h", "w"), 0..2, 2.0, |_| 1.0);
        assert!(updates.is_empty(), "{updates:?}");
        assert_eq!(learner.open_windows(), 0);
    }

    #[test]
    fn close_ended_learns_from_series_that_stopped_reporting() {
        let mut cal = Calendar::new();
        cal.insert(event(
            1,
            "*",
            Schedule::Once {
                start: 0,
                end: HOUR,
            },
            Effect::Multiply(1.5),
        ))
        .unwrap();
        let mut learner = EffectLearner::default();
        let k = key("h", "w");
        for i in 0..12 {
            let u = learner.observe(
                &mut cal,
                &k,
                &Labels::new(),
                i * 5 * MINUTE_MS,
                3.0 + 0.01 * i as f64,
                1.0,
            );
            assert!(u.is_empty());
        }
        assert!(learner.close_ended(&mut cal, HOUR - 1).is_empty());
        let u = learner.close_ended(&mut cal, HOUR);
        assert_eq!(u.len(), 1);
        let Effect::Multiply(f) = u[0].estimate else {
            panic!()
        };
        assert!((f - 3.055).abs() < 0.01, "{f}");
    }

    fn field_text() -> impl Strategy<Value = String> {
        let item = prop_oneof![
            Just("*".to_string()),
            (0u32..70).prop_map(|v| v.to_string()),
            (0u32..40, 0u32..40).prop_map(|(a, b)| format!("{a}-{b}")),
            (0u32..40, 0u32..10).prop_map(|(a, s)| format!("{a}/{s}")),
            (0u32..10).prop_map(|s| format!("*/{s}")),
            Just("mon-fri".to_string()),
            Just("jan".to_string()),
        ];
        prop::collection::vec(item, 1..4).prop_map(|v| v.join(","))
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = CronSpec::parse(&s);
            let _ = Selector::parse(&s);
            if let Ok(sel) = Selector::parse(&s) {
                prop_assert_eq!(Selector::parse(sel.as_str()).unwrap(), sel);
            }
        }

        #[test]
        fn cron_like_text_never_panics(fields in prop::collection::vec(field_text(), 0..7)) {
            let _ = CronSpec::parse(&fields.join(" "));
        }

        #[test]
        fn stored_effects_never_panic(json in "\\PC{0,60}", start in any::<i64>(), end in any::<i64>()) {
            if let Ok(effect) = serde_json::from_str::<serde_json::Value>(&json) {
                let row = StoredEvent { kind: "k".into(), selector: "*".into(), start, end, effect };
                let _ = Event::from_stored(1, &row, None);
            }
        }

        /// The next occurrence fires, and no minute before it does.
        #[test]
        fn next_occurrence_is_the_first_match(
            minute in field_text(), hour in field_text(), dom in field_text(),
            month in field_text(), dow in field_text(),
            ts in -(400 * DAY_MS)..(60 * 365 * DAY_MS),
        ) {
            let spec = format!("{minute} {hour} {dom} {month} {dow}");
            if let Ok(c) = CronSpec::parse(&spec) {
                let n = c.next_at_or_after(ts);
                prop_assert!(n.is_some(), "{spec} never fires after {ts}");
                let n = n.unwrap();
                prop_assert!(n >= ts && n % MINUTE_MS == 0);
                prop_assert!(c.matches(n), "{spec}: {n} does not match");
                // Check every minute in between when that is cheap.
                let first = ts.div_euclid(MINUTE_MS) + i64::from(ts.rem_euclid(MINUTE_MS) != 0);
                let last = n / MINUTE_MS;
                if last - first < 3 * 1440 {
                    for m in first..last {
                        prop_assert!(!c.matches(m * MINUTE_MS), "{spec}: {} matches before {n}", m * MINUTE_MS);
                    }
                }
            }
        }

        #[test]
        fn apply_never_panics_and_keeps_rows_valid(
            start in any::<i64>(), step in any::<i64>(), horizon in 0usize..20,
            f in -2.0f64..5.0, x in -5.0f64..5.0, s in any::<i64>(), d in 1i64..10_000_000,
            raw in prop::collection::vec(0.0f64..10.0, 0..60),
        ) {
            let mut cal = Calendar::new();
            let _ = cal.insert(event(1, "*", Schedule::Once { start: s, end: s.saturating_add(d) }, Effect::Multiply(f)));
            let _ = cal.insert(event(2, "*", daily("*/7 * * * *", d), Effect::Add(x)));
            let levels = [0.1, 0.5, 0.9];
            let mut values: Vec<f64> = raw.chunks_exact(3).flat_map(|r| {
                let mut r = r.to_vec();
                r.sort_by(f64::total_cmp);
                r
            }).collect();
            values.truncate(horizon * 3);
            let h = values.len() / 3;
            if cal.apply(&key("h", "w"), &Labels::new(), start, step, h, &levels, &mut values).is_ok() {
                for row in values.chunks(3) {
                    prop_assert!(row[0] >= 0.0 && row[0] <= row[1] && row[1] <= row[2], "{row:?}");
                }
            }
        }
    }
}
