//! `lbuild init`: a commented lambda.toml made from lambda.toml.example,
//! filled in from what the repository already says: the handler (flat,
//! `src/PKG/`, console-style `lambda_function.py`; several candidates →
//! the one defining `handler`/`lambda_handler`), the sources root, package
//! data, config files of any common kind, requirements, runtime and
//! architecture (SAM `template.yaml`, `.python-version`,
//! `requires-python`). Also appends `.lbuild/` and the output directory to
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

/// Writes the manifest at `path` (its directory is the project's; created
/// if missing); refuses to overwrite unless `force`. With `workspace`, one
/// `[functions.NAME]` per handler module found (several packages each
/// defining a handler); without it, such a layout is offered in a note.
pub fn write_manifest(path: &Path, force: bool, workspace: bool) -> crate::Result<InitOutcome> {
    if path.exists() && !force {
        return Err(Error::Input {
            message: format!("{} already exists", path.display()),
            hint: "edit it, or pass --force to overwrite it".into(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
    let handlers = workspace_candidates(&dir);
    let template = crate::templates::read(&dir).filter(|t| t.functions.len() > 1);
    let (text, mut outcome) = if let Some(t) = template {
        render_from_template(&dir, &t)
    } else if workspace && handlers.len() > 1 {
        render_workspace(&dir, &handlers)
    } else {
        let (text, mut outcome) = render(&dir);
        if workspace {
            outcome.notes.push(format!(
                "--workspace: found {} package(s) defining a handler, so wrote a single function",
                handlers.len()
            ));
        } else if handlers.len() > 1 {
            let names: Vec<String> = handlers.iter().map(|(n, _)| n.clone()).collect();
            outcome.notes.push(format!(
                "found {} handlers in separate packages ({}): `lbuild init --workspace --force` writes a workspace with one function each",
                handlers.len(),
                names.join(", ")
            ));
        }
        (text, outcome)
    };
    std::fs::write(path, text).map_err(Error::io("cannot write", path))?;
    outcome.manifest = path.to_path_buf();
    let output_dir = "dist/";
    let added = append_gitignore(&dir, &[".lbuild/", output_dir])?;
    if !added.is_empty() {
        outcome.notes.push(format!(
            "added {} to {}",
            added.join(" and "),
            dir.join(".gitignore").display()
        ));
    }
    Ok(outcome)
}

/// Appends the lines `.gitignore` lacks (creating it); returns them.
fn append_gitignore(dir: &Path, lines: &[&str]) -> crate::Result<Vec<String>> {
    let path = dir.join(".gitignore");
    let text = match std::fs::read_to_string(&path) {
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
    std::fs::write(&path, out).map_err(Error::io("cannot write", &path))?;
    Ok(missing)
}

/// A module that may hold the handler.
#[derive(Debug, Clone)]
struct Candidate {
    /// Sources root, relative to the project ("." or "src").
    root: String,
    /// Dotted module under the root ("app", "shop.handler").
    module: String,
    /// File, relative to the project, for messages.
    file: String,
    /// The handler function it defines, if any of [`FUNCTIONS`].
    function: Option<&'static str>,
}

fn defines(text: &str) -> Option<&'static str> {
    FUNCTIONS.iter().copied().find(|f| {
        text.lines().any(|l| {
            let l = l.strip_prefix("async ").unwrap_or(l);
            l.strip_prefix("def ")
                .and_then(|r| r.strip_prefix(f))
                .is_some_and(|r| r.trim_start().starts_with('('))
        })
    })
}

fn subdirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && !crate::exclusions::PRUNED_DIRS.contains(&n.as_str())
                && !matches!(n.as_str(), "tests" | "test" | "dist" | "build")
        })
        .collect();
    out.sort();
    out
}

/// Every module file that may hold the handler, in order of preference
/// before looking at what they define: flat, `src/`, `src/PKG/`, `PKG/`.
fn candidates(dir: &Path) -> Vec<Candidate> {
    let mut places: Vec<(String, String)> = vec![(".".into(), String::new())];
    if dir.join("src").is_dir() {
        places.push(("src".into(), String::new()));
        for pkg in subdirs(&dir.join("src")) {
            if crate::exclusions::is_virtualenv(&dir.join("src").join(&pkg)) {
                continue;
            }
            places.push(("src".into(), pkg));
        }
    }
    for pkg in subdirs(dir) {
        if pkg != "src"
            && dir.join(&pkg).join("__init__.py").is_file()
            && !crate::exclusions::is_virtualenv(&dir.join(&pkg))
        {
            places.push((".".into(), pkg));
        }
    }
    let mut out = Vec::new();
    for (root, pkg) in places {
        for m in MODULES {
            let rel_root = if root == "." {
                PathBuf::new()
            } else {
                PathBuf::from(&root)
            };
            let file = rel_root.join(&pkg).join(format!("{m}.py"));
            let Ok(text) = std::fs::read_to_string(dir.join(&file)) else {
                continue;
            };
            // A package without __init__.py under src/ is its own root.
            let (root, module) = if pkg.is_empty() {
                (root.clone(), m.to_string())
            } else if dir.join(&rel_root).join(&pkg).join("__init__.py").is_file() {
                (root.clone(), format!("{pkg}.{m}"))
            } else {
                (
                    rel_root.join(&pkg).to_string_lossy().into_owned(),
                    m.to_string(),
                )
            };
            out.push(Candidate {
                root,
                module,
                file: file.to_string_lossy().into_owned(),
                function: defines(&text),
            });
        }
    }
    out
}

/// The handler: the first candidate defining a handler function, else the
/// first candidate, else `app.handler`; and what to tell the user.
fn choose_handler(dir: &Path) -> (Candidate, Option<String>) {
    let all = candidates(dir);
    let Some(first) = all.first().cloned() else {
        return (
            Candidate {
                root: ".".into(),
                module: "app".into(),
                file: "app.py".into(),
                function: None,
            },
            Some("no handler module found (app.py, lambda_function.py, handler.py, src/PKG/handler.py): wrote handler = \"app.handler\"; edit [function] handler".into()),
        );
    };
    let defining: Vec<&Candidate> = all.iter().filter(|c| c.function.is_some()).collect();
    let chosen = defining.first().map(|c| (*c).clone()).unwrap_or(first);
    let note = (all.len() > 1).then(|| {
        let others: Vec<&str> = all
            .iter()
            .filter(|c| c.file != chosen.file)
            .map(|c| c.file.as_str())
            .collect();
        format!(
            "handler: chose {} ({}) among {} candidates (also {}); edit [function] handler if it is another",
            chosen.file,
            match chosen.function {
                Some(f) => format!("it defines `def {f}(`"),
                None => "none defines a handler function".into(),
            },
            all.len(),
            others.join(", ")
        )
    });
    (chosen, note)
}

/// A value read from the repository and the file it came from.
type Found = (String, String);

/// `python3.N` from the repository: a SAM template's `Runtime`, a
/// serverless.yml's `provider.runtime`, `.python-version`, or pyproject's
/// `requires-python` lower bound; and the architecture from the SAM
/// template's `Architectures` or serverless.yml's `architecture`.
fn runtime_and_arch(dir: &Path) -> (Option<Found>, Option<Found>) {
    let supported = |minor: u32| (9..=14).contains(&minor);
    let from_version = |s: &str| -> Option<String> {
        let rest = s.trim().strip_prefix("python").unwrap_or(s.trim());
        let rest = rest.strip_prefix("3.")?;
        let minor: u32 = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?;
        supported(minor).then(|| format!("python3.{minor}"))
    };
    let mut runtime = None;
    let mut arch = None;
    for name in ["template.yaml", "template.yml"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim();
            if runtime.is_none()
                && let Some(v) = t.strip_prefix("Runtime:")
                && let Some(r) = from_version(v.trim().trim_matches(['"', '\'']))
            {
                runtime = Some((r, name.to_string()));
            }
            if arch.is_none()
                && let Some(v) = t.strip_prefix("Architectures:")
            {
                let mut scope = v.to_string();
                for next in lines.iter().skip(i + 1).take(3) {
                    if next.trim_start().starts_with('-') {
                        scope.push_str(next);
                    } else {
                        break;
                    }
                }
                if scope.contains("arm64") {
                    arch = Some(("arm64".to_string(), name.to_string()));
                } else if scope.contains("x86_64") {
                    arch = Some(("x86_64".to_string(), name.to_string()));
                }
            }
        }
        break;
    }
    if let Some(t) = crate::templates::read(dir).filter(|t| t.kind == "Serverless") {
        let first = t.functions.first();
        if runtime.is_none()
            && let Some(r) = t
                .runtime
                .clone()
                .or_else(|| first.and_then(|f| f.runtime.clone()))
            && let Some(r) = from_version(&r)
        {
            runtime = Some((r, t.file.clone()));
        }
        if arch.is_none()
            && let Some(a) = t
                .architecture
                .clone()
                .or_else(|| first.and_then(|f| f.architecture.clone()))
        {
            arch = Some((a, t.file.clone()));
        }
    }
    if runtime.is_none()
        && let Ok(text) = std::fs::read_to_string(dir.join(".python-version"))
        && let Some(r) = text.lines().next().and_then(from_version)
    {
        runtime = Some((r, ".python-version".into()));
    }
    if runtime.is_none()
        && let Ok(text) = std::fs::read_to_string(dir.join("pyproject.toml"))
        && let Some(line) = text
            .lines()
            .find(|l| l.trim_start().starts_with("requires-python"))
        && let Some(at) = line.find("3.")
        && let Some(r) = from_version(&line[at..])
    {
        runtime = Some((r, "pyproject.toml requires-python".into()));
    }
    (runtime, arch)
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

fn quoted_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", q.join(", "))
}

fn render(dir: &Path) -> (String, InitOutcome) {
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
    let (chosen, note) = choose_handler(dir);
    notes.extend(note);
    let handler = format!("{}.{}", chosen.module, chosen.function.unwrap_or("handler"));
    let root = chosen.root.clone();
    let root_dir = dir.join(&root);

    // Package data: everything inside the handler's top-level package (and
    // the other packages at the root), not only its .py files.
    let mut include = vec!["**/*.py".to_string()];
    for pkg in subdirs(&root_dir) {
        if root_dir.join(&pkg).join("__init__.py").is_file() {
            include.push(format!("{pkg}/**/*"));
        }
    }

    let (runtime, arch) = runtime_and_arch(dir);
    let runtime_name = runtime
        .as_ref()
        .map(|(r, _)| r.clone())
        .unwrap_or_else(|| "python3.12".into());
    if let Some((r, from)) = &runtime {
        notes.push(format!("runtime {r} (from {from})"));
    }
    let arch_name = arch
        .as_ref()
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| "x86_64".into());
    if let Some((a, from)) = &arch {
        notes.push(format!("architecture {a} (from {from})"));
    }

    let mut text = TEMPLATE
        .replace("name = \"orders\"", &format!("name = \"{name}\""))
        .replace(
            "handler = \"app.handler\"",
            &format!("handler = \"{handler}\""),
        )
        .replace(
            "runtime = \"python3.12\"",
            &format!("runtime = \"{runtime_name}\""),
        )
        .replace(
            "architecture = \"x86_64\"",
            &format!("architecture = \"{arch_name}\""),
        )
        .replace("root = \".\"", &format!("root = \"{root}\""))
        .replace(
            "include = [\"**/*.py\"]",
            &format!(
                "# Python files, plus everything inside the packages (templates, JSON\n\
                 # schemas, py.typed: package data the code reads at run time).\n\
                 include = {}",
                quoted_list(&include)
            ),
        )
        .replace(
            "exclude = [\"tests/**\"]",
            "# Test files are left out: test_*.py, *_test.py, tests/ directories, conftest.py.\n\
             exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\"]",
        )
        .replace(
            "path = \"dist/orders.zip\"",
            &format!("path = \"dist/{name}.zip\""),
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
                &format!("requirements = \"{r}\""),
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
        &format!("files = {}", quoted_list(&config)),
    );

    let outcome = InitOutcome {
        manifest: PathBuf::new(),
        handler,
        root,
        runtime: runtime_name,
        architecture: arch_name,
        notes,
    };
    (text, outcome)
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
    let (runtime, arch) = runtime_and_arch(dir);
    let runtime_name = runtime
        .as_ref()
        .map(|(r, _)| r.clone())
        .unwrap_or_else(|| "python3.12".into());
    let arch_name = arch
        .as_ref()
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| "x86_64".into());
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
    text.push_str(&format!("runtime = \"{runtime_name}\"\n"));
    text.push_str(&format!("architecture = \"{arch_name}\"\n"));
    text.push_str(&format!(
        "# Test files are left out: test_*.py, *_test.py, tests/ directories, conftest.py.\n\
         sources = {{ root = \"{root}\", exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\"] }}\n"
    ));
    let requirements = ["requirements.txt", "src/requirements.txt"]
        .into_iter()
        .find(|r| dir.join(r).is_file());
    if let Some(r) = requirements {
        text.push_str(&format!(
            "# Every function gets these dependencies; move them into a [layers.NAME]\n\
             # (and `layers = [\"NAME\"]` per function) to ship them once.\n\
             dependencies = {{ requirements = \"{r}\" }}\n"
        ));
    }
    for (name, c) in handlers {
        let pkg = c.module.split('.').next().unwrap_or_default();
        let mut include = vec![format!("{pkg}/**/*")];
        include.extend(shared.iter().map(|s| format!("{s}/**/*")));
        text.push_str(&format!(
            "\n[functions.{name}]\nhandler = \"{}.{}\"\nsources = {{ include = {} }}\n",
            c.module,
            c.function.unwrap_or("handler"),
            quoted_list(&include)
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

/// A workspace manifest with one function per Python function of a SAM or
/// Serverless template: its handler, code directory as sources root (SAM;
/// Serverless packages the service directory), runtime and architecture
/// where they differ from the template's defaults.
fn render_from_template(dir: &Path, t: &crate::templates::Template) -> (String, InitOutcome) {
    let most_common = |pick: &dyn Fn(&crate::templates::TemplateFunction) -> Option<String>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for f in &t.functions {
            if let Some(v) = pick(f) {
                *counts.entry(v).or_default() += 1;
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v)
    };
    let runtime = t
        .runtime
        .clone()
        .or_else(|| most_common(&|f| f.runtime.clone()))
        .unwrap_or_else(|| "python3.12".into());
    let arch = t
        .architecture
        .clone()
        .or_else(|| most_common(&|f| f.architecture.clone()))
        .unwrap_or_else(|| "x86_64".into());
    let sam = t.kind == "SAM";
    let mut text = format!(
        "# lambda.toml: a workspace written by `lbuild init` from {} ({}): one\n\
         # function per Python function there. Every key: lambda.workspace.toml.example.\n\
         # Function names on AWS: set deploy = {{ name = \"...\" }} per function for\n\
         # `lbuild deploy` (a stack's generated names are not in the template).\n\n\
         [defaults]\nruntime = \"{runtime}\"\narchitecture = \"{arch}\"\n",
        t.file, t.kind
    );
    if sam {
        text.push_str(
            "# SAM packages the whole code directory (CodeUri): so does each function\n\
             # here, test files left out (test_*.py, *_test.py, tests/, conftest.py).\n\
             sources = { include = [\"**/*\"], exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\", \"requirements*.txt\"] }\n",
        );
    } else {
        text.push_str(
            "# Serverless packages the service directory: each function takes its\n\
             # Python files, test files left out.\n\
             sources = { include = [\"**/*.py\"], exclude = [\"**/test_*.py\", \"**/*_test.py\", \"**/tests/**\", \"**/conftest.py\"] }\n",
        );
        if dir.join("requirements.txt").is_file() {
            text.push_str(
                "# serverless-python-requirements' file: every function gets these; a\n\
                 # [layers.NAME] would ship them once.\n\
                 dependencies = { requirements = \"requirements.txt\" }\n",
            );
        }
    }
    for f in &t.functions {
        text.push_str(&format!(
            "\n[functions.{}]\nhandler = \"{}\"\n",
            f.name, f.handler
        ));
        if f.root != "." {
            text.push_str(&format!("sources = {{ root = \"{}\" }}\n", f.root));
        }
        if let Some(r) = f.runtime.as_ref().filter(|r| **r != runtime) {
            text.push_str(&format!("runtime = \"{r}\"\n"));
        }
        if let Some(a) = f.architecture.as_ref().filter(|a| **a != arch) {
            text.push_str(&format!("architecture = \"{a}\"\n"));
        }
        if let Some(req) = &f.requirements {
            text.push_str(&format!("dependencies = {{ requirements = \"{req}\" }}\n"));
        }
    }
    let mut notes = vec![format!(
        "wrote a workspace with {} functions from {} ({})",
        t.functions.len(),
        t.file,
        t.functions
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if !t.skipped.is_empty() {
        notes.push(format!("left out: {}", t.skipped.join(", ")));
    }
    let first = &t.functions[0];
    let outcome = InitOutcome {
        manifest: PathBuf::new(),
        handler: first.handler.clone(),
        root: first.root.clone(),
        runtime,
        architecture: arch,
        notes,
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
        std::fs::write(
            d.path().join("lambda_function.py"),
            "def lambda_handler(event, context):\n    pass\n",
        )
        .unwrap();
        let (text, _) = render(d.path());
        let raw = crate::manifest::parse(Path::new("x"), &text).unwrap();
        assert_eq!(
            raw.function.get_ref().handler.get_ref(),
            "lambda_function.lambda_handler"
        );
        assert!(raw.dependencies.is_none());
        assert!(raw.config.is_none_or(|c| c.get_ref().files.is_empty()));
    }

    #[test]
    fn runtime_and_architecture_come_from_a_sam_template() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("template.yaml"),
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.11\n      Architectures:\n        - arm64\n",
        )
        .unwrap();
        std::fs::write(d.path().join(".python-version"), "3.13\n").unwrap();
        let (r, a) = runtime_and_arch(d.path());
        assert_eq!(r.unwrap().0, "python3.11");
        assert_eq!(a.unwrap().0, "arm64");
        std::fs::remove_file(d.path().join("template.yaml")).unwrap();
        assert_eq!(runtime_and_arch(d.path()).0.unwrap().0, "python3.13");
        std::fs::remove_file(d.path().join(".python-version")).unwrap();
        std::fs::write(
            d.path().join("pyproject.toml"),
            "[project]\nrequires-python = \">=3.10,<3.14\"\n",
        )
        .unwrap();
        assert_eq!(runtime_and_arch(d.path()).0.unwrap().0, "python3.10");
        std::fs::write(
            d.path().join("serverless.yml"),
            "provider:\n  runtime: python3.12\n  architecture: arm64\nfunctions:\n  f:\n    handler: app.handler\n",
        )
        .unwrap();
        let (r, a) = runtime_and_arch(d.path());
        assert_eq!(r.unwrap(), ("python3.12".into(), "serverless.yml".into()));
        assert_eq!(a.unwrap().0, "arm64");
    }
}
