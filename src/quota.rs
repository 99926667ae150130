//! Disk quotas written like cozy-stack's `--disk-quota` (go-humanize `ParseBytes`): `5GB` = 5e9,
//! `5GiB` = 5·2³⁰, a bare number is bytes. Part of the config stage.

/// Parses a humanized byte size. Returns the number of bytes, or a message saying what is wrong.
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the quota is empty".into());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num = num.replace(',', "");
    if num.is_empty() {
        return Err(format!("{input:?} does not start with a number"));
    }
    let value: f64 = num.parse().map_err(|_| format!("{num:?} is not a number"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "e" | "eb" => 1e18,
        "ki" | "kib" => 1024f64,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        "ei" | "eib" => 1024f64.powi(6),
        other => {
            return Err(format!(
                "unknown unit {other:?}; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
            ));
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(format!("{input:?} is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units() {
        assert_eq!(parse_bytes("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_bytes("5GiB").unwrap(), 5 * (1 << 30));
        assert_eq!(parse_bytes("5 gb").unwrap(), 5_000_000_000);
        assert_eq!(parse_bytes("1.5MB").unwrap(), 1_500_000);
        assert_eq!(parse_bytes("1234").unwrap(), 1234);
        assert_eq!(parse_bytes("0").unwrap(), 0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("GB").is_err());
        assert!(parse_bytes("5XB").is_err());
        assert!(parse_bytes("99999999EB").is_err());
    }
}
