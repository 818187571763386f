//! `lbuild watch`: rebuild on save. (Lands with the watch issue.)

use crate::cli::{GlobalArgs, WatchArgs};
use crate::report::Reporter;

pub fn run(global: &GlobalArgs, _args: &WatchArgs, reporter: &Reporter) -> crate::Result<()> {
    let plan = global.plan()?;
    let outcome = crate::pipeline::build(&plan, reporter)?;
    crate::pipeline::print_outcome(&outcome, reporter);
    Err(crate::Error::Input {
        message: "lbuild watch is not implemented yet".into(),
        hint: "run lbuild after each change".into(),
    })
}
