//! Byte sizes as users write them: `512`, `64k`, `512m`, `2g` (binary units, like docker).

pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches(['b', 'i']);
    let (digits, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((index, _)) => trimmed.split_at(index),
        None => (trimmed, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size `{text}`: use a number with an optional k, m, g or t suffix"
            ));
        }
    };
    let value: f64 = digits.parse().map_err(|_| {
        format!("invalid size `{text}`: use a number with an optional k, m, g or t suffix")
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid size `{text}`"));
    }
    Ok((value * multiplier as f64) as u64)
}

/// Durations as users write them: `90s`, `30m`, `24h`, `7d`, `1h30m` (seconds when bare).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration `{text}`: use e.g. `90s`, `30m`, `24h` or `7d`");
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let value: i64 = number.parse().map_err(|_| invalid())?;
        total = total
            .checked_add(value.checked_mul(unit).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total
            .checked_add(number.parse().map_err(|_| invalid())?)
            .ok_or_else(invalid)?;
    }
    if text.trim().is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

/// `--shm-size` of `build` and `run`: the size of `/dev/shm`, `None` (docker's 64 MiB)
/// when not given or 0, as docker reads it.
pub fn shm_size(text: Option<&str>) -> miette::Result<Option<u64>> {
    match text.map(parse_size) {
        None | Some(Ok(0)) => Ok(None),
        Some(Ok(size)) => Ok(Some(size)),
        Some(Err(e)) => Err(miette::miette!(
            help = "give a size such as `128m` or `1g`",
            "--shm-size: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5x").is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3w").is_err());
    }
}
