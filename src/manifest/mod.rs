//! `lambda.toml`: the raw types serde reads ([`raw`]), their validation
//! into a [`Plan`] that every stage receives ([`validate`]), and the glob
//! rules ([`globs`]).
//!
//! This module owns parsing, error positions (file:line:column, from the
//! spans serde keeps), the environment lbuild reads (once, here), and the
//! checks that need nothing but the manifest and the file system layout:
//! globs that escape their root, a root outside the project, an output
//! that is one of the build's inputs. It does not read source contents;
//! stages do.

pub(crate) mod globs;
pub(crate) mod raw;
pub(crate) mod validate;
pub(crate) mod workspace;

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

pub(crate) use globs::Globs;
pub(crate) use globs::Pruner;
pub use raw::Architecture;
pub(crate) use raw::{InstallerChoice, LimitMode, MtimeMode, RawManifest};
pub(crate) use workspace::{Workspace, load_workspace};

/// The file name lbuild looks for, like cargo looks for `Cargo.toml`.
pub(crate) const MANIFEST_NAME: &str = "lambda.toml";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no {MANIFEST_NAME} found in {dir} or any parent directory")]
    NotFound { dir: PathBuf },
    /// Read through `fs_err`: the message names the path.
    #[error(transparent)]
    Read(std::io::Error),
    /// Anything wrong at a position of the manifest: syntax, types, values.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
}

impl ManifestError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ManifestError::NotFound { .. } => {
                Some("run `lbuild init` to create one, or pass --manifest PATH".into())
            }
            ManifestError::Read(_) => None,
            ManifestError::At { hint, .. } => hint.clone(),
        }
    }
}

/// A 1-based line and column in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn of(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }
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
    /// Absolute, canonical; inside the project unless
    /// `allow_outside_project` says otherwise.
    pub root: PathBuf,
    /// The root as written (the key does not change when the project moves).
    pub root_written: String,
    pub include: Globs,
    pub exclude: Globs,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// The directories `exclude` leaves out whole, or `include` cannot
    /// reach, decided from their text.
    pub prune: Pruner,
}

impl SourcesPlan {
    /// Whether the walk leaves out directory `rel` ('/'-separated,
    /// relative to the root) and everything below it because the exclude
    /// globs cover it entirely or no include glob can match below it. The walk's default exclusions
    /// (`exclusions::PRUNED_DIRS`) come on top. Shared by the build's walk and
    /// the watcher.
    pub fn prunes_dir(&self, rel: &str) -> bool {
        self.prune.prunes(rel)
    }

    /// Whether file `rel` (relative to the root) is selected by the globs:
    /// included, not excluded, and in no pruned directory. The walk's
    /// default exclusions (`exclusions::excluded_by_default`) come on top.
    pub fn selects(&self, rel: &str) -> bool {
        self.include.is_match(rel)
            && !self.exclude.is_match(rel)
            && !rel
                .match_indices('/')
                .any(|(i, _)| self.prunes_dir(&rel[..i]))
    }
}

/// A `find_links` entry: a URL passed as is, or a local directory
/// (resolved against the manifest's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindLinks {
    Url(String),
    Dir(PathBuf),
}

impl FindLinks {
    /// What the installer is given.
    pub fn as_arg(&self) -> String {
        match self {
            FindLinks::Url(u) => u.clone(),
            FindLinks::Dir(d) => d.to_string_lossy().into_owned(),
        }
    }
    pub fn dir(&self) -> Option<&Path> {
        match self {
            FindLinks::Url(_) => None,
            FindLinks::Dir(d) => Some(d),
        }
    }
}

/// Which lockfile format `[dependencies] lock` names (from its file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Uv,
    Poetry,
    Pylock,
    /// `pyproject = "pyproject.toml"`: not a lock; its dependency lists,
    /// resolved at build time.
    Pyproject,
}

impl LockKind {
    /// `uv.lock`, `poetry.lock`, `pylock.toml`, `pylock.NAME.toml`.
    pub fn from_file_name(name: &str) -> Option<LockKind> {
        match name {
            "uv.lock" => Some(LockKind::Uv),
            "poetry.lock" => Some(LockKind::Poetry),
            "pylock.toml" => Some(LockKind::Pylock),
            n if n.starts_with("pylock.") && n.ends_with(".toml") && n.len() > 12 => {
                Some(LockKind::Pylock)
            }
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Uv => "uv.lock",
            LockKind::Poetry => "poetry.lock",
            LockKind::Pylock => "pylock.toml",
            LockKind::Pyproject => "pyproject.toml",
        }
    }
}

/// `[dependencies] lock = ...`: the packages come from a lockfile (or,
/// with `pyproject = ...`, from pyproject.toml's dependency lists).
#[derive(Debug, Clone)]
pub struct LockPlan {
    /// Absolute path of the lockfile (also [`DepsPlan::requirements`]).
    pub path: PathBuf,
    pub kind: LockKind,
    /// As written; compared by their PEP 503/685 normal form.
    pub groups: Vec<String>,
    pub extras: Vec<String>,
    /// `locked = true`: a lock out of date with pyproject.toml is an error.
    pub locked: bool,
}

#[derive(Debug, Clone)]
pub struct DepsPlan {
    /// Absolute path of requirements.txt, or of the lockfile when `lock`
    /// is set (the file the packages come from).
    pub requirements: PathBuf,
    /// The lockfile, when the packages come from one.
    pub lock: Option<LockPlan>,
    pub installer: InstallerChoice,
    /// Distributions to drop after install (as written).
    pub exclude: Vec<String>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<FindLinks>,
    pub no_index: bool,
}

/// One `[config] files` glob, compiled.
#[derive(Debug, Clone)]
pub struct ConfigGlob {
    /// As written, relative to the project directory.
    pub pattern: String,
    pub set: Globs,
    /// Its literal leading directories: where a walk for it starts.
    pub base: String,
    /// No wildcard at all: a file that must exist.
    pub literal: bool,
    /// Where it is written in the manifest.
    pub at: Position,
}

#[derive(Debug, Clone)]
pub struct ConfigPlan {
    /// Globs relative to the project directory, as written.
    pub patterns: Vec<String>,
    /// Each glob compiled, in the order written.
    pub globs: Vec<ConfigGlob>,
    /// A glob matching no file is an error (`[config] required`, default
    /// true), else a warning.
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// Absolute.
    pub path: PathBuf,
    pub level: u32,
    pub mtime: Option<MtimeMode>,
    /// What going over Lambda's unzipped-size quota does.
    pub size_limit: LimitMode,
    /// Where errors about the output point: `[output] path`, or the
    /// function name it defaults from.
    pub at: Position,
}

/// The environment lbuild reads, read once at load.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `LBUILD_CACHE_DIR`, when set and not empty.
    pub cache_dir: Option<OsString>,
    /// `SOURCE_DATE_EPOCH`, as set (parsed where it is used).
    pub source_date_epoch: Option<String>,
    /// The machine store shared by every project: `LBUILD_STORE`, else
    /// `$XDG_CACHE_HOME/lbuild`, else `~/.cache/lbuild` (None when none is
    /// set: then each project keeps its trees in its own cache directory).
    pub store_dir: Option<PathBuf>,
    /// The remote store: `--remote-cache`, else `LBUILD_REMOTE_CACHE`.
    pub remote_cache: Option<String>,
    /// `--remote-cache-mode`, else `LBUILD_REMOTE_CACHE_MODE`.
    pub remote_cache_mode: Option<String>,
    /// `CI` is set (and not "false"/"0"): the remote store's default mode
    /// is then read-write.
    pub ci: bool,
    /// `LBUILD_TRUSTED_KEYS` (comma-separated public keys).
    pub trusted_keys: Option<String>,
    /// `LBUILD_SIGNING_KEY`: a file holding the secret key, or the key.
    pub signing_key: Option<String>,
    /// `LBUILD_REMOTE_TRUST` (`signed` or `bucket`).
    pub remote_trust: Option<String>,
    /// `LBUILD_REMOTE_DEADLINE` (seconds the remote's reads may take in
    /// one build).
    pub remote_deadline: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Env {
            cache_dir: std::env::var_os("LBUILD_CACHE_DIR").filter(|v| !v.is_empty()),
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            store_dir: store_dir_from_env(),
            remote_cache: std::env::var("LBUILD_REMOTE_CACHE")
                .ok()
                .filter(|v| !v.is_empty()),
            remote_cache_mode: std::env::var("LBUILD_REMOTE_CACHE_MODE")
                .ok()
                .filter(|v| !v.is_empty()),
            ci: std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0"),
            trusted_keys: var("LBUILD_TRUSTED_KEYS"),
            signing_key: var("LBUILD_SIGNING_KEY"),
            remote_trust: var("LBUILD_REMOTE_TRUST"),
            remote_deadline: var("LBUILD_REMOTE_DEADLINE"),
        }
    }
}

/// What an artifact is: a function (with a handler and the layers it
/// uses) or a layer (whose files all sit under `prefix/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactKind {
    Function { layers: Vec<String> },
    Layer { prefix: String },
}

impl ArtifactKind {
    pub fn label(&self) -> &'static str {
        match self {
            ArtifactKind::Function { .. } => "function",
            ArtifactKind::Layer { .. } => "layer",
        }
    }
}

/// How Lambda runs a function: what `lbuild invoke` and `lbuild deploy`
/// need beyond the zip (none of it changes the zip's bytes).
#[derive(Debug, Clone)]
pub struct LambdaSettings {
    pub timeout_s: u32,
    pub memory_mb: u32,
    pub environment: Vec<(String, String)>,
    /// The function's name in AWS (before `--name-prefix/--name-suffix`).
    pub deploy_name: String,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    /// `local_layers`: layer version ARNs the function names, each with a
    /// local directory or zip of the same content (for `lbuild invoke`).
    pub local_layers: Vec<(String, PathBuf)>,
}

/// The validated manifest for one artifact: paths resolved, globs
/// compiled, environment read. Stages receive this and never re-read the
/// raw TOML or the environment variables it covers.
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
    pub env: Env,
    pub kind: ArtifactKind,
    pub lambda: LambdaSettings,
    /// The zips of every artifact in the same workspace (its own among
    /// them): never sources. One set shared by all the workspace's plans,
    /// so that 80 functions do not hold 80 copies of 80 paths.
    pub workspace_outputs: std::sync::Arc<std::collections::HashSet<PathBuf>>,
    /// This artifact's reuse store in the cache directory (`store.zip`, or
    /// `store-KIND-NAME.zip` in a workspace).
    pub store_file: String,
    /// `[cache] remote` in the manifest (the environment and the command
    /// line take precedence, see `BuildContext::for_plan`).
    pub remote_cache: Option<String>,
    /// `[cache] trusted_keys` and `trust` (the environment's join or
    /// override them, see `BuildContext::for_plan`).
    pub remote_trust: RemoteTrust,
}

/// What `[cache]` says about trusting the remote store's objects.
#[derive(Debug, Clone, Default)]
pub struct RemoteTrust {
    pub trusted_keys: Vec<String>,
    pub mode: Option<crate::remote::trust::TrustMode>,
}

/// `LBUILD_STORE`, else `$XDG_CACHE_HOME/lbuild`, else `$HOME/.cache/lbuild`.
pub(crate) fn store_dir_from_env() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("LBUILD_STORE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Some(PathBuf::from(d).join("lbuild"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("lbuild"))
}

impl Plan {
    /// The handler's module as archive paths it may live at:
    /// `app.handler` -> `app.py` or `app/__init__.py`.
    pub fn handler_module_paths(&self) -> [String; 2] {
        let (module, _) = self.handler.rsplit_once('.').unwrap_or((&self.handler, ""));
        let base = module.replace('.', "/");
        [format!("{base}.py"), format!("{base}/__init__.py")]
    }

    pub fn is_layer(&self) -> bool {
        matches!(self.kind, ArtifactKind::Layer { .. })
    }

    /// The archive directory every entry goes under (`python/` for a
    /// layer), empty for a function.
    pub fn archive_prefix(&self) -> &str {
        match &self.kind {
            ArtifactKind::Layer { prefix } => prefix,
            ArtifactKind::Function { .. } => "",
        }
    }

    pub fn handler_function(&self) -> &str {
        self.handler.rsplit_once('.').map(|(_, f)| f).unwrap_or("")
    }

    /// An error about the output path, pointing at it in the manifest.
    pub fn output_error(&self, message: String, hint: &str) -> ManifestError {
        ManifestError::At {
            path: self.manifest_path.clone(),
            line: self.output.at.line,
            column: self.output.at.column,
            message,
            hint: Some(hint.to_string()),
        }
    }
}

/// Walks up from `start` looking for `lambda.toml`.
pub(crate) fn find_manifest(start: &Path) -> Result<PathBuf, ManifestError> {
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

/// Reads and validates a single-function manifest, with the process's
/// environment (tests; the binary reads any form with [`load_workspace`]).
#[cfg(test)]
pub(crate) fn load(path: &Path) -> Result<Plan, ManifestError> {
    load_with_env(path, Env::from_process())
}

/// Reads and validates a single-function manifest with the environment given.
#[cfg(test)]
pub(crate) fn load_with_env(path: &Path, env: Env) -> Result<Plan, ManifestError> {
    let text = fs_err::read_to_string(path).map_err(ManifestError::Read)?;
    let raw = parse(path, &text)?;
    validate::manifest(path, &text, raw, env)
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<RawManifest, ManifestError> {
    toml::from_str::<RawManifest>(text).map_err(|e| {
        let at = Position::of(text, e.span().map_or(0, |s| s.start));
        let message = e.message().trim().to_string();
        ManifestError::At {
            path: path.to_path_buf(),
            line: at.line,
            column: at.column,
            hint: Some(parse_hint(&message).into()),
            message,
        }
    })
}

fn parse_hint(message: &str) -> &'static str {
    if message.contains("unknown field") {
        "remove or rename the key; every key is documented in lambda.toml.example"
    } else if message.contains("missing field") {
        "add the key; `lbuild init` writes a complete manifest"
    } else if message.contains("unknown variant") {
        "use one of the values listed above"
    } else if message.contains("invalid type") {
        "give the value the type shown in lambda.toml.example"
    } else {
        "fix the TOML syntax at that position (https://toml.io); lambda.toml.example shows every key"
    }
}

/// Lexically resolves `.` and `..` (the output file may not exist yet).
pub(crate) fn normalize(p: &Path) -> PathBuf {
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

/// `path` relative to `base`, lexically, with `..` where needed
/// (`/p/wheels` from `/p` is `wheels`; `/w` from `/p` is `../w`).
pub(crate) fn relative_path(base: &Path, path: &Path) -> PathBuf {
    let base: Vec<_> = base.components().collect();
    let path: Vec<_> = path.components().collect();
    let common = base.iter().zip(&path).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &path[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_from_one() {
        assert_eq!(Position::of("a\nbc\n", 3), Position { line: 2, column: 2 });
        assert_eq!(Position::of("abc", 0), Position { line: 1, column: 1 });
    }

    #[test]
    fn runtime_glibc_follows_amazon_linux() {
        assert_eq!(Runtime::parse("python3.11").unwrap().glibc(), (2, 26));
        assert_eq!(Runtime::parse("python3.12").unwrap().glibc(), (2, 34));
        assert!(Runtime::parse("python3.8").is_none());
        assert!(Runtime::parse("python2.7").is_none());
    }

    #[test]
    fn relative_paths_go_up_when_needed() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(relative_path(&p("/p"), &p("/p/wheels")), p("wheels"));
        assert_eq!(relative_path(&p("/p/q"), &p("/p/w")), p("../w"));
        assert_eq!(relative_path(&p("/p"), &p("/p")), p(""));
    }
}
