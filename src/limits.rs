//! Lambda's quotas (50 MB zipped for a direct upload, 262,144,000 bytes
//! unzipped for a function with all its layers, 5 layers) and the check of
//! one function against them. A leaf: the manifest (layer count), the
//! pipeline (before writing) and `lbuild size` share it.

/// A zip larger than this cannot be uploaded directly (UpdateFunctionCode
/// with ZipFile); it has to go through S3.
pub const DIRECT_UPLOAD_LIMIT: u64 = 50 * 1000 * 1000;
/// Unzipped size of a function together with all its layers.
pub const UNZIPPED_LIMIT: u64 = 262_144_000;
/// Layers one function may use.
pub const MAX_LAYERS: usize = 5;

/// One contributor to a function's unzipped total: the function's own zip
/// or one of its layers.
#[derive(Debug, Clone)]
pub struct Contributor {
    pub name: String,
    pub unzipped: u64,
}

/// What Lambda's quotas say about one function with its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitCheck {
    /// Over the unzipped quota: the message naming the limit and the
    /// largest contributors.
    pub over_unzipped: Option<String>,
    /// The zip is over the direct-upload size.
    pub over_direct_upload: Option<String>,
}

/// Checks one function's zip (and its layers) against the quotas.
pub fn check_limits(
    function: &str,
    zipped: u64,
    own: Contributor,
    layers: &[Contributor],
) -> LimitCheck {
    let total: u64 = own.unzipped + layers.iter().map(|l| l.unzipped).sum::<u64>();
    let over_unzipped = (total > UNZIPPED_LIMIT).then(|| {
        let mut parts: Vec<&Contributor> = std::iter::once(&own).chain(layers).collect();
        parts.sort_by(|a, b| b.unzipped.cmp(&a.unzipped).then(a.name.cmp(&b.name)));
        let listed: Vec<String> = parts
            .iter()
            .map(|c| format!("{} {}", c.name, mb(c.unzipped)))
            .collect();
        format!(
            "{function} is {} unzipped with its layers, over Lambda's limit of {} ({} bytes): {}",
            mb(total),
            mb(UNZIPPED_LIMIT),
            UNZIPPED_LIMIT,
            listed.join(", ")
        )
    });
    let over_direct_upload = (zipped > DIRECT_UPLOAD_LIMIT).then(|| {
        format!(
            "{function}'s zip is {}, over the {} Lambda accepts in a direct upload: deploy it through S3",
            mb(zipped),
            mb(DIRECT_UPLOAD_LIMIT)
        )
    });
    LimitCheck {
        over_unzipped,
        over_direct_upload,
    }
}

/// Megabytes as Lambda's documentation counts them (10^6 bytes).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
