//! `pyproject = "pyproject.toml"`: not a lock. Its dependency lists (the
//! extras and groups named, include-groups followed) are keyed as a
//! canonical text and handed to the installer to resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep508_rs::MarkerTree;
use serde::Deserialize;

use super::{Ctx, extra_names, marker_env, norm};
use crate::manifest::LockPlan;
use crate::stages::deps::DepsError;
use crate::stages::deps::installer::Target;

/// The pyproject's dependency lists this build reads, in a canonical
/// text: `[project.dependencies]`, the `optional-dependencies` of the
/// extras named and the `[dependency-groups]` named (include-groups
/// followed). What the deps key takes for `pyproject = ...` (so editing
/// the description reruns nothing), and what [`pyproject_requirements`]
/// installs.
fn pyproject_lists(lock: &LockPlan) -> Result<Vec<String>, DepsError> {
    let bytes = crate::stages::deps::requirements::read_regular_file(&lock.path, None)?;
    let text = String::from_utf8(bytes).map_err(|e| DepsError::Lockfile {
        path: lock.path.clone(),
        line: 1,
        message: format!("not UTF-8 text ({e})"),
    })?;
    let env = marker_env(Target {
        runtime: crate::manifest::Runtime::parse("python3.12").expect("a runtime"),
        arch: crate::manifest::Architecture::X86_64,
    });
    let ctx = Ctx {
        path: &lock.path,
        text: &text,
        env: &env,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Full {
        project: Option<FullProject>,
        #[serde(default)]
        dependency_groups: BTreeMap<String, Vec<toml::Value>>,
        tool: Option<toml::Table>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct FullProject {
        name: Option<String>,
        #[serde(default)]
        dependencies: Vec<String>,
        #[serde(default)]
        optional_dependencies: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        dynamic: Vec<String>,
    }
    let parsed: Full = ctx.parse()?;
    let poetry_deps = parsed
        .tool
        .as_ref()
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .is_some();
    let Some(project) = parsed.project else {
        return Err(ctx.refused(
            format!("{} has no [project] table", lock.path.display()),
            if poetry_deps {
                "a Poetry 1 project keeps its dependencies in [tool.poetry.dependencies]: lock it (`poetry lock`) and set lock = \"poetry.lock\""
            } else {
                "declare [project] dependencies (PEP 621), or use lock / requirements"
            },
        ));
    };
    if project.dynamic.iter().any(|d| d == "dependencies") {
        return Err(ctx.refused(
            format!(
                "{}: [project] declares its dependencies dynamic, so only its build backend knows them",
                lock.path.display()
            ),
            "lock the project (`uv lock`, `poetry lock`) and set lock = ..., or list the dependencies in [project]",
        ));
    }
    let mut out = project.dependencies.clone();
    let have: BTreeSet<String> = project.optional_dependencies.keys().cloned().collect();
    for e in &lock.extras {
        let (_, list) = project
            .optional_dependencies
            .iter()
            .find(|(k, _)| norm(k) == norm(e))
            .ok_or_else(|| {
                ctx.missing(
                    "extra",
                    e,
                    &have,
                    "name one of the project's [project.optional-dependencies]",
                )
            })?;
        out.extend(list.iter().cloned());
    }
    let groups: BTreeMap<String, &Vec<toml::Value>> = parsed
        .dependency_groups
        .iter()
        .map(|(k, v)| (norm(k), v))
        .collect();
    let have: BTreeSet<String> = parsed.dependency_groups.keys().cloned().collect();
    let mut pending: Vec<String> = lock.groups.iter().map(|g| norm(g)).collect();
    let mut seen = BTreeSet::new();
    while let Some(g) = pending.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        let list = groups.get(&g).ok_or_else(|| {
            ctx.missing(
                "dependency group",
                &g,
                &have,
                "name one of the project's [dependency-groups]",
            )
        })?;
        for item in list.iter() {
            match item {
                toml::Value::String(r) => out.push(r.clone()),
                toml::Value::Table(t) => {
                    if let Some(inc) = t.get("include-group").and_then(|v| v.as_str()) {
                        pending.push(norm(inc));
                    }
                }
                _ => {}
            }
        }
    }
    // The project naming itself (`app[email]` in a group) adds its extras.
    let own = project.name.as_deref().map(norm);
    let mut expanded = Vec::new();
    for r in out {
        match pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&r) {
            Ok(req) if Some(norm(req.name.as_ref())) == own => {
                for e in &req.extras {
                    if let Some((_, l)) = project
                        .optional_dependencies
                        .iter()
                        .find(|(k, _)| norm(k) == norm(e.as_ref()))
                    {
                        expanded.extend(l.iter().cloned());
                    }
                }
            }
            _ => expanded.push(r),
        }
    }
    Ok(expanded)
}

/// What the deps key takes for `pyproject = ...`: the lists it reads.
pub(crate) fn pyproject_key(lock: &LockPlan) -> Result<String, DepsError> {
    let mut lists = pyproject_lists(lock)?;
    lists.sort();
    Ok(lists.join("\n"))
}

/// The requirements to resolve for `target` (each marker evaluated for
/// the target, then dropped), one per line; how many.
pub(crate) fn pyproject_requirements(
    lock: &LockPlan,
    target: Target,
) -> Result<(String, usize), DepsError> {
    let env = marker_env(target);
    let extras = extra_names(&lock.extras.iter().map(|e| norm(e)).collect());
    let mut out = String::new();
    let mut count = 0;
    for r in pyproject_lists(lock)? {
        let mut req =
            pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&r).map_err(|e| {
                DepsError::Refused {
                    message: format!(
                        "{}: cannot read the requirement {r:?}: {e}",
                        lock.path.display()
                    ),
                    hint: "write it as PEP 508 says (`name[extra]>=1.0; marker`)".into(),
                }
            })?;
        if !req.marker.evaluate(&env, &extras) {
            continue;
        }
        req.marker = MarkerTree::TRUE;
        out.push_str(&req.to_string());
        out.push('\n');
        count += 1;
    }
    Ok((out, count))
}
