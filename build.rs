//! Exposes the locked versions of the deflate implementations (libdeflate
//! through libdeflate-sys, zlib-rs for streamed large files) to the crate,
//! so stage keys change when a compressor does. Without them the build
//! fails (see `build/locked.rs`), unless told otherwise.

#[path = "build/locked.rs"]
mod locked;

fn main() {
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
