//! Sizes as people read them: one unit system everywhere, binary units
//! named as such (KiB, MiB, GiB, as `du -h` computes them); Lambda's
//! limits are quoted in bytes, as AWS defines them, beside that. A leaf.

/// `512 B`, `3.4 KiB`, `7.3 MiB`, `1.2 GiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A limit as AWS writes it, in bytes with thousands separators, and in
/// the unit system above: `262,144,000 bytes (250.0 MiB)`.
pub(crate) fn limit(bytes: u64) -> String {
    format!("{} bytes ({})", thousands(bytes), human_size(bytes))
}

/// The room left under a limit, or how far over it: `12.0 MiB under`,
/// `5.0 MiB over`.
pub(crate) fn headroom(limit: u64, used: u64) -> String {
    if used > limit {
        format!("over by {}", human_size(used - limit))
    } else {
        format!("{} under", human_size(limit - used))
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit_system() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(human_size(55_000_000), "52.5 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(limit(262_144_000), "262,144,000 bytes (250.0 MiB)");
        assert_eq!(limit(50_000_000), "50,000,000 bytes (47.7 MiB)");
        assert_eq!(headroom(50_000_000, 55_242_880), "over by 5.0 MiB");
        assert_eq!(headroom(100 << 20, 90 << 20), "10.0 MiB under");
    }
}
