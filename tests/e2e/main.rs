//! End-to-end tests: the real `lbuild` binary on projects made in temp dirs,
//! zips read back with Python's `zipfile` and `unzip -t`.

mod common;

mod contract;
mod deploy;
mod deps;
mod errors;
mod incremental;
mod invoke;
mod moto;
mod watch;
