//! A dependency tree this build did not install (adopted from the machine
//! store, or fetched) is judged only once it is known good: if it claims a
//! path the sources or config files also have, or holds more than Lambda
//! unpacks, it is suspect, not the user's error — it is moved aside with
//! one warning and installed here, and only a tree installed here can
//! fail the build for it (then with the real error and hint). Owns that
//! judgement; does not decide how the package is made of the entries.

use super::{DepsError, ReadyDeps, key_dir};
use crate::context::BuildContext;
use crate::entry::Entry;
use crate::manifest::Plan;

/// Why a tree not installed by this build cannot be packaged as it is
/// (None: nothing against it). `deps` are its entries under the archive
/// prefix; `others` the sources and config files.
pub(crate) fn suspicion(deps: &[Entry], others: &[&[Entry]]) -> Option<String> {
    let names: std::collections::HashSet<&str> = others
        .iter()
        .flat_map(|v| v.iter())
        .map(|e| e.name.as_str())
        .collect();
    if let Some(e) = deps.iter().find(|e| names.contains(e.name.as_str())) {
        return Some(format!(
            "claims {}, which the function's own files have",
            crate::sanitize::escape_controls(&e.name)
        ));
    }
    let total: u64 = deps.iter().map(|e| e.size).sum();
    (total > crate::limits::UNZIPPED_LIMIT)
        .then(|| format!("lists {total} bytes, more than Lambda unpacks"))
}

/// Moves the suspect tree of deps key `key` (hex) aside and installs it
/// here; returns the fresh tree with its stage report.
pub(crate) fn install_instead(
    plan: &Plan,
    cache: &mut crate::cache::Cache,
    cx: &BuildContext,
    key: &str,
    why: &str,
) -> crate::Result<(ReadyDeps, crate::stages::StageReport)> {
    let Ok(key) = crate::cache::Hash::from_hex(key) else {
        return Err(DepsError::Io {
            context: "no dependency key to install again",
            source: std::io::Error::other(key.to_string()),
        }
        .into());
    };
    let dir = key_dir(cx.store.root(), &key);
    cx.reporter.warn(format!(
        "the dependency tree {} {why}; moved aside, installing it here",
        dir.display()
    ));
    let _ = crate::store::move_aside(&dir);
    super::install_again(plan, cache, cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: u64) -> Entry {
        Entry {
            name: name.into(),
            path: Default::default(),
            hash: blake3::hash(name.as_bytes()),
            size,
            executable: false,
        }
    }

    #[test]
    fn a_tree_claiming_a_source_path_or_too_big_is_suspect() {
        let src = [e("app.py", 10)];
        assert!(suspicion(&[e("pkg/a.py", 5)], &[&src]).is_none());
        assert!(
            suspicion(&[e("app.py", 5)], &[&src])
                .unwrap()
                .contains("claims app.py")
        );
        assert!(
            suspicion(&[e("big.bin", 300 << 20)], &[&src])
                .unwrap()
                .contains("more than Lambda unpacks")
        );
    }
}
