//! `lbuild init`: a commented lambda.toml for the current directory, made
//! from lambda.toml.example with the name and handler guessed from the
//! files present.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::manifest::MANIFEST_NAME;

const TEMPLATE: &str = include_str!("../lambda.toml.example");

/// Writes `DIR/lambda.toml`; refuses to overwrite unless `force`.
pub fn write_manifest(dir: &Path, force: bool) -> crate::Result<PathBuf> {
    let path = dir.join(MANIFEST_NAME);
    if path.exists() && !force {
        return Err(Error::Input {
            message: format!("{} already exists", path.display()),
            hint: "edit it, or pass --force to overwrite it".into(),
        });
    }
    let text = render(dir);
    std::fs::write(&path, text).map_err(Error::io("cannot write", &path))?;
    Ok(path)
}

fn render(dir: &Path) -> String {
    let name: String = dir
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
    let handler = guess_handler(dir);
    let mut text = TEMPLATE
        .replace("name = \"orders\"", &format!("name = \"{name}\""))
        .replace(
            "handler = \"app.handler\"",
            &format!("handler = \"{handler}\""),
        )
        .replace(
            "path = \"dist/orders.zip\"",
            &format!("path = \"dist/{name}.zip\""),
        );
    if !dir.join("requirements.txt").is_file() {
        text = comment_out_section(&text, "[dependencies]");
    }
    if !dir.join("config").is_dir() {
        text = text.replace("files = [\"config/*.json\"]", "files = []");
    }
    text
}

/// `app.py` / `lambda_function.py` / `handler.py`, with the function they
/// define (`lambda_handler` is the console's default name).
fn guess_handler(dir: &Path) -> String {
    for module in ["app", "lambda_function", "handler", "main"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{module}.py"))) else {
            continue;
        };
        for func in ["handler", "lambda_handler", "main"] {
            if text.contains(&format!("def {func}(")) {
                return format!("{module}.{func}");
            }
        }
        return format!("{module}.handler");
    }
    "app.handler".into()
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
        let text = render(d.path());
        let raw = crate::manifest::parse(Path::new("x"), &text).unwrap();
        assert_eq!(
            raw.function.get_ref().handler.get_ref(),
            "lambda_function.lambda_handler"
        );
        assert!(raw.dependencies.is_none());
        assert!(raw.config.is_none_or(|c| c.get_ref().files.is_empty()));
    }
}
