//! SPDX 2.3 JSON: one package per zip (its SHA-256) and per
//! distribution (version, purl, declared licence, the lock's hashes), with
//! CONTAINS relationships. Files are not listed (SPDX requires a SHA-1 per
//! file; the CycloneDX document carries the files' SHA-256). SPDX
//! requires `created`: `SOURCE_DATE_EPOCH` when set, else the zip
//! entries' fixed time (1980-01-01), so the document stays reproducible.

use serde_json::{Value, json};

use super::{Distribution, License, ZipContents, source_date, uuid_from_sha256};
use crate::manifest::Plan;

pub(crate) fn document(plan: &Plan, main: &ZipContents, layers: &[ZipContents]) -> Value {
    let mut packages = Vec::new();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Artifact-0",
    })];
    for (i, z) in std::iter::once(main).chain(layers).enumerate() {
        let id = format!("SPDXRef-Artifact-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": z.name,
            "packageFileName": z.file_name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": if i == 0 { "APPLICATION" } else { "ARCHIVE" },
            "checksums": [{"algorithm": "SHA256", "checksumValue": z.sha256}],
            "comment": format!("lbuild {} for {} {}", z.kind, z.runtime, z.architecture),
        }));
        if i > 0 {
            relationships.push(json!({
                "spdxElementId": "SPDXRef-Artifact-0",
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": id,
            }));
        }
        for (j, d) in z.distributions.iter().enumerate() {
            let did = format!("SPDXRef-Package-{i}-{j}");
            packages.push(package(d, &did));
            relationships.push(json!({
                "spdxElementId": id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": did,
            }));
        }
    }
    let created = source_date(plan).unwrap_or_else(|| "1980-01-01T00:00:00Z".into());
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", main.name, main.file_name),
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/lbuild-{}-{}",
            main.name,
            uuid_from_sha256(&main.sha256)
        ),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: lbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn package(d: &Distribution, id: &str) -> Value {
    let declared = match &d.license {
        License::Expression(e) => e.clone(),
        // Free text and classifiers are not SPDX expressions.
        License::Names(_) | License::None => "NOASSERTION".into(),
    };
    let mut p = json!({
        "SPDXID": id,
        "name": d.name,
        "versionInfo": d.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": declared,
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": d.purl(),
        }],
    });
    if let License::Names(names) = &d.license {
        p["licenseComments"] = json!(format!("METADATA says: {}", names.join("; ")));
    }
    let checksums: Vec<Value> = d
        .lock_hashes
        .iter()
        .filter_map(|h| {
            let (alg, hex) = h.split_once(':')?;
            let alg = match alg {
                "sha256" => "SHA256",
                "sha384" => "SHA384",
                "sha512" => "SHA512",
                _ => return None,
            };
            Some(json!({"algorithm": alg, "checksumValue": hex.to_ascii_lowercase()}))
        })
        .collect();
    if !checksums.is_empty() {
        p["checksums"] = json!(checksums);
    }
    p
}
