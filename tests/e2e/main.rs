//! End-to-end tests: the real `lbuild` binary on projects made in temp dirs,
//! zips read back with Python's `zipfile` and `unzip -t`.

// Tests unwrap (a failing call panics with the test's own context) and
// may set rlimits in a child before exec.
#![allow(clippy::disallowed_methods, unsafe_code)]

mod architecture;
mod common;

mod contract;
mod defaults;
// AWS: deploy and the remote store need the `aws` feature (and link the
// SDK); the rest tests the core.
#[cfg(feature = "aws")]
mod deploy;
mod deps;
mod errors;
mod exactness;
mod explain;
mod failures;
mod incremental;
mod init_migrate;
mod invoke;
mod lockfiles;
#[cfg(feature = "aws")]
mod moto;
mod safety;
mod sbom;
mod shared_walk;
mod store;
#[cfg(feature = "aws")]
mod trust;
mod watch;
#[cfg(feature = "aws")]
mod watch_deploy;
#[cfg(not(feature = "aws"))]
mod without_aws;
mod workspace;
