//! Shared pieces of the kernel's text formats: flat-keyed files
//! (`key value` per line), nested-keyed files (`name key=value ...` per
//! line), single values, and the error that says which line broke.
//!
//! Parsers are pure functions of the file's text. They never panic, and
//! they ignore keys they do not know: the kernel adds keys in the middle of
//! files from one release to the next.

use std::fmt;

/// Text that is not in the format a parser expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}: {excerpt:?}")]
pub struct ParseError {
    /// 1-based line number (0 for the file as a whole).
    pub line: usize,
    /// What was expected.
    pub what: String,
    /// The offending text, cut to 80 characters.
    pub excerpt: String,
}

impl ParseError {
    /// An error at `line` about `text`.
    pub fn new(line: usize, what: impl fmt::Display, text: &str) -> Self {
        let excerpt: String = text.chars().take(80).collect();
        ParseError {
            line,
            what: what.to_string(),
            excerpt,
        }
    }
}

/// Parses an unsigned decimal counter.
pub(crate) fn u64_at(line: usize, what: &str, text: &str) -> Result<u64, ParseError> {
    // Decimal digits only (no sign, no spaces), checked for overflow: what
    // the kernel prints, parsed without the general machinery.
    let bad = || ParseError::new(line, format!("{what}: expected an unsigned integer"), text);
    if text.is_empty() {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &c in text.as_bytes() {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(bad)?;
    }
    Ok(v)
}

/// Parses a signed decimal number.
pub(crate) fn i64_at(line: usize, what: &str, text: &str) -> Result<i64, ParseError> {
    text.parse::<i64>()
        .map_err(|_| ParseError::new(line, format!("{what}: expected an integer"), text))
}

/// A file holding one unsigned number (`memory.current`, `cpuacct.usage`).
pub fn parse_single_u64(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    u64_at(1, "value", t)
}

/// Calls `f(line_no, key, value_text)` for each `key value` line of a
/// flat-keyed file. Blank lines are skipped; a line without a value is an
/// error.
pub(crate) fn for_each_flat<'a>(
    text: &'a str,
    mut f: impl FnMut(usize, &'a str, &'a str) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    // The collector's hot loop. Lines of flat-keyed files are short, so a
    // plain byte loop beats the general splitters (which set up a memchr
    // search per line). '\n' and ' ' are ASCII: slicing at them keeps
    // char boundaries.
    let b = text.as_bytes();
    let mut start = 0;
    let mut line_no = 0;
    while start < b.len() {
        line_no += 1;
        let mut end = start;
        let mut space = usize::MAX;
        // Any whitespace but the first space (a tab, a second space, a
        // '\r'): such lines take the general path below.
        let mut odd = false;
        while end < b.len() && b[end] != b'\n' {
            let c = b[end];
            if c == b' ' && space == usize::MAX {
                space = end;
            } else if c.is_ascii_whitespace() {
                odd = true;
            }
            end += 1;
        }
        let line = &text[start..end];
        let line_start = start;
        start = end + 1;
        if !odd && space != usize::MAX && space > line_start && space + 1 < end {
            f(line_no, &text[line_start..space], &text[space + 1..end])?;
            continue;
        }
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let mut it = t.split_ascii_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some(k), Some(v), None) => f(line_no, k, v)?,
            _ => return Err(ParseError::new(line_no, "expected 'key value'", line)),
        }
    }
    Ok(())
}

/// Calls `f(line_no, key, value_text)` for each `key=value` pair of a
/// nested-keyed line (the line's first word, its name, excluded).
pub(crate) fn for_each_nested<'a>(
    line_no: usize,
    pairs: &'a str,
    mut f: impl FnMut(&'a str, &'a str) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    for pair in pairs.split_ascii_whitespace() {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ParseError::new(line_no, "expected 'key=value'", pair));
        };
        f(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_reports_the_broken_line() {
        let mut seen = Vec::new();
        for_each_flat("a 1\n\nb 2\n", |_, k, v| {
            seen.push((k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![("a", "1"), ("b", "2")]);
        let err = for_each_flat("a 1\nb\n", |_, _, _| Ok(())).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.to_string(), "line 2: expected 'key value': \"b\"");
    }

    #[test]
    fn single_values() {
        assert_eq!(parse_single_u64("4603904\n").unwrap(), 4603904);
        assert!(parse_single_u64("max\n").is_err());
        assert!(parse_single_u64("").is_err());
    }
}
