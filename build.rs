//! Exposes the locked versions of the deflate implementations (libdeflate
//! through libdeflate-sys, zlib-rs for streamed large files) to the crate,
//! so stage keys change when a compressor does.
fn main() {
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
