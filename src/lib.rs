//! lbuild: reproducible, incremental zips for Python AWS Lambda functions.
//!
//! `main.rs` only parses arguments and maps errors to exit codes; the work
//! lives here so tests and benchmarks can call it. See ARCHITECTURE.md.

pub mod archive;
pub mod cache;
pub mod check;
pub mod cli;
pub mod deploy;
pub mod entry;
pub mod error;
pub mod init;
pub mod invoke;
pub mod lock;
pub mod manifest;
pub mod pipeline;
pub mod remote;
pub mod report;
pub mod size;
pub mod stages;
pub mod store;
pub mod terraform;
pub mod watch;

pub use error::{Error, Result};
