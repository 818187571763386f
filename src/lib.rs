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
mod remote;
mod report;
mod sanitize;
mod size;
mod stages;
mod stats;
mod store;
mod store_mark;
mod templates;
mod terraform;
mod units;
mod walk;
mod watch;
mod watch_root;

pub use error::{Error, Result};
// What the binary and the integration tests reach for; everything else is
// the crate's own.
pub use manifest::{Architecture, Runtime};
pub use report::{Reporter, error_text};
pub use stages::deps::installer::{PIP_KEYED_ENV, UV_KEYED_ENV};
