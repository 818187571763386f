//! The library's error type: one enum over the modules' own errors, each
//! message saying what went wrong, where, and what to do next.

use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::cache::CacheError;
#[cfg(feature = "aws")]
use crate::deploy::DeployError;
use crate::invoke::InvokeError;
use crate::lock::LockError;
use crate::manifest::ManifestError;
use crate::stages::deps::DepsError;
use crate::store::StoreError;
use crate::walk::WalkError;
use crate::watch::WatchError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Deps(#[from] DepsError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input found while planning the build (not a manifest syntax error).
    #[error("{message}")]
    Input { message: String, hint: String },
    /// Some artifacts of a workspace failed (each was reported with its
    /// name); `code` is the worst failure's exit code.
    #[error("{failed} of {total} artifacts failed")]
    ArtifactsFailed {
        failed: usize,
        total: usize,
        code: i32,
    },
    /// `lbuild check` found syntax errors (each printed with its position,
    /// and in its JSON document).
    #[error("{count} syntax error{} in the sources", if *count == 1 { "" } else { "s" })]
    SyntaxErrors { count: usize },
    /// `lbuild verify` found a difference between a rebuild and what it
    /// checked (listed before the error): exit 1.
    #[error("{message}")]
    Differs { message: String, hint: String },
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The context of a zip that could not be written to its temp file (or
/// flushed): its hint says why a build needs room for all its zips.
pub(crate) const WRITE_ZIP: &str = "cannot write the new zip";

impl Error {
    /// A build stopped because an input changed while its zip was being
    /// written: running it again is the fix (`lbuild watch` does).
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            Error::Archive(ArchiveError::ChangedDuringBuild { .. })
        )
    }

    /// 2 for input the user must fix (manifest, sources), 1 for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Manifest(_) | Error::Input { .. } | Error::Walk(_) => 2,
            Error::SyntaxErrors { .. } => 2,
            // A requirements or lock file to fix, like the manifest.
            Error::Deps(
                DepsError::Requirements { .. }
                | DepsError::Editable { .. }
                | DepsError::Lockfile { .. }
                | DepsError::Refused { .. },
            ) => 2,
            Error::ArtifactsFailed { code, .. } => *code,
            #[cfg(feature = "aws")]
            Error::Deploy(
                DeployError::NeedsBucket { .. }
                | DeployError::Mismatch { .. }
                | DeployError::BadTimeout { .. },
            ) => 2,
            Error::Invoke(InvokeError::BadEvent { .. }) => 2,
            Error::Store(StoreError::BadSize { .. } | StoreError::NotOurs { .. }) => 2,
            _ => 1,
        }
    }

    /// What to do next, kept apart from the message so that `--json`
    /// carries `error` and `hint` as separate fields.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Manifest(e) => e.hint(),
            Error::Cache(e) => e.hint(),
            Error::Archive(e) => e.hint(),
            Error::Walk(e) => e.hint(),
            Error::Deps(e) => e.hint(),
            Error::Watch(e) => e.hint(),
            Error::Lock(e) => e.hint(),
            #[cfg(feature = "aws")]
            Error::Deploy(e) => e.hint(),
            Error::Invoke(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::Input { hint, .. } | Error::Differs { hint, .. } => Some(hint.clone()),
            Error::Sbom(_) => None,
            Error::ArtifactsFailed { .. } => None,
            Error::SyntaxErrors { .. } => {
                Some("fix the lines above; they are what Lambda would fail to import".into())
            }
            Error::Io {
                context,
                path,
                source,
            } if source.kind() == std::io::ErrorKind::StorageFull => {
                let dir = path.parent().unwrap_or(path).display();
                Some(if *context == WRITE_ZIP {
                    // Since the zips are published together, a rebuild of
                    // every function needs room for every new zip at once.
                    format!(
                        "free space in {dir}: a build keeps each new zip beside its output until \
                         its last artifact is done, so it needs room for all of them (an \
                         artifact that failed keeps its last zip)"
                    )
                } else {
                    format!("free space in {dir}")
                })
            }
            Error::Io { .. } => None,
        }
    }

    /// Whether `--json` output already carries this failure (a workspace
    /// build's per-artifact errors, `check`'s problems): the edge must not
    /// print a second JSON document for it.
    pub fn reported_in_json(&self) -> bool {
        matches!(
            self,
            Error::ArtifactsFailed { .. } | Error::SyntaxErrors { .. }
        )
    }

    /// The message with its hint on a second line, for people.
    pub fn with_hint(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self}\n  hint: {h}"),
            None => self.to_string(),
        }
    }

    /// What a build without the `aws` cargo feature says when asked for
    /// `what` (deploying, the remote cache): exit 2, what is missing, and
    /// how to get a build that has it (or, `otherwise`, do without).
    #[cfg(not(feature = "aws"))]
    pub fn without_aws(what: &str, otherwise: &str) -> Error {
        Error::Input {
            message: format!(
                "{what} needs AWS support, and this lbuild was built without it (cargo feature `aws`)"
            ),
            hint: format!(
                "use a full build: `cargo install --locked --path .` or `cargo build --release` (the `aws` feature is on by default; --no-default-features leaves it out){otherwise}"
            ),
        }
    }

    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source: without_path(source),
        }
    }
}

/// The OS error inside an fs-err error: `Error::Io` names the path itself,
/// so the message does not say it twice.
fn without_path(e: std::io::Error) -> std::io::Error {
    let inner = e
        .get_ref()
        .and_then(|i| i.source())
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    match inner {
        Some(os) => match os.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(os.kind(), os.to_string()),
        },
        None => e,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_says_where_to_free_space_and_why_a_build_needs_room_for_every_zip() {
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let zip = Error::io(WRITE_ZIP, "/out/dist/.lbuild-a.zip-1-x.tmp")(full());
        let hint = zip.hint().unwrap();
        assert!(hint.starts_with("free space in /out/dist:"), "{hint}");
        assert!(hint.contains("room for all of them"), "{hint}");
        let other = Error::io("cannot write", "/c/.lbuild/x")(full());
        assert_eq!(other.hint().as_deref(), Some("free space in /c/.lbuild"));
        let denied = Error::io(WRITE_ZIP, "/out/a.zip")(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        assert_eq!(denied.hint(), None);
    }
}
