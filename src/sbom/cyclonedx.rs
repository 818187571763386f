//! CycloneDX 1.6 JSON: the zip as `metadata.component` (its SHA-256, its
//! own files nested), each layer zip and each distribution as a component
//! (a distribution's files nested as `file` components with their
//! SHA-256), and `dependencies` saying which zip holds what.

use serde_json::{Value, json};

use super::{Distribution, FileFact, License, ZipContents, source_date, uuid_from_sha256};
use crate::manifest::Plan;

pub(crate) fn document(plan: &Plan, main: &ZipContents, layers: &[ZipContents]) -> Value {
    let main_ref = artifact_ref(main);
    let mut metadata = json!({
        "tools": {"components": [{
            "type": "application",
            "name": "lbuild",
            "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": {
            "type": "application",
            "bom-ref": main_ref,
            "name": main.name,
            "hashes": [sha256(&main.sha256)],
            "properties": artifact_properties(main),
            "components": main.own_files.iter().map(file).collect::<Vec<_>>(),
        },
    });
    if let Some(ts) = source_date(plan) {
        metadata["timestamp"] = json!(ts);
    }
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut main_deps: Vec<String> = Vec::new();
    for layer in layers {
        let r = artifact_ref(layer);
        components.push(json!({
            "type": "file",
            "bom-ref": r,
            "name": layer.file_name,
            "hashes": [sha256(&layer.sha256)],
            "properties": artifact_properties(layer),
            "components": layer.own_files.iter().map(file).collect::<Vec<_>>(),
        }));
        main_deps.push(r.clone());
        let mut deps = Vec::new();
        for d in &layer.distributions {
            let dr = dist_ref(layer, d);
            components.push(distribution(d, &dr));
            deps.push(dr);
        }
        dependencies.push(json!({"ref": r, "dependsOn": deps}));
    }
    for d in &main.distributions {
        let dr = dist_ref(main, d);
        components.push(distribution(d, &dr));
        main_deps.push(dr);
    }
    dependencies.insert(0, json!({"ref": main_ref, "dependsOn": main_deps}));
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from_sha256(&main.sha256)),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    })
}

fn artifact_ref(z: &ZipContents) -> String {
    format!("lbuild:{}:{}", z.kind, z.name)
}

/// A distribution's ref, unique even when a layer and the function hold
/// the same one.
fn dist_ref(z: &ZipContents, d: &Distribution) -> String {
    format!("{}/{}", artifact_ref(z), d.purl())
}

fn artifact_properties(z: &ZipContents) -> Vec<Value> {
    vec![
        json!({"name": "lbuild:kind", "value": z.kind}),
        json!({"name": "lbuild:zip", "value": z.file_name}),
        json!({"name": "lbuild:size", "value": z.size.to_string()}),
        json!({"name": "aws:lambda:runtime", "value": z.runtime}),
        json!({"name": "aws:lambda:architecture", "value": z.architecture}),
    ]
}

fn sha256(hex: &str) -> Value {
    json!({"alg": "SHA-256", "content": hex})
}

fn file(f: &FileFact) -> Value {
    json!({"type": "file", "name": f.name, "hashes": [sha256(&f.sha256)]})
}

fn distribution(d: &Distribution, bom_ref: &str) -> Value {
    let mut c = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": d.name,
        "version": d.version,
        "purl": d.purl(),
        "properties": [{"name": "lbuild:dist-info", "value": d.dist_info}],
        "components": d.files.iter().map(file).collect::<Vec<_>>(),
    });
    match &d.license {
        License::Expression(e) => c["licenses"] = json!([{"expression": e}]),
        License::Names(names) => {
            c["licenses"] = names
                .iter()
                .map(|n| json!({"license": {"name": n}}))
                .collect();
        }
        License::None => {}
    }
    // The lock's hashes are those of the release's files (one of them was
    // installed): CycloneDX's algorithm names, hex only.
    let hashes: Vec<Value> = d
        .lock_hashes
        .iter()
        .filter_map(|h| {
            let (alg, hex) = h.split_once(':')?;
            let alg = match alg {
                "sha256" => "SHA-256",
                "sha384" => "SHA-384",
                "sha512" => "SHA-512",
                _ => return None,
            };
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| json!({"alg": alg, "content": hex.to_ascii_lowercase()}))
        })
        .collect();
    if !hashes.is_empty() {
        c["hashes"] = json!(hashes);
    }
    c
}
