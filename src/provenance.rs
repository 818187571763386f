//! `build --provenance`: an in-toto Statement v1 with an SLSA provenance
//! v1 predicate (`dist/NAME.intoto.json` beside the zip) saying which
//! inputs the zip was built from: the manifest, the requirements or lock
//! file, the digest of the function's own files, the runtime and
//! architecture, and lbuild's version.
//!
//! It owns the statement's shape and the source tree's digest. It does not
//! sign (the statement is meant for `cosign attest-blob` or `gh
//! attestation`, see README) and does not build: it reads a finished zip
//! through `sbom::read_zip`. Like the SBOM it has no clock, no absolute
//! path and keys in a fixed order, so two builds of the same inputs write
//! the same bytes.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::manifest::Plan;
use crate::sbom::{Contents, ZipContents, beside_zip, hex, write_beside};

/// The build type this statement describes (a URI naming lbuild's
/// reproducible-zip build, versioned with the statement's layout).
pub(crate) const BUILD_TYPE: &str = "urn:lbuild:buildtype:lambda-zip:v1";

/// The digest of the files the zip holds that no distribution owns (the
/// function's sources and config): SHA-256 over one `SHA256HEX  NAME\n`
/// line per file, sorted by name — what `sha256sum` prints for them, so
/// an auditor can recompute it from an unpacked zip or a checkout.
pub(crate) fn source_tree_digest(z: &ZipContents) -> String {
    let mut h = Sha256::new();
    for f in &z.own_files {
        h.update(format!("{}  {}\n", f.sha256, f.name).as_bytes());
    }
    hex(&h.finalize())
}

/// The statement for `zip`, read back as `z`.
pub(crate) fn statement(plan: &Plan, z: &ZipContents) -> crate::Result<Value> {
    let rel = |p: &Path| {
        p.strip_prefix(&plan.project_dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/")
    };
    let file_digest = |p: &Path| -> crate::Result<String> {
        let bytes = fs_err::read(p).map_err(crate::Error::io("cannot read", p))?;
        Ok(hex(&Sha256::digest(&bytes)))
    };
    let manifest = rel(&plan.manifest_path);
    let mut resolved = vec![json!({
        "uri": format!("file:{manifest}"),
        "name": "manifest",
        "digest": {"sha256": file_digest(&plan.manifest_path)?},
    })];
    if let Some(deps) = &plan.deps {
        let name = if deps.lock.is_some() {
            "lock"
        } else {
            "requirements"
        };
        resolved.push(json!({
            "uri": format!("file:{}", rel(&deps.requirements)),
            "name": name,
            "digest": {"sha256": file_digest(&deps.requirements)?},
        }));
    }
    resolved.push(json!({
        "name": "sources",
        "digest": {"sha256": source_tree_digest(z)},
        "annotations": {
            "files": z.own_files.len(),
            "digest": "sha256 of `sha256sum`-style lines (HEX, two spaces, archive name) of the zip's files outside any distribution, sorted by name",
        },
    }));
    resolved.push(json!({
        "uri": format!("urn:aws:lambda:runtime:{}", z.runtime),
        "name": "runtime",
        "annotations": {"runtime": z.runtime, "architecture": z.architecture},
    }));
    Ok(json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": z.file_name, "digest": {"sha256": z.sha256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "manifest": manifest,
                    "artifact": {"kind": z.kind, "name": z.name},
                    "runtime": z.runtime,
                    "architecture": z.architecture,
                },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {
                    "id": format!("pkg:cargo/lbuild@{}", env!("CARGO_PKG_VERSION")),
                    "version": {"lbuild": env!("CARGO_PKG_VERSION")},
                },
                "metadata": {},
            },
        },
    }))
}

/// The statement as pretty JSON ending in a newline.
pub(crate) fn text(plan: &Plan, z: &ZipContents) -> crate::Result<String> {
    let mut t = serde_json::to_string_pretty(&statement(plan, z)?).expect("JSON values serialise");
    t.push('\n');
    Ok(t)
}

/// `build --provenance`: `dist/NAME.intoto.json` beside each zip `built`
/// holds (after the build succeeded).
pub(crate) fn write_for_build(
    ws: &crate::manifest::Workspace,
    built: &crate::outcome::WorkspaceOutcome,
    contents: &Contents,
    reporter: &crate::report::Reporter,
) -> crate::Result<()> {
    for plan in &ws.artifacts {
        let (Some(o), Some(z)) = (
            built.built(&plan.name, plan.kind.label()),
            contents.get(&(plan.kind.label(), plan.name.clone())),
        ) else {
            continue;
        };
        let path = beside_zip(&o.zip, "intoto.json");
        write_beside(&path, &text(plan, z)?)?;
        reporter.info(format!("wrote {}", path.display()));
    }
    Ok(())
}
