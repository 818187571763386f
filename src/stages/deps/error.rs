//! The deps stage's errors: what went wrong and, through
//! [`DepsError::hint`], how to fix it. Mapped to exit codes by
//! `crate::error`, not here.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("cannot use {installer} to install dependencies: {reason}")]
    InstallerMissing {
        installer: &'static str,
        reason: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Install(Box<InstallFailure>),
    #[error("{path}:{line}: {message}")]
    Requirements {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An `-e` line: installed into the target directory, an editable
    /// install is a `.pth` file holding this machine's absolute path to the
    /// package, not its code.
    #[error(
        "{path}:{line}: `{requirement}` is an editable install: the zip would hold a link to {target} on this machine instead of the package"
    )]
    Editable {
        path: PathBuf,
        line: usize,
        requirement: String,
        /// The package's directory (absolute), or the URL as written.
        target: String,
    },
    /// A lockfile that is not valid TOML (or not of its kind's shape).
    #[error("{path}:{line}: {message}")]
    Lockfile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An input lbuild will not read: not a regular file, too large, or a
    /// find-links directory too big to key.
    #[error("{message}")]
    Refused { message: String, hint: String },
    /// `source` comes from `fs_err` (or names its path itself).
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

impl DepsError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DepsError::InstallerMissing { hint, .. } => Some(hint.to_string()),
            DepsError::Install(f) => Some(f.hint.clone()),
            DepsError::Requirements { .. } => Some(
                "fix the line; included files are relative to the file that includes them".into(),
            ),
            DepsError::Editable { .. } => Some(
                "drop the -e: the path alone installs the package's files into the zip".into(),
            ),
            DepsError::Lockfile { .. } => Some(
                "fix the line, or write the lock again (`uv lock`, `poetry lock`, `uv export --format pylock.toml`)".into(),
            ),
            DepsError::Refused { hint, .. } => Some(hint.clone()),
            DepsError::Io { .. } => None,
        }
    }

    /// Wraps an I/O error (from `fs_err`, so it names its path).
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> DepsError {
        move |source| DepsError::Io { context, source }
    }
}

/// A failed install: the package (best effort), the target, and the
/// installer's own message.
#[derive(Debug, thiserror::Error)]
#[error("{installer} could not install {what} for {target} ({status}); it said:\n{output}")]
pub struct InstallFailure {
    pub installer: String,
    pub what: String,
    pub target: String,
    pub status: String,
    pub output: String,
    pub hint: String,
}
