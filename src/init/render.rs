//! Writing the manifest's text: the single function from the commented
//! example, a workspace of handler packages, or a workspace migrated from a
//! template; every value through the TOML serializer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

/// The config kinds present under `config/` (any depth).
pub(super) fn config_globs(dir: &Path) -> Vec<String> {
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
pub(super) fn tstr(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
pub(super) fn tlist<S: AsRef<str>>(items: &[S]) -> String {
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
pub(super) fn tkey(k: &str) -> String {
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
pub(super) fn comment(s: &str) -> String {
    crate::sanitize::escape_controls(s)
}

pub(super) fn render(dir: &Path, given: Option<&str>) -> crate::Result<(String, InitOutcome)> {
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
        functions: 1,
        notes,
    };
    Ok((text, outcome))
}

/// Packages that each hold a module defining a handler function, as
/// (function name, candidate), one per package: the functions of a
/// workspace.
pub(super) fn workspace_candidates(dir: &Path) -> Vec<(String, Candidate)> {
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
pub(super) fn render_workspace(
    dir: &Path,
    handlers: &[(String, Candidate)],
) -> (String, InitOutcome) {
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
        functions: handlers.len(),
        notes,
    };
    (text, outcome)
}

/// Test files, left out of every function and layer made from a template.
pub(super) const TEST_EXCLUDES: &[&str] = &[
    "**/test_*.py",
    "**/*_test.py",
    "**/tests/**",
    "**/conftest.py",
];

/// A workspace manifest from a SAM/CloudFormation or Serverless template:
/// its layers, then one function per Python function, every value written
/// by the TOML serializer, what cannot be carried left as a comment, and
/// the migration report as notes.
pub(super) fn render_from_template(t: &crate::templates::Template) -> (String, InitOutcome) {
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
        if sam && l.runtime.is_some() {
            text.push_str(
                "# As `sam build` with BuildMethod python3.X: the ContentUri directory and its\n\
                 # requirements, all under python/.\n",
            );
        } else if sam {
            text.push_str(
                "# As `sam build` without a BuildMethod: the ContentUri's python/ directory,\n\
                 # under python/ (nothing is installed).\n",
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
        functions: t.functions.len(),
        notes: report,
    };
    (text, outcome)
}

pub(super) fn comment_out_section(text: &str, header: &str) -> String {
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
