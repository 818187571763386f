//! Lambda's quotas (50 MB zipped for a direct upload, 262,144,000 bytes
//! unzipped for a function with all its layers, 5 layers) and the check of
//! one function against them. A leaf: the manifest (layer count), the
//! pipeline (before writing) and `lbuild size` share it.

use crate::units::{human_size, limit};

/// A zip larger than this cannot be uploaded directly (UpdateFunctionCode
/// with ZipFile); it has to go through S3.
pub(crate) const DIRECT_UPLOAD_LIMIT: u64 = 50 * 1000 * 1000;
/// Unzipped size of a function together with all its layers.
pub(crate) const UNZIPPED_LIMIT: u64 = 262_144_000;
/// Layers one function may use.
pub(crate) const MAX_LAYERS: usize = 5;

/// One contributor to a function's unzipped total: the function's own zip
/// or one of its layers.
#[derive(Debug, Clone)]
pub(crate) struct Contributor {
    pub name: String,
    pub unzipped: u64,
    /// Where its bytes are, largest first (top-level directories of the
    /// zip), when known: what the over-the-limit message names.
    pub parts: Vec<(String, u64)>,
}

/// How many of a contributor's parts the message names.
const PARTS_NAMED: usize = 5;

impl Contributor {
    /// `orders 200.0 MiB (numpy/ 120.0 MiB, pandas/ 60.0 MiB, 3 more)`.
    fn describe(&self) -> String {
        let mut text = format!("{} {}", self.name, human_size(self.unzipped));
        if !self.parts.is_empty() {
            let mut named: Vec<String> = self
                .parts
                .iter()
                .take(PARTS_NAMED)
                .map(|(name, bytes)| format!("{name} {}", human_size(*bytes)))
                .collect();
            if self.parts.len() > PARTS_NAMED {
                named.push(format!("{} more", self.parts.len() - PARTS_NAMED));
            }
            text.push_str(&format!(" ({})", named.join(", ")));
        }
        text
    }
}

/// An archive's unzipped bytes by top-level directory (a file at the top
/// counts under its own name), largest first, ties by name. `prefix` (a
/// layer's `python/`) is looked through.
pub(crate) fn largest_directories<'a>(
    entries: impl IntoIterator<Item = (&'a str, u64)>,
    prefix: &str,
) -> Vec<(String, u64)> {
    let mut by_dir: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, size) in entries {
        let rel = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|_| !prefix.is_empty())
            .unwrap_or(name);
        let key = match rel.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => rel.to_string(),
        };
        *by_dir.entry(key).or_default() += size;
    }
    let mut v: Vec<(String, u64)> = by_dir.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// What Lambda's quotas say about one function with its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LimitCheck {
    /// Over the unzipped quota: the message naming the limit and the
    /// largest contributors.
    pub over_unzipped: Option<String>,
    /// The zip is over the direct-upload size.
    pub over_direct_upload: Option<String>,
}

/// Checks one function's zip (and its layers) against the quotas.
pub(crate) fn check_limits(
    function: &str,
    zipped: u64,
    own: Contributor,
    layers: &[Contributor],
) -> LimitCheck {
    let total: u64 = own.unzipped + layers.iter().map(|l| l.unzipped).sum::<u64>();
    let over_unzipped = (total > UNZIPPED_LIMIT).then(|| {
        let mut parts: Vec<&Contributor> = std::iter::once(&own).chain(layers).collect();
        parts.sort_by(|a, b| b.unzipped.cmp(&a.unzipped).then(a.name.cmp(&b.name)));
        let listed: Vec<String> = parts.iter().map(|c| c.describe()).collect();
        format!(
            "{function} is {} unzipped with its layers, over Lambda's limit of {}: {}",
            human_size(total),
            limit(UNZIPPED_LIMIT),
            listed.join(", ")
        )
    });
    let over_direct_upload = (zipped > DIRECT_UPLOAD_LIMIT).then(|| {
        format!(
            "{function}'s zip is {}, over the {} Lambda accepts in a direct upload: deploy it through S3",
            human_size(zipped),
            limit(DIRECT_UPLOAD_LIMIT)
        )
    });
    LimitCheck {
        over_unzipped,
        over_direct_upload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_largest_contributors_and_where_their_bytes_are() {
        let parts = largest_directories(
            [
                ("numpy/core/a.so", 60_000_000),
                ("numpy/__init__.py", 1_000),
                ("pandas/x.so", 39_000_000),
                ("app.py", 999_000),
            ],
            "",
        );
        assert_eq!(parts[0], ("numpy/".to_string(), 60_001_000));
        assert_eq!(parts[2], ("app.py".to_string(), 999_000));
        let c = check_limits(
            "orders",
            60_000_000,
            Contributor {
                name: "orders".into(),
                unzipped: 100_000_000,
                parts,
            },
            &[Contributor {
                name: "layer common".into(),
                unzipped: 200_000_000,
                parts: Vec::new(),
            }],
        );
        let msg = c.over_unzipped.unwrap();
        assert!(msg.contains("262,144,000 bytes (250.0 MiB)"), "{msg}");
        assert!(
            msg.contains("orders 95.4 MiB (numpy/ 57.2 MiB, pandas/ 37.2 MiB, app.py 975.6 KiB)"),
            "{msg}"
        );
        assert!(
            msg.find("layer common").unwrap() < msg.find("orders 95").unwrap(),
            "{msg}"
        );
        assert!(c.over_direct_upload.unwrap().contains("S3"));
        let ok = check_limits(
            "f",
            10,
            Contributor {
                name: "f".into(),
                unzipped: 10,
                parts: Vec::new(),
            },
            &[],
        );
        assert_eq!(ok, LimitCheck::default());
    }

    #[test]
    fn a_layer_prefix_is_looked_through() {
        let parts = largest_directories([("python/pkg/a.py", 10), ("python/b.py", 5)], "python");
        assert_eq!(parts, [("pkg/".to_string(), 10), ("b.py".to_string(), 5)]);
    }
}
