//! Exposes the locked versions of the deflate implementations (libdeflate
//! through libdeflate-sys, zlib-rs for streamed large files) to the crate,
//! so stage keys change when a compressor does, and the commit lbuild was
//! built from to `--version`.
use std::process::Command;

fn main() {
    commit();
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let locked = |name: &str| {
        lock.split("[[package]]")
            .find(|p| p.contains(&format!("name = \"{name}\"\n")))
            .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    println!(
        "cargo:rustc-env=LBUILD_LIBDEFLATE_VERSION={}",
        locked("libdeflate-sys")
    );
    println!(
        "cargo:rustc-env=LBUILD_ZLIB_RS_VERSION={}",
        locked("zlib-rs")
    );
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
