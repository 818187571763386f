//! `lbuild init`: a commented lambda.toml made from lambda.toml.example,
//! filled in from what the repository already says: the handler (a
//! function taking (event, context) in app.py, lambda_function.py,
//! handler.py, main.py or index.py, flat, under `src/` or in a package,
//! namespace packages included; several → `--handler`), the sources root,
//! package data, config files of any common kind, requirements, the
//! runtime (`.python-version`, `requires-python` read as PEP 440). With a
//! SAM/CloudFormation or Serverless template ([`crate::templates`]) it
//! writes a workspace of its Python functions and layers instead and prints
//! the migration report. Runtimes AWS no longer updates are replaced by the
//! oldest one it does ([`crate::runtimes`]). Every value goes through the
//! TOML serializer; the manifest is written by rename, never through a
//! symlink. Also appends `.lbuild/` and the output directory to
//! `.gitignore`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;

const TEMPLATE: &str = include_str!("../lambda.toml.example");

/// Module file names that hold a handler, most common first.
const MODULES: &[&str] = &["app", "lambda_function", "handler", "main", "index"];
/// Function names Lambda handlers go by (`lambda_handler` is the console's).
const FUNCTIONS: &[&str] = &["handler", "lambda_handler", "main"];
/// Config file kinds picked up under `config/`.
const CONFIG_KINDS: &[&str] = &["json", "yaml", "yml", "toml", "ini"];

/// What `init` wrote and decided, for the user.
#[derive(Debug, serde::Serialize)]
pub struct InitOutcome {
    pub manifest: PathBuf,
    pub handler: String,
    pub root: String,
    pub runtime: String,
    pub architecture: String,
    /// One line per decision worth telling (which handler among several,
    /// where the runtime came from, .gitignore lines added).
    pub notes: Vec<String>,
}

/// What `lbuild init` was asked for.
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    /// Overwrite an existing manifest (never a symlink).
    pub force: bool,
    /// One function per package defining a handler.
    pub workspace: bool,
    /// `--template PATH`: the SAM/CloudFormation or Serverless file to read.
    pub template: Option<PathBuf>,
    /// `--handler MODULE.FUNCTION`: the handler, when several fit.
    pub handler: Option<String>,
}

/// Writes the manifest at `path` (its directory is the project's; created
/// if missing); refuses to overwrite unless `force`, and never writes
/// through a symlink. A template found (or named) makes a workspace of its
/// Python functions and layers; else, with `workspace`, one
/// `[functions.NAME]` per handler package; else one function.
pub fn write_manifest(path: &Path, options: &InitOptions) -> crate::Result<InitOutcome> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::Input {
                message: format!(
                    "{} is a symbolic link; init does not write through it",
                    path.display()
                ),
                hint: "remove the link (or pass --manifest with another path), then run init again"
                    .into(),
            });
        }
        Ok(_) if !options.force => {
            return Err(Error::Input {
                message: format!("{} already exists", path.display()),
                hint: "edit it, or pass --force to overwrite it".into(),
            });
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
    let template = if options.handler.is_some() && options.template.is_none() {
        None
    } else {
        crate::templates::locate(&dir, options.template.as_deref())?
    };
    let (text, mut outcome) = if let Some(file) = template {
        let t = crate::templates::read(&dir, &file)?;
        if t.functions.is_empty() {
            return Err(Error::Input {
                message: format!(
                    "{} declares no Python function lbuild can build{}",
                    t.file,
                    if t.report.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", t.report.join("; "))
                    }
                ),
                hint: "pass --template with the template of the Python functions, or --handler MODULE.FUNCTION to write one function without a template".into(),
            });
        }
        render_from_template(&t)
    } else {
        let handlers = workspace_candidates(&dir);
        if options.workspace && handlers.len() > 1 {
            render_workspace(&dir, &handlers)
        } else {
            let (text, mut outcome) = render(&dir, options.handler.as_deref())?;
            if options.workspace {
                outcome.notes.push(format!(
                    "--workspace: found {} package(s) defining a handler, so wrote a single function",
                    handlers.len()
                ));
            }
            (text, outcome)
        }
    };
    write_new(path, &text)?;
    outcome.manifest = path.to_path_buf();
    let output_dir = "dist/";
    let gitignore = dir.join(".gitignore");
    if fs_err::symlink_metadata(&gitignore).is_ok_and(|m| m.file_type().is_symlink()) {
        outcome.notes.push(format!(
            "{} is a symbolic link: not changed; add .lbuild/ and {output_dir} to it yourself",
            gitignore.display()
        ));
        return Ok(outcome);
    }
    let added = append_gitignore(&dir, &[".lbuild/", output_dir])?;
    if !added.is_empty() {
        outcome.notes.push(format!(
            "added {} to {}",
            added.join(" and "),
            gitignore.display()
        ));
    }
    Ok(outcome)
}

/// Writes `text` to `path` by a new file beside it (created, never opened
/// through a link) renamed over it: a symlink put at `path` meanwhile is
/// replaced, not followed.
fn write_new(path: &Path, text: &str) -> crate::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lambda.toml".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs_err::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| fs_err::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs_err::remove_file(&tmp);
        return Err(Error::io("cannot write", path)(e));
    }
    Ok(())
}

/// Appends the lines `.gitignore` lacks (creating it); returns them.
fn append_gitignore(dir: &Path, lines: &[&str]) -> crate::Result<Vec<String>> {
    let path = dir.join(".gitignore");
    let text = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("cannot read", &path)(e)),
    };
    let present = |l: &str| {
        let bare = l.trim_end_matches('/');
        text.lines().any(|t| {
            let t = t.trim().trim_start_matches('/').trim_end_matches('/');
            t == bare
        })
    };
    let missing: Vec<String> = lines
        .iter()
        .filter(|l| !present(l))
        .map(|l| l.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut out = text.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for l in &missing {
        out.push_str(l);
        out.push('\n');
    }
    fs_err::write(&path, out).map_err(Error::io("cannot write", &path))?;
    Ok(missing)
}

/// A function that may be the handler.
#[derive(Debug, Clone)]
struct Candidate {
    /// Sources root, relative to the project ("." or "src").
    root: String,
    /// Dotted module under the root ("app", "shop.handler").
    module: String,
    /// File, relative to the project, for messages.
    file: String,
    /// The function taking (event, context), if the module defines one.
    function: Option<String>,
}

/// A top-level `def` and its positional parameters.
#[derive(Debug, PartialEq)]
struct Def {
    name: String,
    params: Vec<String>,
}

/// The top-level functions of a module with their positional parameters
/// (a line scan: a signature may span lines, annotations and defaults may
/// hold brackets; `*args`, `**kw` and keyword-only ones are not positional).
fn defs(text: &str) -> Vec<Def> {
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

fn push_param(params: &mut Vec<String>, raw: &str, keyword_only: &mut bool) {
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
fn handler_function(text: &str) -> Option<String> {
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

fn subdirs(dir: &Path) -> Vec<String> {
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
fn candidates(dir: &Path) -> Vec<Candidate> {
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
fn choose_handler(dir: &Path, given: Option<&str>) -> crate::Result<(Candidate, Option<String>)> {
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

/// The runtimes lbuild builds for, oldest first.
fn supported_runtimes() -> Vec<String> {
    (0..=30)
        .filter_map(|m| crate::manifest::Runtime::parse(&format!("python3.{m}")))
        .map(|r| r.name())
        .collect()
}

/// The runtime to write for `written` (a template's or a version file's),
/// and the comment/note when it is not `written` itself: AWS no longer
/// lets functions on it be updated (the oldest runtime lbuild builds for
/// that AWS still updates is written instead), or lbuild does not build
/// for it.
fn carry_runtime(written: &str, today: jiff::civil::Date) -> (String, Option<String>) {
    let supported = supported_runtimes();
    let names: Vec<&str> = supported.iter().map(String::as_str).collect();
    let schedule = crate::runtimes::schedule(written);
    if crate::runtimes::update_blocked(written, today) {
        let instead = crate::runtimes::oldest_updatable(&names, today).unwrap_or("python3.12");
        let s = schedule.unwrap_or(crate::runtimes::SCHEDULE[0]);
        let when = |d: Option<jiff::civil::Date>| d.map(|d| d.to_string()).unwrap_or("?".into());
        return (
            instead.to_string(),
            Some(format!(
                "{written}: AWS no longer lets you update functions on it (deprecated {}, updates blocked since {}); wrote {instead}, the oldest runtime lbuild builds for that AWS still updates: test the code on it",
                when(s.deprecated),
                when(s.block_update),
            )),
        );
    }
    if crate::manifest::Runtime::parse(written).is_none() {
        return (
            "python3.12".into(),
            Some(format!(
                "{written}: lbuild builds for {} only; wrote python3.12",
                names.join(", ")
            )),
        );
    }
    let note = schedule
        .and_then(|s| Some((s.deprecated.filter(|d| *d <= today)?, s.block_update)))
        .map(|(d, u)| {
            format!(
                "{written}: deprecated by AWS since {d}{}; plan the move to a newer runtime",
                u.map(|u| format!(", updates blocked from {u}"))
                    .unwrap_or_default()
            )
        });
    (written.to_string(), note)
}

/// A value read from the repository and the file it came from.
type Found = (String, String);

/// `python3.N` from `.python-version`, else the oldest runtime lbuild
/// builds for (and AWS still updates) that pyproject's `requires-python`
/// allows (PEP 440).
fn runtime_from_files(dir: &Path, today: jiff::civil::Date) -> Option<Found> {
    if let Ok(text) = fs_err::read_to_string(dir.join(".python-version"))
        && let Some(line) = text.lines().next()
    {
        let v = line.trim();
        let mut parts = v.trim_start_matches("python").split('.');
        if let (Some("3"), Some(minor)) = (parts.next(), parts.next())
            && minor.chars().all(|c| c.is_ascii_digit())
        {
            return Some((format!("python3.{minor}"), ".python-version".into()));
        }
    }
    let text = fs_err::read_to_string(dir.join("pyproject.toml")).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let spec = doc.get("project")?.get("requires-python")?.as_str()?;
    let specifiers: pep508_rs::pep440_rs::VersionSpecifiers = spec.parse().ok()?;
    let supported = supported_runtimes();
    supported
        .iter()
        .filter(|r| !crate::runtimes::update_blocked(r, today))
        .find(|r| {
            r.strip_prefix("python")
                .and_then(|v| v.parse::<pep508_rs::pep440_rs::Version>().ok())
                .is_some_and(|v| specifiers.contains(&v))
        })
        .map(|r| {
            (
                r.clone(),
                format!("pyproject.toml requires-python {spec:?}"),
            )
        })
}

/// The config kinds present under `config/` (any depth).
fn config_globs(dir: &Path) -> Vec<String> {
    let config = dir.join("config");
    if !config.is_dir() {
        return Vec::new();
    }
    let mut kinds: Vec<&str> = Vec::new();
    for e in walkdir::WalkDir::new(&config).into_iter().flatten() {
        if !e.file_type().is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy();
        if let Some(kind) = CONFIG_KINDS
            .iter()
            .find(|k| name.ends_with(&format!(".{k}")))
            && !kinds.contains(kind)
        {
            kinds.push(kind);
        }
    }
    kinds.sort_unstable_by_key(|k| CONFIG_KINDS.iter().position(|c| c == k));
    kinds
        .into_iter()
        .map(|k| format!("config/**/*.{k}"))
        .collect()
}

/// A TOML string (escaped by the serializer).
fn tstr(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
fn tlist<S: AsRef<str>>(items: &[S]) -> String {
    toml::Value::Array(
        items
            .iter()
            .map(|i| toml::Value::String(i.as_ref().to_string()))
            .collect(),
    )
    .to_string()
}

/// A key: bare when it can be, else a basic string with every quote,
/// backslash and control character escaped.
fn tkey(k: &str) -> String {
    if crate::templates::plain_name(k) {
        return k.to_string();
    }
    let mut out = String::from("\"");
    for c in k.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text from a template for a `#` comment: one line, control characters
/// escaped.
fn comment(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn render(dir: &Path, given: Option<&str>) -> crate::Result<(String, InitOutcome)> {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name: String = canonical
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("function")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut notes = Vec::new();
    let (chosen, note) = choose_handler(dir, given)?;
    notes.extend(note);
    let handler = format!(
        "{}.{}",
        chosen.module,
        chosen.function.as_deref().unwrap_or("handler")
    );
    let root = chosen.root.clone();
    let root_dir = dir.join(&root);

    // Package data: everything inside the handler's top-level package (and
    // the other packages at the root), not only its .py files.
    let mut include = vec!["**/*.py".to_string()];
    let handler_pkg = chosen.module.split_once('.').map(|(p, _)| p.to_string());
    for pkg in subdirs(&root_dir) {
        if root_dir.join(&pkg).join("__init__.py").is_file() || handler_pkg.as_deref() == Some(&pkg)
        {
            include.push(format!("{pkg}/**/*"));
        }
    }

    let today = crate::runtimes::today();
    let runtime = runtime_from_files(dir, today);
    let (runtime_name, runtime_note) = match &runtime {
        Some((r, from)) => {
            notes.push(format!("runtime {r} (from {from})"));
            carry_runtime(r, today)
        }
        None => ("python3.12".to_string(), None),
    };
    notes.extend(runtime_note.clone());
    let arch_name = "x86_64".to_string();

    let runtime_line = match &runtime_note {
        Some(n) => format!("# {}\nruntime = {}", comment(n), tstr(&runtime_name)),
        None => format!("runtime = {}", tstr(&runtime_name)),
    };
    let mut text = TEMPLATE
        .replace("name = \"orders\"", &format!("name = {}", tstr(&name)))
        .replace(
            "handler = \"app.handler\"",
            &format!("handler = {}", tstr(&handler)),
        )
        .replace("runtime = \"python3.12\"", &runtime_line)
        .replace("root = \".\"", &format!("root = {}", tstr(&root)))
        .replace(
            "include = [\"**/*.py\"]",
            &format!(
                "# Python files, plus everything inside the packages (templates, JSON\n\
                 # schemas, py.typed: package data the code reads at run time).\n\
                 include = {}",
                tlist(&include)
            ),
        )
        .replace(
            "exclude = [\"tests/**\"]",
            "# Test files are left out: test_*.py, *_test.py, tests/ directories, conftest.py.\n\
             exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\"]",
        )
        .replace(
            "path = \"dist/orders.zip\"",
            &format!("path = {}", tstr(&format!("dist/{name}.zip"))),
        );

    let mut places = vec!["requirements.txt".to_string()];
    if root != "." {
        places.push(format!("{root}/requirements.txt"));
    }
    let requirements = places.into_iter().find(|r| dir.join(r).is_file());
    // A lockfile is the better input: every version and hash fixed.
    let lock = ["uv.lock", "poetry.lock", "pylock.toml"]
        .into_iter()
        .find(|l| dir.join(l).is_file());
    match (&lock, &requirements) {
        (Some(l), _) => {
            text = text.replace(
                "requirements = \"requirements.txt\"",
                &format!("# The packages come from the lock, resolved for the Lambda target.\nlock = \"{l}\""),
            );
            notes.push(format!("dependencies from {l}"));
        }
        (None, Some(r)) => {
            text = text.replace(
                "requirements = \"requirements.txt\"",
                &format!("requirements = {}", tstr(r)),
            );
        }
        (None, None) => text = comment_out_section(&text, "[dependencies]"),
    }
    if dir.join("Pipfile.lock").is_file() && lock.is_none() {
        notes.push(
            "Pipfile.lock found: lbuild reads uv.lock, poetry.lock and pylock.toml; export a pinned requirements.txt (`pipenv requirements > requirements.txt`) and point [dependencies] requirements at it".into(),
        );
    }

    let config = config_globs(dir);
    text = text.replace(
        "files = [\"config/*.json\"]",
        &format!("files = {}", tlist(&config)),
    );

    let outcome = InitOutcome {
        manifest: PathBuf::new(),
        handler,
        root,
        runtime: runtime_name,
        architecture: arch_name,
        notes,
    };
    Ok((text, outcome))
}

/// Packages that each hold a module defining a handler function, as
/// (function name, candidate), one per package: the functions of a
/// workspace.
fn workspace_candidates(dir: &Path) -> Vec<(String, Candidate)> {
    let mut out: Vec<(String, Candidate)> = Vec::new();
    for c in candidates(dir).into_iter().filter(|c| c.function.is_some()) {
        let Some((pkg, _)) = c.module.rsplit_once('.') else {
            continue;
        };
        let name: String = pkg
            .replace('.', "-")
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '_')
            .collect();
        if !name.is_empty() && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, c));
        }
    }
    out
}

/// A workspace manifest: `[defaults]` with the target, one function per
/// handler package, each packaging its package and the shared ones.
fn render_workspace(dir: &Path, handlers: &[(String, Candidate)]) -> (String, InitOutcome) {
    let today = crate::runtimes::today();
    let (runtime_name, runtime_note) = match runtime_from_files(dir, today) {
        Some((r, _)) => carry_runtime(&r, today),
        None => ("python3.12".to_string(), None),
    };
    let arch_name = "x86_64".to_string();
    let root = handlers[0].1.root.clone();
    let root_dir = dir.join(&root);
    let function_pkgs: Vec<String> = handlers
        .iter()
        .filter_map(|(_, c)| c.module.split('.').next().map(str::to_string))
        .collect();
    // Packages no handler lives in are shared code: every function gets them.
    let shared: Vec<String> = subdirs(&root_dir)
        .into_iter()
        .filter(|p| root_dir.join(p).join("__init__.py").is_file() && !function_pkgs.contains(p))
        .collect();
    let mut text = String::from(
        "# lambda.toml: a workspace, one function per handler package (written by\n\
         # `lbuild init --workspace`). Every key: lambda.workspace.toml.example.\n\n\
         [defaults]\n",
    );
    if let Some(n) = &runtime_note {
        text.push_str(&format!("# {}\n", comment(n)));
    }
    text.push_str(&format!("runtime = {}\n", tstr(&runtime_name)));
    text.push_str(&format!("architecture = {}\n", tstr(&arch_name)));
    text.push_str(&format!(
        "# Test files are left out: test_*.py, *_test.py, tests/ directories, conftest.py.\n\
         sources = {{ root = {}, exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\"] }}\n",
        tstr(&root)
    ));
    let requirements = ["requirements.txt", "src/requirements.txt"]
        .into_iter()
        .find(|r| dir.join(r).is_file());
    if let Some(r) = requirements {
        text.push_str(&format!(
            "# Every function gets these dependencies; move them into a [layers.NAME]\n\
             # (and `layers = [\"NAME\"]` per function) to ship them once.\n\
             dependencies = {{ requirements = {} }}\n",
            tstr(r)
        ));
    }
    for (name, c) in handlers {
        let pkg = c.module.split('.').next().unwrap_or_default();
        let mut include = vec![format!("{pkg}/**/*")];
        include.extend(shared.iter().map(|s| format!("{s}/**/*")));
        text.push_str(&format!(
            "\n[functions.{}]\nhandler = {}\nsources = {{ include = {} }}\n",
            tkey(name),
            tstr(&format!(
                "{}.{}",
                c.module,
                c.function.as_deref().unwrap_or("handler")
            )),
            tlist(&include)
        ));
    }
    let mut notes = vec![format!(
        "wrote a workspace with {} functions ({})",
        handlers.len(),
        handlers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    notes.extend(runtime_note);
    if !shared.is_empty() {
        notes.push(format!(
            "shared packages in every function: {}",
            shared.join(", ")
        ));
    }
    let outcome = InitOutcome {
        manifest: PathBuf::new(),
        handler: handlers[0].1.module.clone(),
        root,
        runtime: runtime_name,
        architecture: arch_name,
        notes,
    };
    (text, outcome)
}

/// Test files, left out of every function and layer made from a template.
const TEST_EXCLUDES: &[&str] = &[
    "**/test_*.py",
    "**/*_test.py",
    "**/tests/**",
    "**/conftest.py",
];

/// A workspace manifest from a SAM/CloudFormation or Serverless template:
/// its layers, then one function per Python function, every value written
/// by the TOML serializer, what cannot be carried left as a comment, and
/// the migration report as notes.
fn render_from_template(t: &crate::templates::Template) -> (String, InitOutcome) {
    let today = crate::runtimes::today();
    let mut notes = Vec::new();
    // Runtimes as they will be written (a blocked one replaced), per
    // function; the most common is the default.
    let carried: Vec<(String, Option<String>)> = t
        .functions
        .iter()
        .map(|f| carry_runtime(f.runtime.as_deref().unwrap_or("python3.12"), today))
        .collect();
    for (_, note) in &carried {
        if let Some(n) = note
            && !notes.contains(n)
        {
            notes.push(n.clone());
        }
    }
    let most_common = |values: Vec<String>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v)
    };
    let runtime = most_common(carried.iter().map(|(r, _)| r.clone()).collect())
        .unwrap_or_else(|| "python3.12".into());
    let arch = most_common(
        t.functions
            .iter()
            .map(|f| f.architecture.clone().unwrap_or_else(|| "x86_64".into()))
            .collect(),
    )
    .unwrap_or_else(|| "x86_64".into());
    let sam = t.kind == "SAM";
    let mut text = format!(
        "# lambda.toml: a workspace written by `lbuild init` from {} ({}): one\n\
         # function per Python function there{}. Every key: lambda.workspace.toml.example.\n\
         # Events, permissions, networking and names on AWS stay with the template;\n\
         # set deploy = {{ name = \"...\" }} per function for `lbuild deploy` where a\n\
         # stack generates the name.\n\n\
         [defaults]\nruntime = {}\narchitecture = {}\n",
        comment(&t.file),
        t.kind,
        if t.layers.is_empty() {
            ""
        } else {
            " and one layer per layer it builds"
        },
        tstr(&runtime),
        tstr(&arch)
    );
    let mut carried_over = Vec::new();
    for l in &t.layers {
        text.push_str(&format!("\n[layers.{}]\n", tkey(&l.name)));
        if sam {
            text.push_str(
                "# As `sam build` with BuildMethod python3.X: the ContentUri directory and its\n\
                 # requirements, all under python/.\n",
            );
        }
        if let Some(r) = &l.requirements {
            let exclude = t
                .functions
                .iter()
                .find(|f| f.layers.contains(&l.name))
                .map(|f| f.dependency_exclude.clone())
                .unwrap_or_default();
            if exclude.is_empty() {
                text.push_str(&format!("requirements = {}\n", tstr(r)));
            } else {
                text.push_str(&format!(
                    "# noDeploy: the runtime provides these.\ndependencies = {{ requirements = {}, exclude = {} }}\n",
                    tstr(r),
                    tlist(&exclude)
                ));
            }
        }
        if !l.root.is_empty() {
            let mut exclude: Vec<&str> = TEST_EXCLUDES.to_vec();
            exclude.push("requirements*.txt");
            text.push_str(&format!(
                "sources = {{ root = {}, include = [\"**/*\"], exclude = {} }}\n",
                tstr(&l.root),
                tlist(&exclude)
            ));
        }
        if let Some(r) = &l.runtime {
            let (r, note) = carry_runtime(r, today);
            if let Some(n) = &note {
                text.push_str(&format!("# {}\n", comment(n)));
            }
            if r != runtime {
                text.push_str(&format!("runtime = {}\n", tstr(&r)));
            }
        }
        carried_over.push(format!(
            "layer {}{}{}",
            l.name,
            if l.root.is_empty() {
                String::new()
            } else {
                format!(" ({})", l.root)
            },
            l.requirements
                .as_ref()
                .map(|r| format!(" with {r}"))
                .unwrap_or_default()
        ));
    }
    for (f, (fn_runtime, runtime_note)) in t.functions.iter().zip(&carried) {
        text.push_str(&format!(
            "\n[functions.{}]\nhandler = {}\n",
            tkey(&f.name),
            tstr(&f.handler)
        ));
        if let Some(n) = runtime_note {
            text.push_str(&format!("# {}\n", comment(n)));
        }
        if *fn_runtime != runtime {
            text.push_str(&format!("runtime = {}\n", tstr(fn_runtime)));
        }
        let fn_arch = f.architecture.clone().unwrap_or_else(|| "x86_64".into());
        if fn_arch != arch {
            text.push_str(&format!("architecture = {}\n", tstr(&fn_arch)));
        }
        let mut exclude: Vec<String> = TEST_EXCLUDES.iter().map(|s| s.to_string()).collect();
        let include: Vec<String> = if sam {
            // SAM packages the whole code directory (CodeUri); with the
            // project as CodeUri, not lbuild's own output.
            exclude.push("requirements*.txt".into());
            if f.root == "." {
                exclude.push("dist/**".into());
            }
            vec!["**/*".into()]
        } else {
            let mut i = vec!["**/*.py".to_string()];
            i.extend(f.include.iter().cloned());
            exclude.extend(f.exclude.iter().cloned());
            i
        };
        text.push_str(&format!(
            "sources = {{ root = {}, include = {}, exclude = {} }}\n",
            tstr(&f.root),
            tlist(&include),
            tlist(&exclude)
        ));
        if let Some(v) = f.timeout {
            text.push_str(&format!("timeout = {v}\n"));
        }
        if let Some(v) = f.memory {
            text.push_str(&format!("memory = {v}\n"));
        }
        if !f.layers.is_empty() {
            text.push_str(&format!("layers = {}\n", tlist(&f.layers)));
        }
        for arn in &f.external_layers {
            text.push_str(&format!(
                "# layer attached by ARN, not built here (keep it attached at deploy): {}\n",
                comment(arn)
            ));
        }
        for r in &f.layer_refs {
            text.push_str(&format!("# layer: {}\n", comment(r)));
        }
        if let Some(r) = &f.requirements {
            if f.dependency_exclude.is_empty() {
                text.push_str(&format!(
                    "dependencies = {{ requirements = {} }}\n",
                    tstr(r)
                ));
            } else {
                text.push_str(&format!(
                    "dependencies = {{ requirements = {}, exclude = {} }}\n",
                    tstr(r),
                    tlist(&f.dependency_exclude)
                ));
            }
        }
        if let Some(n) = &f.aws_name {
            text.push_str(&format!("deploy = {{ name = {} }}\n", tstr(n)));
        }
        if !f.environment.is_empty() || !f.environment_refs.is_empty() {
            text.push_str(&format!("\n[functions.{}.environment]\n", tkey(&f.name)));
            for (k, v) in &f.environment {
                text.push_str(&format!("{} = {}\n", tkey(k), tstr(v)));
            }
            for (k, v) in &f.environment_refs {
                text.push_str(&format!(
                    "# {} = {}  (resolved at deploy: set it there, or a literal here)\n",
                    comment(k),
                    comment(v)
                ));
            }
        }
        let mut what = vec![format!("handler {}", f.handler), format!("root {}", f.root)];
        if let Some(r) = &f.requirements {
            what.push(r.clone());
        }
        if !f.layers.is_empty() {
            what.push(format!("layers {}", f.layers.join(", ")));
        }
        carried_over.push(format!("function {} ({})", f.name, what.join(", ")));
        if !f.external_layers.is_empty() {
            notes.push(format!(
                "{}: layers attached by ARN kept as comments (lbuild's layers list names [layers.NAME] tables): {}",
                f.name,
                f.external_layers.join(", ")
            ));
        }
        if !f.environment_refs.is_empty() || !f.layer_refs.is_empty() {
            let names: Vec<&str> = f.environment_refs.iter().map(|(k, _)| k.as_str()).collect();
            notes.push(format!(
                "{}: references written as comments to fill in: {}",
                f.name,
                names
                    .iter()
                    .map(|n| n.to_string())
                    .chain(f.layer_refs.iter().map(|r| format!("layer {r}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut report = vec![format!(
        "migrated {} ({}): {}",
        t.file,
        t.kind,
        carried_over.join("; ")
    )];
    report.extend(t.report.iter().cloned());
    report.extend(notes);
    let first = &t.functions[0];
    let outcome = InitOutcome {
        manifest: PathBuf::new(),
        handler: first.handler.clone(),
        root: first.root.clone(),
        runtime,
        architecture: arch,
        notes: report,
    };
    (text, outcome)
}

fn comment_out_section(text: &str, header: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == header;
        }
        if inside && !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_a_valid_manifest() {
        let raw = crate::manifest::parse(Path::new("lambda.toml.example"), TEMPLATE).unwrap();
        assert_eq!(raw.function.get_ref().handler.get_ref(), "app.handler");
        assert!(raw.dependencies.is_some());
    }

    #[test]
    fn init_guesses_console_style_handler_and_drops_missing_deps() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(
            d.path().join("lambda_function.py"),
            "def lambda_handler(event, context):\n    pass\n",
        )
        .unwrap();
        let (text, _) = render(d.path(), None).unwrap();
        let raw = crate::manifest::parse(Path::new("x"), &text).unwrap();
        assert_eq!(
            raw.function.get_ref().handler.get_ref(),
            "lambda_function.lambda_handler"
        );
        assert!(raw.dependencies.is_none());
        assert!(raw.config.is_none_or(|c| c.get_ref().files.is_empty()));
    }

    #[test]
    fn signatures_decide_the_handler() {
        let text = "def main():\n    pass\n\nasync def handler(\n    event: dict[str, int],\n    context=None,\n):\n    pass\ndef util(a, b): pass\n    def nested(event, context): pass\ndef on_event(event, ctx, *, x=1): pass\n";
        let got: Vec<(String, usize)> = defs(text)
            .into_iter()
            .map(|d| (d.name, d.params.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("main".into(), 0),
                ("handler".into(), 2),
                ("util".into(), 2),
                ("on_event".into(), 2)
            ]
        );
        assert_eq!(handler_function(text).as_deref(), Some("handler"));
        assert_eq!(handler_function("def main():\n  pass\n"), None);
        assert_eq!(handler_function("def util(a, b): pass\n"), None);
        assert_eq!(
            handler_function("def process(event, context): pass\n").as_deref(),
            Some("process")
        );
    }

    #[test]
    fn a_src_layout_namespace_package_roots_at_src_and_several_handlers_ask() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("src/svc")).unwrap();
        fs_err::write(d.path().join("src/svc/main.py"), "def main():\n    pass\n").unwrap();
        fs_err::write(
            d.path().join("src/svc/handler.py"),
            "def handler(event, context):\n    return 1\n",
        )
        .unwrap();
        let (c, note) = choose_handler(d.path(), None).unwrap();
        assert_eq!((c.root.as_str(), c.module.as_str()), ("src", "svc.handler"));
        assert!(note.unwrap().contains("src/svc/main.py define none"));
        fs_err::write(
            d.path().join("src/svc/main.py"),
            "def lambda_handler(event, context):\n    pass\n",
        )
        .unwrap();
        let Err(Error::Input { message, hint }) = choose_handler(d.path(), None) else {
            panic!("several fit")
        };
        assert!(
            message.contains("svc.handler.handler (src/svc/handler.py)"),
            "{message}"
        );
        assert!(message.contains("svc.main.lambda_handler"), "{message}");
        assert!(hint.contains("--handler"), "{hint}");
        let (c, _) = choose_handler(d.path(), Some("svc.main.lambda_handler")).unwrap();
        assert_eq!(c.root, "src");
    }

    #[test]
    fn requires_python_is_read_as_pep_440() {
        let d = tempfile::tempdir().unwrap();
        let today = jiff::civil::Date::constant(2026, 1, 1);
        fs_err::write(
            d.path().join("pyproject.toml"),
            "[project]\nname = \"x\"\nrequires-python = \"<3.13,>=3.10\"\n",
        )
        .unwrap();
        assert_eq!(runtime_from_files(d.path(), today).unwrap().0, "python3.10");
        fs_err::write(
            d.path().join("pyproject.toml"),
            "[project]\nrequires-python = \">=3.12.1\"\n",
        )
        .unwrap();
        assert_eq!(runtime_from_files(d.path(), today).unwrap().0, "python3.13");
        fs_err::write(d.path().join(".python-version"), "3.11.4\n").unwrap();
        assert_eq!(runtime_from_files(d.path(), today).unwrap().0, "python3.11");
    }

    #[test]
    fn blocked_runtimes_are_replaced_with_a_reason() {
        let today = jiff::civil::Date::constant(2026, 1, 1);
        let (r, note) = carry_runtime("python3.8", today);
        assert_eq!(r, "python3.9");
        let note = note.unwrap();
        assert!(note.contains("no longer lets you update"), "{note}");
        assert!(note.contains("2025-03-31"), "{note}");
        let (r, note) = carry_runtime("python3.9", today);
        assert_eq!(r, "python3.9");
        assert!(note.unwrap().contains("deprecated by AWS since 2025-12-15"));
        assert_eq!(
            carry_runtime("python3.12", today),
            ("python3.12".into(), None)
        );
    }

    #[test]
    fn keys_and_comments_cannot_break_out() {
        assert_eq!(tkey("orders_1"), "orders_1");
        assert_eq!(tkey("a\"b]\n"), "\"a\\\"b]\\u000A\"");
        let t: toml::Table = toml::from_str(&format!(
            "{} = {}\n# {}\n",
            tkey("x\"]\n[evil]"),
            tstr("v\"\n[evil]\nroot = \"..\""),
            comment("c\n[evil]")
        ))
        .unwrap();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            t["x\"]\n[evil]"].as_str(),
            Some("v\"\n[evil]\nroot = \"..\"")
        );
    }
}
