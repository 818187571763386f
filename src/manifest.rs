//! `lambda.toml`: the raw types serde reads, and their validation into a
//! [`Plan`] that every stage receives.
//!
//! This module owns parsing, error positions (file:line:column) and the
//! checks that need nothing but the manifest and the file system layout
//! (globs that escape the root, an output inside the sources). It does not
//! read source contents; stages do.

use std::path::{Component, Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// The file name lbuild looks for, like cargo looks for `Cargo.toml`.
pub const MANIFEST_NAME: &str = "lambda.toml";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no {MANIFEST_NAME} found in {dir} or any parent directory")]
    NotFound { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Hint,
    },
    #[error("{path}: {message}")]
    Invalid {
        path: PathBuf,
        message: String,
        hint: String,
    },
}

impl ManifestError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ManifestError::NotFound { .. } => {
                Some("run `lbuild init` to create one, or pass --manifest PATH".into())
            }
            ManifestError::Read { .. } => None,
            ManifestError::Parse { hint, .. } => hint.0.clone(),
            ManifestError::Invalid { hint, .. } => Some(hint.clone()),
        }
    }
}

/// An optional hint for parse errors.
#[derive(Debug, Default)]
pub struct Hint(pub Option<String>);

// ---------------------------------------------------------------- raw types

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub function: RawFunction,
    #[serde(default)]
    pub sources: RawSources,
    pub dependencies: Option<RawDependencies>,
    #[serde(default)]
    pub config: RawConfig,
    #[serde(default)]
    pub output: RawOutput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub name: String,
    pub handler: String,
    #[serde(default = "default_runtime")]
    pub runtime: String,
    #[serde(default)]
    pub architecture: Architecture,
}

fn default_runtime() -> String {
    "python3.12".into()
}

#[derive(Debug, Deserialize, serde::Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default = "default_include")]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_root() -> String {
    ".".into()
}
fn default_include() -> Vec<String> {
    vec!["**/*.py".into()]
}

impl Default for RawSources {
    fn default() -> Self {
        RawSources {
            root: default_root(),
            include: default_include(),
            exclude: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDependencies {
    #[serde(default = "default_requirements")]
    pub requirements: String,
    #[serde(default)]
    pub installer: InstallerChoice,
    /// Distributions to drop after install because the runtime provides them.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    #[serde(default)]
    pub find_links: Vec<String>,
    #[serde(default)]
    pub no_index: bool,
}

fn default_requirements() -> String {
    "requirements.txt".into()
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstallerChoice {
    #[default]
    Auto,
    Uv,
    Pip,
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    X86_64,
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
    /// The machine name used in manylinux platform tags.
    pub fn manylinux_machine(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "aarch64",
        }
    }
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub path: Option<String>,
    #[serde(default = "default_level")]
    pub level: i64,
    #[serde(default)]
    pub mtime: Option<MtimeMode>,
}

/// libdeflate 7: on the benchmark corpus the smallest level whose archive
/// is no larger than `zip -9`'s (6 is 0.05% larger), at less than half
/// `zip -6`'s CPU time.
fn default_level() -> i64 {
    7
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            path: None,
            level: default_level(),
            mtime: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MtimeMode {
    /// Always 1980-01-01 00:00:00, whatever the environment says.
    Fixed,
    /// `SOURCE_DATE_EPOCH` from the environment (an error when unset).
    SourceDateEpoch,
    /// The committer time of the last git commit of the project.
    Git,
}

// ---------------------------------------------------------------- the plan

/// A Lambda Python runtime, `python3.X`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    pub minor: u32,
}

impl Runtime {
    pub fn parse(s: &str) -> Option<Runtime> {
        let minor: u32 = s.strip_prefix("python3.")?.parse().ok()?;
        (9..=14).contains(&minor).then_some(Runtime { minor })
    }
    /// `3.12`
    pub fn version(self) -> String {
        format!("3.{}", self.minor)
    }
    /// `python3.12`
    pub fn name(self) -> String {
        format!("python3.{}", self.minor)
    }
    /// The glibc the runtime's Amazon Linux image ships: 2.26 for
    /// python3.9–3.11 (AL2), 2.34 for python3.12 and later (AL2023).
    pub fn glibc(self) -> (u32, u32) {
        if self.minor <= 11 { (2, 26) } else { (2, 34) }
    }
}

#[derive(Debug, Clone)]
pub struct SourcesPlan {
    /// Absolute, canonical.
    pub root: PathBuf,
    pub include: GlobSet,
    pub exclude: GlobSet,
    pub raw: RawSources,
}

#[derive(Debug, Clone)]
pub struct DepsPlan {
    /// Absolute path of requirements.txt.
    pub requirements: PathBuf,
    pub raw: RawDependencies,
}

#[derive(Debug, Clone)]
pub struct ConfigPlan {
    /// Globs relative to the project directory, as written.
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// Absolute.
    pub path: PathBuf,
    pub level: u32,
    pub mtime: Option<MtimeMode>,
}

/// The validated manifest: paths resolved, globs compiled. Stages receive
/// this and never re-read the raw TOML.
#[derive(Debug, Clone)]
pub struct Plan {
    pub manifest_path: PathBuf,
    /// Directory holding the manifest (canonical).
    pub project_dir: PathBuf,
    pub name: String,
    pub handler: String,
    pub runtime: Runtime,
    pub architecture: Architecture,
    pub sources: SourcesPlan,
    pub deps: Option<DepsPlan>,
    pub config: ConfigPlan,
    pub output: OutputPlan,
    /// Where the SQLite cache and installed trees live.
    pub cache_dir: PathBuf,
}

impl Plan {
    /// The handler's module as archive paths it may live at:
    /// `app.handler` -> `app.py` or `app/__init__.py`.
    pub fn handler_module_paths(&self) -> [String; 2] {
        let (module, _) = self.handler.rsplit_once('.').unwrap_or((&self.handler, ""));
        let base = module.replace('.', "/");
        [format!("{base}.py"), format!("{base}/__init__.py")]
    }

    pub fn handler_function(&self) -> &str {
        self.handler.rsplit_once('.').map(|(_, f)| f).unwrap_or("")
    }
}

/// Walks up from `start` looking for `lambda.toml`.
pub fn find_manifest(start: &Path) -> Result<PathBuf, ManifestError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(MANIFEST_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ManifestError::NotFound {
        dir: start.to_path_buf(),
    })
}

/// Reads and validates a manifest.
pub fn load(path: &Path) -> Result<Plan, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse(path, &text)?;
    validate(path, &text, raw)
}

pub fn parse(path: &Path, text: &str) -> Result<RawManifest, ManifestError> {
    toml::from_str::<RawManifest>(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        let message = e.message().trim().to_string();
        let hint = Hint(parse_hint(&message));
        ManifestError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
            hint,
        }
    })
}

fn parse_hint(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some("remove or rename the key; every key is documented in lambda.toml.example".into())
    } else if message.contains("missing field") {
        Some("add the key; `lbuild init` writes a complete manifest".into())
    } else if message.contains("unknown variant") {
        Some("use one of the values listed above".into())
    } else if message.contains("invalid type") {
        Some("give the value the type shown in lambda.toml.example".into())
    } else {
        Some("fix the TOML syntax at that position (https://toml.io); lambda.toml.example shows every key".into())
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Finds `key = ...` inside `[section]` to point errors at a position.
fn position_of(text: &str, section: &str, key: &str) -> Option<(usize, usize)> {
    let mut in_section = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_start_matches('[').trim_end_matches(']').trim() == section;
        } else if in_section
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            let col = line.len() - line.trim_start().len();
            return Some(line_col(text, offset + col));
        }
        offset += line.len();
    }
    None
}

fn validate(path: &Path, text: &str, raw: RawManifest) -> Result<Plan, ManifestError> {
    let invalid = |section: &str, key: &str, message: String, hint: &str| {
        let (line, column) = position_of(text, section, key).unwrap_or((1, 1));
        ManifestError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
            hint: Hint(Some(hint.to_string())),
        }
    };

    let project_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;

    let f = &raw.function;
    if f.name.is_empty()
        || !f
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "function",
            "name",
            format!("invalid function name {:?}", f.name),
            "use letters, digits, '-' and '_' (AWS Lambda's rule)",
        ));
    }
    let handler_ok = f.handler.rsplit_once('.').is_some_and(|(m, func)| {
        !func.is_empty() && m.split('.').all(is_identifier) && is_identifier(func)
    });
    if !handler_ok {
        return Err(invalid(
            "function",
            "handler",
            format!("invalid handler {:?}", f.handler),
            "write it as module.function, e.g. \"app.handler\" for def handler() in app.py",
        ));
    }
    let runtime = Runtime::parse(&f.runtime).ok_or_else(|| {
        invalid(
            "function",
            "runtime",
            format!("unsupported runtime {:?}", f.runtime),
            "use one of python3.9, python3.10, python3.11, python3.12, python3.13, python3.14",
        )
    })?;

    // Sources.
    let root_rel = &raw.sources.root;
    let root = project_dir.join(root_rel);
    let root = root.canonicalize().map_err(|e| {
        invalid(
            "sources",
            "root",
            format!("sources root {root_rel:?} cannot be opened: {e}"),
            "point root at an existing directory, relative to lambda.toml",
        )
    })?;
    if !root.is_dir() {
        return Err(invalid(
            "sources",
            "root",
            format!("sources root {root_rel:?} is not a directory"),
            "point root at an existing directory, relative to lambda.toml",
        ));
    }
    let include = compile_globs(&raw.sources.include).map_err(|(g, m)| {
        invalid(
            "sources",
            "include",
            format!("include glob {g:?}: {m}"),
            GLOB_HINT,
        )
    })?;
    let exclude = compile_globs(&raw.sources.exclude).map_err(|(g, m)| {
        invalid(
            "sources",
            "exclude",
            format!("exclude glob {g:?}: {m}"),
            GLOB_HINT,
        )
    })?;

    // Config.
    compile_globs(&raw.config.files).map_err(|(g, m)| {
        invalid(
            "config",
            "files",
            format!("config glob {g:?}: {m}"),
            GLOB_HINT,
        )
    })?;

    // Output.
    let level = raw.output.level;
    if !(0..=12).contains(&level) {
        return Err(invalid(
            "output",
            "level",
            format!("compression level {level} is out of range"),
            "use 0 (store) to 12 (smallest, slowest); 7 is the default",
        ));
    }
    let out_rel = raw
        .output
        .path
        .clone()
        .unwrap_or_else(|| format!("dist/{}.zip", f.name));
    if out_rel.is_empty() || out_rel.ends_with('/') {
        return Err(invalid(
            "output",
            "path",
            format!("output path {out_rel:?} is not a file name"),
            "use a path ending in .zip, e.g. \"dist/orders.zip\"",
        ));
    }
    let out_path = normalize(&project_dir.join(&out_rel));
    let out_dir = out_path.parent().unwrap_or(Path::new("/")).to_path_buf();
    // The output directory is left out of the walk: it must not be the
    // sources root itself (that would leave out every source).
    if root == out_dir {
        return Err(invalid(
            "output",
            "path",
            format!(
                "output path {out_rel:?} is inside the sources: it would be written into the sources root {}",
                root.display()
            ),
            "write the zip to a directory of its own, e.g. \"dist/NAME.zip\" (lbuild leaves that directory out of the sources)",
        ));
    }
    if out_path.is_dir() {
        return Err(invalid(
            "output",
            "path",
            format!("output path {} is a directory", out_path.display()),
            "use a path ending in .zip, e.g. \"dist/orders.zip\"",
        ));
    }

    // Dependencies.
    let deps = match raw.dependencies {
        Some(d) => {
            let requirements = project_dir.join(&d.requirements);
            if !requirements.is_file() {
                return Err(invalid(
                    "dependencies",
                    "requirements",
                    format!("requirements file {:?} not found", d.requirements),
                    "create it, or remove the [dependencies] section if the function has none",
                ));
            }
            Some(DepsPlan {
                requirements,
                raw: d,
            })
        }
        None => None,
    };

    let cache_dir = match std::env::var_os("LBUILD_CACHE_DIR") {
        Some(d) if !d.is_empty() => std::env::current_dir()
            .map(|cwd| cwd.join(d))
            .unwrap_or_default(),
        _ => project_dir.join(".lbuild"),
    };

    Ok(Plan {
        manifest_path: project_dir.join(path.file_name().unwrap_or(MANIFEST_NAME.as_ref())),
        project_dir,
        name: f.name.clone(),
        handler: f.handler.clone(),
        runtime,
        architecture: f.architecture,
        sources: SourcesPlan {
            root,
            include,
            exclude,
            raw: raw.sources.clone(),
        },
        deps,
        config: ConfigPlan {
            patterns: raw.config.files.clone(),
        },
        output: OutputPlan {
            path: out_path,
            level: level as u32,
            mtime: raw.output.mtime,
        },
        cache_dir,
    })
}

const GLOB_HINT: &str =
    "globs are relative to their root, use '/' separators, and may not be absolute or contain '..'";

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Compiles globs so that `*` stops at `/` (gitignore-like), refusing any
/// glob that could reach outside its root.
pub fn compile_globs(globs: &[String]) -> Result<GlobSet, (String, String)> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        check_relative_glob(g).map_err(|m| (g.clone(), m))?;
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| (g.clone(), e.kind().to_string()))?;
        b.add(glob);
    }
    b.build().map_err(|e| (String::new(), e.to_string()))
}

/// A glob must stay inside its root: not absolute, no `..` segment.
pub fn check_relative_glob(g: &str) -> Result<(), String> {
    if g.is_empty() {
        return Err("empty glob".into());
    }
    if g.starts_with('/') || Path::new(g).is_absolute() {
        return Err("is absolute: it would reach outside the root".into());
    }
    if g.split('/').any(|seg| seg == "..") {
        return Err("contains '..': it would reach outside the root".into());
    }
    Ok(())
}

/// Lexically resolves `.` and `..` (the output file may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn runtime_glibc_follows_amazon_linux() {
        assert_eq!(Runtime::parse("python3.11").unwrap().glibc(), (2, 26));
        assert_eq!(Runtime::parse("python3.12").unwrap().glibc(), (2, 34));
        assert!(Runtime::parse("python3.8").is_none());
        assert!(Runtime::parse("python2.7").is_none());
    }

    #[test]
    fn globs_refuse_escaping_root() {
        assert!(check_relative_glob("../x").is_err());
        assert!(check_relative_glob("a/../../x").is_err());
        assert!(check_relative_glob("/etc/*").is_err());
        assert!(check_relative_glob("src/**/*.py").is_ok());
    }

    #[test]
    fn star_does_not_cross_directories() {
        let set = compile_globs(&["*.py".into()]).unwrap();
        assert!(set.is_match("app.py"));
        assert!(!set.is_match("pkg/app.py"));
    }
}
