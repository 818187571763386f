//! The raw types serde reads from `lambda.toml`, as written: no defaults
//! filled in where a position matters, every value an error may point at
//! kept with its span ([`Spanned`]), so positions are right for dotted keys
//! and inline tables too.
//!
//! The sections of one artifact (function, sources, dependencies, config,
//! output) are separate types so that [`super::validate::artifact`] takes
//! sections, not the whole file.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub function: Spanned<RawFunction>,
    pub sources: Option<Spanned<RawSources>>,
    pub dependencies: Option<Spanned<RawDependencies>>,
    pub config: Option<Spanned<RawConfig>>,
    pub output: Option<Spanned<RawOutput>>,
    pub cache: Option<Spanned<RawCache>>,
}

/// `[cache]`: the remote store shared by a fleet (top level, also in a
/// workspace).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    /// `s3://BUCKET/PREFIX`.
    pub remote: Option<Spanned<String>>,
    /// Public keys (`NAME:BASE64`) whose signed objects a build accepts.
    pub trusted_keys: Option<Spanned<Vec<String>>>,
    /// `signed` (default) or `bucket` (read unsigned objects too).
    pub trust: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    pub name: Spanned<String>,
    pub handler: Spanned<String>,
    /// Default `python3.12`.
    pub runtime: Option<Spanned<String>>,
    #[serde(default)]
    pub architecture: Architecture,
    /// Seconds, default 3 (Lambda's default).
    pub timeout: Option<Spanned<i64>>,
    /// MB, default 128.
    pub memory: Option<Spanned<i64>>,
    /// Environment variables the function sees.
    pub environment: Option<std::collections::BTreeMap<String, String>>,
    /// How `lbuild deploy` finds the function in AWS.
    pub deploy: Option<Spanned<RawDeploy>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeploy {
    /// The AWS function name, default the manifest's name.
    pub name: Option<String>,
    /// Bucket for zips over 50 MB.
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
}

/// A key's value, remembering whether the manifest wrote it: in a
/// workspace an artifact's `exclude = []` or `locked = false` overrides
/// the `[defaults]` value, where leaving the key out inherits it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Given<T> {
    pub value: T,
    pub given: bool,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|value| Given { value, given: true })
    }
}

impl<T> std::ops::Deref for Given<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> Given<T> {
    /// `own` where the artifact wrote the key, else the default.
    pub(crate) fn or_default_of(&self, default: &Given<T>) -> Given<T> {
        if self.given {
            self.clone()
        } else {
            default.clone()
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSources {
    /// Default `.`.
    pub root: Option<Spanned<String>>,
    /// Default `["**/*.py"]`.
    pub include: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub exclude: Given<Vec<Spanned<String>>>,
    /// Lets the root resolve outside the manifest's directory.
    #[serde(default)]
    pub allow_outside_project: Given<bool>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDependencies {
    /// Default `requirements.txt`.
    pub requirements: Option<Spanned<String>>,
    /// A lockfile instead of requirements: `uv.lock`, `poetry.lock`,
    /// `pylock.toml` or `pylock.NAME.toml` (the kind comes from the name).
    pub lock: Option<Spanned<String>>,
    /// No lock: `[project.dependencies]` of this pyproject.toml, resolved
    /// at build time (not pinned).
    pub pyproject: Option<Spanned<String>>,
    /// Dependency groups (uv) / Poetry groups to add to the lock's main set.
    #[serde(default)]
    pub groups: Given<Vec<Spanned<String>>>,
    /// Extras of the project to add.
    #[serde(default)]
    pub extras: Given<Vec<Spanned<String>>>,
    /// A lock out of date with its pyproject.toml is an error, not a warning.
    #[serde(default)]
    pub locked: Given<bool>,
    #[serde(default)]
    pub installer: InstallerChoice,
    /// Distributions to drop after install because the runtime provides them.
    #[serde(default)]
    pub exclude: Given<Vec<String>>,
    #[serde(default)]
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Given<Vec<String>>,
    #[serde(default)]
    pub find_links: Given<Vec<Spanned<String>>>,
    #[serde(default)]
    pub no_index: Given<bool>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub files: Given<Vec<Spanned<String>>>,
    /// Lets a glob's directory resolve outside the manifest's directory.
    #[serde(default)]
    pub allow_outside_project: Given<bool>,
    /// Default true: a glob that matches no file is an error; false makes
    /// it a warning.
    #[serde(default)]
    pub required: Option<bool>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    /// Default `dist/NAME.zip`.
    pub path: Option<Spanned<String>>,
    /// Default 6.
    pub level: Option<Spanned<i64>>,
    #[serde(default)]
    pub mtime: Option<MtimeMode>,
    /// What exceeding Lambda's unzipped-size quota does: "error" (default)
    /// or "warn".
    pub size_limit: Option<LimitMode>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitMode {
    #[default]
    Error,
    Warn,
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
