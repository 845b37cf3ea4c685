//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1e9`): parsed
//! into plain numbers (cores, bytes) and written back in the forms
//! `kubectl` shows (`250m`, `512Mi`).

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{text:?} is not a Kubernetes quantity ({why}): expected e.g. \"250m\", \"1.5\", \"512Mi\", \"1G\""
)]
pub struct QuantityError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parses a quantity into a number in the base unit (cores for CPU, bytes
/// for memory): `"250m"` is 0.25, `"1Gi"` is 1073741824, `"1e3"` is 1000.
/// Negative, infinite and malformed quantities are refused.
pub fn parse_quantity(text: &str) -> Result<f64, QuantityError> {
    let err = |why| QuantityError {
        text: text.to_string(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = if let Some(n) = s.strip_suffix('E') {
        // "1E" is exa; "1E3" (an exponent) has digits after the E.
        (n, 1e18)
    } else if let Some(&(suffix, f)) = SUFFIXES.iter().find(|(suffix, _)| s.ends_with(suffix)) {
        (&s[..s.len() - suffix.len()], f)
    } else {
        (s, 1.0)
    };
    // Only a plain decimal number (with an optional exponent) may precede
    // the suffix: "inf", "NaN", "0x10" and "1.5.2" are refused.
    let plain = number
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'));
    if number.is_empty() || !plain || !number.chars().any(|c| c.is_ascii_digit()) {
        return Err(err("it does not start with a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| err("its number does not parse"))?;
    let value = value * factor;
    if !value.is_finite() {
        return Err(err("it is too large"));
    }
    if value < 0.0 {
        return Err(err("it is negative"));
    }
    Ok(value)
}

/// A CPU amount in cores as a quantity, in whole millicores rounded up
/// (`0.25` → `"250m"`, `2` → `"2"`): rounding up never gives less than
/// planned.
pub fn format_cpu(cores: f64) -> String {
    let milli = (cores.max(0.0) * 1000.0 - 1e-6).ceil().max(1.0) as u64;
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// A memory amount in bytes as a quantity, in whole MiB rounded up
/// (`"512Mi"`, `"2Gi"` when it is whole GiB).
pub fn format_memory(bytes: f64) -> String {
    let mib = (bytes.max(0.0) / 1_048_576.0 - 1e-9).ceil().max(1.0) as u64;
    if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// The number a CPU quantity written by [`format_cpu`] stands for.
pub fn rounded_cpu(cores: f64) -> f64 {
    parse_quantity(&format_cpu(cores)).unwrap_or(cores)
}

/// The number a memory quantity written by [`format_memory`] stands for.
pub fn rounded_memory(bytes: f64) -> f64 {
    parse_quantity(&format_memory(bytes)).unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_quantity("250m").unwrap(), 0.25);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1.5").unwrap(), 1.5);
        assert_eq!(parse_quantity("512Mi").unwrap(), 536_870_912.0);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1_073_741_824.0);
        assert_eq!(parse_quantity("1G").unwrap(), 1e9);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity("2E").unwrap(), 2e18);
        assert_eq!(parse_quantity("100k").unwrap(), 100_000.0);
        assert!((parse_quantity("500u").unwrap() - 5e-4).abs() < 1e-15);
        assert_eq!(parse_quantity(" 3Ki ").unwrap(), 3072.0);
    }

    #[test]
    fn refuses_bad_quantities_with_the_text() {
        for bad in ["", "abc", "-1", "inf", "NaN", "1.2.3", "Mi", "12Zi", "0x10"] {
            let err = parse_quantity(bad).unwrap_err();
            assert_eq!(err.text, bad, "{bad}: {err}");
        }
        assert!(
            parse_quantity("-1")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
    }

    #[test]
    fn formats_round_up_and_read_back() {
        assert_eq!(format_cpu(0.25), "250m");
        assert_eq!(format_cpu(0.2501), "251m");
        assert_eq!(format_cpu(2.0), "2");
        assert_eq!(format_cpu(0.0), "1m");
        assert_eq!(format_memory(536_870_912.0), "512Mi");
        assert_eq!(format_memory(536_870_913.0), "513Mi");
        assert_eq!(format_memory(2.0 * 1_073_741_824.0), "2Gi");
        for x in [0.001, 0.3333, 1.0, 7.25] {
            assert!(rounded_cpu(x) >= x - 1e-9);
        }
        for x in [1.0, 1e6, 3.3e9] {
            assert!(rounded_memory(x) >= x);
        }
    }
}
