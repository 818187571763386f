//! Finding the handler: functions with two positional parameters (event,
//! context) in the usual modules, flat, under `src/` or in a package
//! (namespace packages included); one, several (ask for `--handler`) or none.

use std::path::{Path, PathBuf};

use crate::Error;

use super::*;

/// A function that may be the handler.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    /// Sources root, relative to the project ("." or "src").
    pub(super) root: String,
    /// Dotted module under the root ("app", "shop.handler").
    pub(super) module: String,
    /// File, relative to the project, for messages.
    pub(super) file: String,
    /// The function taking (event, context), if the module defines one.
    pub(super) function: Option<String>,
}

/// A top-level `def` and its positional parameters.
#[derive(Debug, PartialEq)]
pub(super) struct Def {
    pub(super) name: String,
    pub(super) params: Vec<String>,
}

/// The top-level functions of a module with their positional parameters
/// (a line scan: a signature may span lines, annotations and defaults may
/// hold brackets; `*args`, `**kw` and keyword-only ones are not positional).
pub(super) fn defs(text: &str) -> Vec<Def> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("def ") {
        let line_start = at == 0 || rest.as_bytes()[at - 1] == b'\n';
        let after_async = at >= 6
            && &rest[at - 6..at] == "async "
            && (at == 6 || rest.as_bytes()[at - 7] == b'\n');
        let tail = &rest[at + 4..];
        rest = tail;
        if !(line_start || after_async) {
            continue;
        }
        let Some(open) = tail.find('(') else { break };
        let name = tail[..open].trim();
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_alphanumeric()) {
            continue;
        }
        let mut depth = 0usize;
        let mut params = Vec::new();
        let mut current = String::new();
        let mut keyword_only = false;
        for c in tail[open + 1..].chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth > 0 => depth -= 1,
                ')' => break,
                ',' if depth == 0 => {
                    push_param(&mut params, &current, &mut keyword_only);
                    current.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 || !current.is_empty() {
                current.push(c);
            }
        }
        push_param(&mut params, &current, &mut keyword_only);
        out.push(Def {
            name: name.to_string(),
            params,
        });
    }
    out
}

pub(super) fn push_param(params: &mut Vec<String>, raw: &str, keyword_only: &mut bool) {
    let p = raw.trim();
    if p.is_empty() || p == "/" || *keyword_only {
        return;
    }
    if p.starts_with('*') {
        *keyword_only = true;
        return;
    }
    let name: String = p
        .chars()
        .take_while(|c| *c == '_' || c.is_alphanumeric())
        .collect();
    params.push(name);
}

/// The function of `text` Lambda can call as a handler: two positional
/// parameters (event, context), named as handlers are or taking an event
/// first. A `def main():` never is.
pub(super) fn handler_function(text: &str) -> Option<String> {
    let fits: Vec<Def> = defs(text)
        .into_iter()
        .filter(|d| d.params.len() == 2)
        .filter(|d| FUNCTIONS.contains(&d.name.as_str()) || d.params[0].contains("event"))
        .collect();
    fits.iter()
        .find(|d| FUNCTIONS.contains(&d.name.as_str()))
        .or(fits.first())
        .map(|d| d.name.clone())
}

pub(super) fn subdirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs_err::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && !crate::exclusions::PRUNED_DIRS.contains(&n.as_str())
                && !matches!(
                    n.as_str(),
                    "tests" | "test" | "dist" | "build" | "node_modules"
                )
                && !crate::exclusions::is_virtualenv(&dir.join(n))
        })
        .collect();
    out.sort();
    out
}

/// Every module file that may hold the handler: flat, `src/`, `src/PKG/`,
/// `PKG/`. A package is a directory, `__init__.py` or not (Python imports
/// namespace packages): its root is the directory above it, so the handler
/// is `PKG.module.function` and the sources root follows the package.
pub(super) fn candidates(dir: &Path) -> Vec<Candidate> {
    let mut places: Vec<(String, String)> = vec![(".".into(), String::new())];
    if dir.join("src").is_dir() {
        places.push(("src".into(), String::new()));
        for pkg in subdirs(&dir.join("src")) {
            places.push(("src".into(), pkg));
        }
    }
    for pkg in subdirs(dir) {
        if pkg != "src" {
            places.push((".".into(), pkg));
        }
    }
    let mut out = Vec::new();
    for (root, pkg) in places {
        let rel_root = if root == "." {
            PathBuf::new()
        } else {
            PathBuf::from(&root)
        };
        for m in MODULES {
            let file = rel_root.join(&pkg).join(format!("{m}.py"));
            let Ok(text) = fs_err::read_to_string(dir.join(&file)) else {
                continue;
            };
            let module = if pkg.is_empty() {
                m.to_string()
            } else {
                format!("{pkg}.{m}")
            };
            // A directory name that is no identifier cannot be imported.
            if !crate::templates::valid_handler(&format!("{module}.f")) {
                continue;
            }
            out.push(Candidate {
                root: root.clone(),
                module,
                file: file.to_string_lossy().into_owned(),
                function: handler_function(&text),
            });
        }
    }
    out
}

/// The handler and what to tell the user: `--handler` as given (its root
/// found from where the module is), else the one function that fits, else
/// `app.handler` with a note. Several that fit: an error listing them.
pub(super) fn choose_handler(
    dir: &Path,
    given: Option<&str>,
) -> crate::Result<(Candidate, Option<String>)> {
    if let Some(h) = given {
        let Some((module, function)) = h
            .rsplit_once('.')
            .filter(|_| crate::templates::valid_handler(h))
        else {
            return Err(Error::Input {
                message: format!("--handler {h:?} is not module.function"),
                hint: "write it as dotted Python identifiers, e.g. --handler shop.app.handler"
                    .into(),
            });
        };
        let rel = format!("{}.py", module.replace('.', "/"));
        let Some(root) = [".", "src"]
            .into_iter()
            .find(|r| dir.join(r).join(&rel).is_file())
        else {
            return Err(Error::Input {
                message: format!("--handler {h}: no {rel} here or under src/"),
                hint: "name the module by its import path from the sources root".into(),
            });
        };
        let file = Path::new(root).join(&rel).to_string_lossy().into_owned();
        let note = fs_err::read_to_string(dir.join(&file))
            .ok()
            .filter(|t| !defs(t).iter().any(|d| d.name == function))
            .map(|_| format!("--handler: {file} defines no top-level `def {function}(`"));
        let candidate = Candidate {
            root: root.to_string(),
            module: module.to_string(),
            file,
            function: Some(function.to_string()),
        };
        return Ok((candidate, note));
    }
    let all = candidates(dir);
    let fitting: Vec<&Candidate> = all.iter().filter(|c| c.function.is_some()).collect();
    match fitting.as_slice() {
        [] => Ok((
            Candidate {
                root: ".".into(),
                module: "app".into(),
                file: "app.py".into(),
                function: None,
            },
            Some(format!(
                "no function taking (event, context) found in app.py, lambda_function.py, handler.py, main.py, index.py (at the top, in src/, or in a package){}: wrote handler = \"app.handler\"; edit it, or run init again with --handler MODULE.FUNCTION",
                if all.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; looked at {}",
                        all.iter()
                            .map(|c| c.file.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
        )),
        [one] => {
            let others: Vec<&str> = all
                .iter()
                .filter(|c| c.file != one.file)
                .map(|c| c.file.as_str())
                .collect();
            let f = one.function.as_deref().unwrap_or_default();
            let note = if others.is_empty() {
                format!(
                    "handler: chose {} (it defines `def {f}(event, context)`)",
                    one.file
                )
            } else {
                format!(
                    "handler: chose {} (it defines `def {f}(event, context)`; {} define none)",
                    one.file,
                    others.join(", ")
                )
            };
            Ok(((*one).clone(), Some(note)))
        }
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|c| {
                    format!(
                        "{}.{} ({})",
                        c.module,
                        c.function.as_deref().unwrap_or_default(),
                        c.file
                    )
                })
                .collect();
            Err(Error::Input {
                message: format!(
                    "{} functions could be the handler: {}",
                    several.len(),
                    listed.join(", ")
                ),
                hint: format!(
                    "pass the one to use: lbuild init --handler {}.{}; or --workspace for one function per package",
                    several[0].module,
                    several[0].function.as_deref().unwrap_or_default()
                ),
            })
        }
    }
}
