//! Exposes the locked versions of the deflate implementations (libdeflate
//! through libdeflate-sys, zlib-rs for streamed large files) to the crate,
//! so stage keys change when a compressor does (without them the build
//! fails, see `build/locked.rs`, unless told otherwise), and the commit
//! lbuild was built from to `--version`.

// No fs-err here (not a build dependency); every read's error is dropped.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

#[path = "build/locked.rs"]
mod locked;

fn main() {
    commit();
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build/locked.rs");
    println!("cargo:rerun-if-env-changed={}", locked::ALLOW_UNKNOWN);
    let lock = std::fs::read_to_string("Cargo.lock").ok();
    let allow = std::env::var_os(locked::ALLOW_UNKNOWN).is_some_and(|v| v == "1");
    for (var, name) in [
        ("LBUILD_LIBDEFLATE_VERSION", "libdeflate-sys"),
        ("LBUILD_ZLIB_RS_VERSION", "zlib-rs"),
    ] {
        match locked::locked_version(lock.as_deref(), name, allow) {
            Ok(v) => println!("cargo:rustc-env={var}={v}"),
            Err(why) => {
                // A cargo:warning scrolls by; an error stops the build.
                eprintln!("error: {why}");
                std::process::exit(1);
            }
        }
    }
}

/// `LBUILD_COMMIT` when set (a build from the sdist, which has no .git),
/// else `git rev-parse` when this directory is the repository's top (not a
/// checkout that merely sits inside some other repository), else "unknown".
/// Never fails the build.
fn commit() {
    println!("cargo:rerun-if-env-changed=LBUILD_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let from_env = std::env::var("LBUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let here = std::env::var("CARGO_MANIFEST_DIR").ok();
    let top = git(&["rev-parse", "--show-toplevel"]);
    let in_own_repo = match (&here, &top) {
        (Some(here), Some(top)) => {
            std::fs::canonicalize(here).ok() == std::fs::canonicalize(top).ok()
        }
        _ => false,
    };
    let from_git = if in_own_repo {
        // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it
        // names (a commit) and packed-refs (after `git gc`).
        for file in ["HEAD", "packed-refs"] {
            for dir in ["--git-dir", "--git-common-dir"] {
                if let Some(d) = git(&["rev-parse", dir]) {
                    println!("cargo:rerun-if-changed={d}/{file}");
                }
            }
        }
        if let (Some(d), Some(r)) = (
            git(&["rev-parse", "--git-common-dir"]),
            git(&["symbolic-ref", "-q", "HEAD"]),
        ) {
            println!("cargo:rerun-if-changed={d}/{r}");
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    } else {
        None
    };
    let commit = from_env.or(from_git).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LBUILD_COMMIT={commit}");
}
