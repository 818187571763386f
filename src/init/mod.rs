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

use std::path::{Path, PathBuf};

use crate::Error;

mod handlers;
mod render;
mod runtime;

use handlers::*;
use render::*;
use runtime::*;

const TEMPLATE: &str = include_str!("../../lambda.toml.example");

/// Module file names that hold a handler, most common first.
const MODULES: &[&str] = &["app", "lambda_function", "handler", "main", "index"];
/// Function names Lambda handlers go by (`lambda_handler` is the console's).
const FUNCTIONS: &[&str] = &["handler", "lambda_handler", "main"];
/// Config file kinds picked up under `config/`.
const CONFIG_KINDS: &[&str] = &["json", "yaml", "yml", "toml", "ini"];

/// What `init` wrote and decided, for the user.
#[derive(Debug, serde::Serialize)]
pub(crate) struct InitOutcome {
    pub manifest: PathBuf,
    pub handler: String,
    pub root: String,
    pub runtime: String,
    pub architecture: String,
    /// How many functions the manifest declares (1 for the single form).
    pub functions: usize,
    /// One line per decision worth telling (which handler among several,
    /// where the runtime came from, .gitignore lines added).
    pub notes: Vec<String>,
}

/// What `lbuild init` was asked for.
#[derive(Debug, Default, Clone)]
pub(crate) struct InitOptions {
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
pub(crate) fn write_manifest(path: &Path, options: &InitOptions) -> crate::Result<InitOutcome> {
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
