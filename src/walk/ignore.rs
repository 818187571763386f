//! The ignore files a project walk honours (`.gitignore`, `.lbuildignore`,
//! `.git/info/exclude`), as a stack following the walk's depth.

use std::path::{Path, PathBuf};

use super::WalkError;
use crate::exclusions::{IGNORE_FILES, VIRTUALENV_MARKER};

/// The ignore matchers in force at one point of a depth-first walk.
#[derive(Default)]
pub(super) struct IgnoreStack {
    levels: Vec<(usize, ignore::gitignore::Gitignore)>,
}

impl IgnoreStack {
    /// Entering depth `depth`: the levels at that depth or deeper belong
    /// to a finished subtree.
    pub(super) fn enter(&mut self, depth: usize) {
        self.levels.retain(|(d, _)| *d < depth);
    }

    /// The ignore files from `project` down to `dir` (both included),
    /// `.git/info/exclude` first when `.git` is a directory in between.
    pub(super) fn above(project: &Path, dir: &Path) -> Result<IgnoreStack, WalkError> {
        let mut chain: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| a.starts_with(project))
            .collect();
        chain.reverse();
        let mut stack = IgnoreStack::default();
        if let Some(repo) = chain.iter().find(|a| a.join(".git").is_dir()) {
            let exclude = repo.join(".git/info/exclude");
            if let Some(m) = read_matcher(repo, &[exclude])? {
                stack.levels.push((0, m));
            }
        }
        for a in chain {
            if let Some(m) = read_ignores(a)? {
                stack.levels.push((0, m));
            }
        }
        Ok(stack)
    }

    pub(super) fn push(&mut self, depth: usize, m: ignore::gitignore::Gitignore) {
        self.levels.retain(|(d, _)| *d < depth);
        self.levels.push((depth, m));
    }

    /// Whether the entry at `depth` is ignored by its ancestors' files:
    /// the deepest file with a matching line decides (a `!` line re-includes).
    pub(super) fn ignored(&self, path: &Path, is_dir: bool, depth: usize) -> bool {
        for (d, m) in self.levels.iter().rev() {
            if *d >= depth {
                continue;
            }
            match m.matched(path, is_dir) {
                ignore::Match::None => continue,
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
            }
        }
        false
    }
}

/// 0 for a name that may be an ignore file or the virtualenv marker (in
/// any case: a case-insensitive file system opens it by such a name), 1
/// for the others: the sort that lists those names first.
pub(super) fn probed_first(name: &std::ffi::OsStr) -> u8 {
    let may_be = |n: &str| name.as_encoded_bytes().eq_ignore_ascii_case(n.as_bytes());
    u8::from(!(IGNORE_FILES.iter().any(|f| may_be(f)) || may_be(VIRTUALENV_MARKER)))
}

/// `dir`'s own ignore files as one matcher (later files win), if any.
pub(super) fn read_ignores(dir: &Path) -> Result<Option<ignore::gitignore::Gitignore>, WalkError> {
    let files: Vec<PathBuf> = IGNORE_FILES.iter().map(|f| dir.join(f)).collect();
    read_matcher(dir, &files)
}

/// One matcher rooted at `root` from the lines of `files` (missing files
/// are skipped; an unreadable one is an error; a line that is not a valid
/// glob is skipped, as git does).
fn read_matcher(
    root: &Path,
    files: &[PathBuf],
) -> Result<Option<ignore::gitignore::Gitignore>, WalkError> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    let mut any = false;
    for file in files {
        let text = match fs_err::read(file) {
            Ok(bytes) => bytes,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(source) => {
                return Err(WalkError::Unreadable {
                    path: file.clone(),
                    source,
                });
            }
        };
        for line in String::from_utf8_lossy(&text).lines() {
            if builder.add_line(Some(file.clone()), line).is_ok() {
                any = true;
            }
        }
    }
    if !any {
        return Ok(None);
    }
    match builder.build() {
        Ok(m) if !m.is_empty() => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) => Err(WalkError::Io {
            path: root.to_path_buf(),
            message: e.to_string(),
        }),
    }
}
