//! The version Cargo.lock pins for a package, for build.rs (and its unit
//! tests in the library): the deflate implementations' versions are part
//! of every stage key, so a build that cannot read them must not key on
//! "unknown" silently (two different compressors would share keys).

/// The variable that lets a build without Cargo.lock (or without one of
/// the packages) go on with "unknown" versions: for packagers who know
/// what they do; lbuild's keys then no longer follow its compressors.
pub(crate) const ALLOW_UNKNOWN: &str = "LBUILD_ALLOW_UNKNOWN_COMPRESSOR_VERSIONS";

/// The version of `name` in `lock` (Cargo.lock's text, None when it could
/// not be read); with `allow_unknown`, "unknown" instead of an error.
pub(crate) fn locked_version(
    lock: Option<&str>,
    name: &str,
    allow_unknown: bool,
) -> Result<String, String> {
    let found = lock.and_then(|lock| {
        lock.split("[[package]]")
            .find(|p| p.contains(&format!("name = \"{name}\"\n")))
            .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_string())
    });
    match found {
        Some(v) => Ok(v),
        None if allow_unknown => Ok("unknown".into()),
        None => Err(format!(
            "{}: lbuild keys its caches on the locked version of {name}, and {}; build from the source tree with its Cargo.lock (`cargo build --locked`), or set {ALLOW_UNKNOWN}=1 to build with \"unknown\" (caches then do not follow a change of compressor)",
            if lock.is_some() {
                "Cargo.lock does not list it"
            } else {
                "Cargo.lock cannot be read"
            },
            if lock.is_some() {
                format!("Cargo.lock has no {name} package")
            } else {
                "there is no Cargo.lock beside Cargo.toml".to_string()
            },
        )),
    }
}
