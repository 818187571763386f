//! lbuild: reproducible, incremental zips for Python AWS Lambda functions.
//!
//! `main.rs` only parses arguments and maps errors to exit codes; the work
//! lives here so tests and benchmarks can call it. See ARCHITECTURE.md.

mod archive;
mod cache;
mod check;
mod clean;
pub mod cli;
mod context;
#[cfg(feature = "aws")]
pub mod deploy;
mod entry;
mod error;
mod exclusions;
mod explain;
mod gc;
mod hits;
mod init;
mod invoke;
mod limits;
mod lock;
mod manifest;
mod outcome;
mod output;
mod pipeline;
mod process;
mod provenance;
mod remote;
mod report;
mod runtimes;
mod sanitize;
mod sbom;
mod size;
mod stages;
mod stats;
mod store;
mod store_mark;
mod templates;
mod terraform;
mod units;
mod verify;
mod walk;
mod watch;
mod watch_root;

pub use error::{Error, Result};
// What the binary and the integration tests reach for; everything else is
// the crate's own.
pub use manifest::{Architecture, Runtime};
// What a build produced: `deploy`'s public functions take these.
pub use outcome::{ArtifactResult, BuildOutcome, WorkspaceOutcome};
pub use report::{Reporter, error_text};
pub use stages::deps::installer::{PIP_KEYED_ENV, UV_KEYED_ENV};

/// build.rs's reading of Cargo.lock, tested here (a build script has no
/// tests of its own).
#[cfg(test)]
#[path = "../build/locked.rs"]
mod build_locked;

#[cfg(test)]
mod build_locked_tests {
    use super::build_locked::locked_version;

    #[test]
    fn compressor_versions_come_from_cargo_lock_or_stop_the_build() {
        let lock = "version = 4\n\n[[package]]\nname = \"zlib-rs\"\nversion = \"0.5.2\"\n";
        assert_eq!(
            locked_version(Some(lock), "zlib-rs", false).unwrap(),
            "0.5.2"
        );
        let missing = locked_version(Some(lock), "libdeflate-sys", false).unwrap_err();
        assert!(missing.contains("libdeflate-sys"), "{missing}");
        let no_lock = locked_version(None, "zlib-rs", false).unwrap_err();
        assert!(
            no_lock.contains("LBUILD_ALLOW_UNKNOWN_COMPRESSOR_VERSIONS"),
            "{no_lock}"
        );
        assert_eq!(locked_version(None, "zlib-rs", true).unwrap(), "unknown");
        // This very build read real versions.
        assert_ne!(env!("LBUILD_ZLIB_RS_VERSION"), "unknown");
        assert_ne!(env!("LBUILD_LIBDEFLATE_VERSION"), "unknown");
    }
}
