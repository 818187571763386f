//! Sizes as people read them: one unit system everywhere (binary units,
//! named as such: KiB, MiB, GiB, as `du -h` computes them). A leaf.

/// `512 B`, `3.4 KiB`, `7.3 MiB`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
