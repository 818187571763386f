//! End-to-end tests: the real `lbuild` binary on projects made in temp dirs,
//! zips read back with Python's `zipfile` and `unzip -t`.

mod architecture;
mod common;

mod contract;
mod defaults;
mod deploy;
mod deps;
mod errors;
mod exactness;
mod explain;
mod failures;
mod incremental;
mod invoke;
mod lockfiles;
mod moto;
mod safety;
mod store;
mod trust;
mod watch;
mod watch_deploy;
mod workspace;
