//! Which directory is lbuild's machine store, and which names in it are
//! lbuild's: the store is marked (`CACHEDIR.TAG`, so backup tools skip it,
//! and `lbuild-store`, naming lbuild and the store's format) only when
//! lbuild creates the directory or finds it empty, so `LBUILD_STORE=$HOME`
//! marks nothing; trimming refuses an unmarked directory and, in a marked
//! one, removes only names lbuild's own layout produces
//! (`entries/ab/HASH-x|r-SETTINGS16.zip`, `deps/KEY/`). Owns the mark and
//! the layout's names; does not read or write the store's contents.

use std::path::Path;

/// The file that says a directory is lbuild's machine store.
pub(crate) const MARK: &str = "lbuild-store";

/// The store's layout version, written into [`MARK`].
pub(crate) const FORMAT: u32 = 1;

const TAG: &str = "CACHEDIR.TAG";
const TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# lbuild's machine store (see `lbuild cache stats`, `lbuild gc --max-size`)\n";

/// Whether `root` is a machine store lbuild made: its mark, or (a store
/// made before the mark existed) lbuild's own `CACHEDIR.TAG`.
pub(crate) fn is_marked(root: &Path) -> bool {
    let read = |name: &str| fs_err::read_to_string(root.join(name)).unwrap_or_default();
    read(MARK).starts_with("lbuild machine store") || read(TAG) == TAG_TEXT
}

/// Marks `root` as lbuild's store when lbuild just `created` it or it is
/// empty (or it carries the tag of an older lbuild's store); a directory
/// with anything else in it is left unmarked, and so never trimmed.
pub(crate) fn mark_if_ours(root: &Path, created: bool) {
    if !(created || is_empty(root) || is_marked(root)) {
        return;
    }
    if !root.join(MARK).exists() {
        let _ = fs_err::write(
            root.join(MARK),
            format!("lbuild machine store, format {FORMAT}\n"),
        );
    }
    if !root.join(TAG).exists() {
        let _ = fs_err::write(root.join(TAG), TAG_TEXT);
    }
}

fn is_empty(dir: &Path) -> bool {
    fs_err::read_dir(dir).is_ok_and(|mut rd| rd.next().is_none())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An entry's shard directory name (`ab`).
pub(crate) fn is_shard(name: &str) -> bool {
    is_hex(name, 2)
}

/// A compressed entry's file name in `shard`:
/// `HASH-x|r-SETTINGS16.zip`, its hash starting with the shard's name.
pub(crate) fn is_entry_name(shard: &str, name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".zip") else {
        return false;
    };
    let parts: Vec<&str> = stem.split('-').collect();
    matches!(parts.as_slice(), [hash, "x" | "r", settings]
        if is_hex(hash, 64) && hash.starts_with(shard) && is_hex(settings, 16))
}

/// A dependency tree's key directory name (`deps/KEY`).
pub(crate) fn is_tree_name(name: &str) -> bool {
    is_hex(name, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_or_new_directory_is_marked() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        fs_err::create_dir_all(home.join("photos")).unwrap();
        mark_if_ours(&home, false);
        assert!(!is_marked(&home) && !home.join(TAG).exists());
        let empty = d.path().join("empty");
        fs_err::create_dir(&empty).unwrap();
        mark_if_ours(&empty, false);
        assert!(is_marked(&empty) && empty.join(TAG).exists());
        // An older lbuild's store (its tag only) gets the mark.
        let old = d.path().join("old");
        fs_err::create_dir_all(old.join("deps")).unwrap();
        fs_err::write(old.join(TAG), TAG_TEXT).unwrap();
        mark_if_ours(&old, false);
        assert!(old.join(MARK).exists());
    }

    #[test]
    fn only_the_layouts_names_are_lbuilds() {
        let h = "ab".to_string() + &"0".repeat(62);
        assert!(is_entry_name("ab", &format!("{h}-x-0123456789abcdef.zip")));
        assert!(!is_entry_name("cd", &format!("{h}-x-0123456789abcdef.zip")));
        assert!(!is_entry_name("20", "holiday.zip"));
        assert!(!is_shard("2024") && is_shard("0f"));
        assert!(is_tree_name(&h) && !is_tree_name("myproject"));
    }
}
