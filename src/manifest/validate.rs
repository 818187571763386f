//! Validation, one function per section, into a [`Plan`].
//!
//! [`artifact`] turns the sections of one artifact (function, sources,
//! dependencies, config, output) into its plan; it takes the sections, not
//! the whole file, so that a manifest holding several artifacts can call it
//! once per artifact. Every error points at the value at fault through the
//! span serde kept ([`Spanned`]), or at its section when the key is absent.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::globs::{Globs, Interner, is_literal, literal_prefix};
use super::raw::{RawConfig, RawDependencies, RawFunction, RawManifest, RawOutput, RawSources};
use super::{
    ConfigGlob, ConfigPlan, DepsPlan, Env, FindLinks, LockKind, LockPlan, MANIFEST_NAME,
    ManifestError, OutputPlan, Plan, Position, Runtime, SourcesPlan, normalize,
};
use crate::exclusions;

const GLOB_HINT: &str =
    "globs are relative to their root, use '/' separators, and may not be absolute or contain '..'";

/// What validating any section needs: where the manifest is, its text
/// (for positions), and the environment.
pub(crate) struct Ctx<'a> {
    /// As given (errors name the manifest this way).
    path: &'a Path,
    text: &'a str,
    /// The manifest's directory, canonical.
    pub project_dir: PathBuf,
    /// The manifest, absolute.
    pub manifest_path: PathBuf,
    pub env: Env,
    /// Paths canonicalized during this load: a workspace's artifacts share
    /// a sources root and an output directory, resolved once, not once per
    /// artifact. Lives as long as the load, so never older than it.
    canonical:
        std::cell::RefCell<std::collections::HashMap<PathBuf, Result<PathBuf, std::io::Error>>>,
    /// Globs compiled during this load: a workspace's artifacts repeat
    /// theirs, compiled once (each error still placed by the artifact).
    globs: Interner,
    /// Where each line of `text` starts: every artifact places its output
    /// (`Position`), and counting lines from the top each time is
    /// quadratic in a workspace's manifest.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str, env: Env) -> Result<Ctx<'a>, ManifestError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let project_dir = fs_err::canonicalize(dir).map_err(ManifestError::Read)?;
        let manifest_path = project_dir.join(path.file_name().unwrap_or(MANIFEST_NAME.as_ref()));
        Ok(Ctx {
            path,
            text,
            project_dir,
            manifest_path,
            env,
            canonical: Default::default(),
            globs: Interner::default(),
            line_starts: Default::default(),
        })
    }

    /// `path.canonicalize()`, asked of the filesystem once per load.
    pub(crate) fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf> {
        let mut memo = self.canonical.borrow_mut();
        let found = memo
            .entry(path.to_path_buf())
            .or_insert_with(|| path.canonicalize());
        match found {
            Ok(p) => Ok(p.clone()),
            Err(e) => Err(match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(e.kind(), e.to_string()),
            }),
        }
    }

    /// `path` with its directory's symlinks resolved, when the directory
    /// exists (asked once per load).
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => self
                .canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf()),
            _ => path.to_path_buf(),
        }
    }

    fn position(&self, span: &Range<usize>) -> Position {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let offset = span.start.min(self.text.len());
        // The last line starting at or before `offset`.
        let line = starts.partition_point(|&s| s <= offset);
        let start = starts[line - 1];
        // The same as `Position::of` (columns in characters), for the one
        // line only.
        let column = self.text.get(start..offset).map_or_else(
            || Position::of(self.text, offset).column,
            |l| l.chars().count() + 1,
        );
        Position { line, column }
    }

    /// The manifest's text.
    pub(crate) fn text(&self) -> &str {
        self.text
    }

    /// An error at `span` of the manifest.
    pub(crate) fn at(&self, span: Range<usize>, message: String, hint: &str) -> ManifestError {
        let p = self.position(&span);
        ManifestError::At {
            path: self.path.to_path_buf(),
            line: p.line,
            column: p.column,
            message,
            hint: Some(hint.to_string()),
        }
    }

    /// Where the cache lives: `LBUILD_CACHE_DIR` (relative to the project
    /// directory), else `.lbuild` beside the manifest.
    fn cache_dir(&self) -> PathBuf {
        match &self.env.cache_dir {
            Some(d) => normalize(&self.project_dir.join(d)),
            None => self.project_dir.join(".lbuild"),
        }
    }
}

/// The sections that make one artifact.
#[derive(Clone, Copy)]
pub(crate) struct Sections<'a> {
    pub function: &'a Spanned<RawFunction>,
    pub sources: Option<&'a Spanned<RawSources>>,
    pub dependencies: Option<&'a Spanned<RawDependencies>>,
    pub config: Option<&'a Spanned<RawConfig>>,
    pub output: Option<&'a Spanned<RawOutput>>,
}

/// Validates a single-function manifest.
pub(crate) fn manifest(
    path: &Path,
    text: &str,
    raw: RawManifest,
    env: Env,
) -> Result<Plan, ManifestError> {
    let ctx = Ctx::new(path, text, env)?;
    let mut plan = artifact(
        &ctx,
        Sections {
            function: &raw.function,
            sources: raw.sources.as_ref(),
            dependencies: raw.dependencies.as_ref(),
            config: raw.config.as_ref(),
            output: raw.output.as_ref(),
        },
    )?;
    plan.remote_cache = cache(&ctx, raw.cache.as_ref())?;
    plan.remote_trust = cache_trust(&ctx, raw.cache.as_ref())?;
    Ok(plan)
}

/// `[cache] remote`: an `s3://BUCKET[/PREFIX]` URL.
pub(crate) fn cache(
    ctx: &Ctx,
    raw: Option<&Spanned<super::raw::RawCache>>,
) -> Result<Option<String>, ManifestError> {
    let Some(remote) = raw.and_then(|c| c.get_ref().remote.as_ref()) else {
        return Ok(None);
    };
    let url = remote.get_ref();
    let bucket = url
        .strip_prefix("s3://")
        .map(|r| r.split('/').next().unwrap_or(""));
    if bucket.is_none_or(str::is_empty) {
        return Err(ctx.at(
            remote.span(),
            format!("remote {url:?} is not an s3://BUCKET/PREFIX URL"),
            "write e.g. remote = \"s3://my-team-lbuild-cache/lbuild\" (the endpoint comes from AWS_ENDPOINT_URL)",
        ));
    }
    Ok(Some(url.clone()))
}

/// `[cache] trusted_keys` and `[cache] trust`, each key parsed here so a
/// bad one is an error at its position.
pub(crate) fn cache_trust(
    ctx: &Ctx,
    raw: Option<&Spanned<super::raw::RawCache>>,
) -> Result<super::RemoteTrust, ManifestError> {
    let mut out = super::RemoteTrust::default();
    let Some(c) = raw.map(Spanned::get_ref) else {
        return Ok(out);
    };
    if let Some(keys) = &c.trusted_keys {
        for k in keys.get_ref() {
            if let Err(why) = crate::remote::trust::PublicKey::parse(k) {
                return Err(ctx.at(
                    keys.span(),
                    format!("trusted_keys: {why}"),
                    "list keys as `lbuild cache keygen` prints them, e.g. trusted_keys = [\"ci-2026:BASE64...\"]",
                ));
            }
        }
        out.trusted_keys = keys.get_ref().clone();
    }
    if let Some(t) = &c.trust {
        out.mode = Some(crate::remote::trust::TrustMode::parse(t.get_ref()).ok_or_else(|| {
            ctx.at(
                t.span(),
                format!("trust {:?} is not \"signed\" or \"bucket\"", t.get_ref()),
                "use trust = \"signed\" (the default: only objects signed by trusted_keys) or \"bucket\" (whoever can write the bucket decides what the zips contain)",
            )
        })?);
    }
    Ok(out)
}

/// Validates one artifact's sections into its plan.
pub(crate) fn artifact(ctx: &Ctx, s: Sections) -> Result<Plan, ManifestError> {
    let f = function(ctx, s.function)?;
    let sources = sources(ctx, s.sources)?;
    let config = config(ctx, s.config)?;
    let deps = s.dependencies.map(|d| dependencies(ctx, d)).transpose()?;
    let output = output(ctx, s.output, &f, &sources, &config, deps.as_ref())?;
    let lambda = f.lambda.clone();
    Ok(Plan {
        manifest_path: ctx.manifest_path.clone(),
        project_dir: ctx.project_dir.clone(),
        name: f.name,
        handler: f.handler,
        runtime: f.runtime,
        architecture: f.architecture,
        sources,
        deps,
        config,
        output,
        cache_dir: ctx.cache_dir(),
        env: ctx.env.clone(),
        kind: super::ArtifactKind::Function { layers: Vec::new() },
        lambda,
        workspace_outputs: Default::default(),
        store_file: crate::cache::STORE_FILE.to_string(),
        remote_cache: None,
        remote_trust: super::RemoteTrust::default(),
    })
}

/// `[function]`, validated.
pub(crate) struct Function {
    pub name: String,
    /// Where the name is written (the default output path comes from it).
    pub name_span: Range<usize>,
    pub handler: String,
    pub runtime: Runtime,
    pub architecture: super::Architecture,
    pub lambda: super::LambdaSettings,
}

pub(crate) fn function(ctx: &Ctx, raw: &Spanned<RawFunction>) -> Result<Function, ManifestError> {
    let f = raw.get_ref();
    let name = f.name.get_ref();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ctx.at(
            f.name.span(),
            format!("invalid function name {name:?}"),
            "use letters, digits, '-' and '_' (AWS Lambda's rule)",
        ));
    }
    let handler = f.handler.get_ref();
    let handler_ok = handler.rsplit_once('.').is_some_and(|(m, func)| {
        !func.is_empty() && m.split('.').all(is_identifier) && is_identifier(func)
    });
    if !handler_ok {
        return Err(ctx.at(
            f.handler.span(),
            format!("invalid handler {handler:?}"),
            "write it as module.function, e.g. \"app.handler\" for def handler() in app.py",
        ));
    }
    let runtime = match &f.runtime {
        None => Runtime { minor: 12 },
        Some(r) => Runtime::parse(r.get_ref()).ok_or_else(|| {
            // A runtime AWS retired says so, with its dates (from the
            // schedule, not the clock: the message is the same every day).
            let retired = crate::runtimes::schedule(r.get_ref()).and_then(|s| {
                let deprecated = s.deprecated?;
                Some(match s.block_update {
                    Some(blocked) => format!(
                        "runtime {:?} is deprecated by AWS (since {deprecated}; updating functions on it is blocked from {blocked})",
                        r.get_ref()
                    ),
                    None => format!("runtime {:?} is deprecated by AWS (since {deprecated})", r.get_ref()),
                })
            });
            ctx.at(
                r.span(),
                retired.unwrap_or_else(|| format!("unsupported runtime {:?}", r.get_ref())),
                "use one of python3.9, python3.10, python3.11, python3.12, python3.13, python3.14",
            )
        })?,
    };
    let positive = |v: &Option<Spanned<i64>>,
                    default: u32,
                    range: std::ops::RangeInclusive<i64>,
                    what: &str| {
        match v {
            None => Ok(default),
            Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref() as u32),
            Some(v) => Err(ctx.at(
                v.span(),
                format!("{what} {} is out of range", v.get_ref()),
                &format!("use {} to {} (Lambda's limits)", range.start(), range.end()),
            )),
        }
    };
    let deploy = f
        .deploy
        .as_ref()
        .map(|d| d.get_ref().clone())
        .unwrap_or_default();
    let lambda = super::LambdaSettings {
        timeout_s: positive(&f.timeout, 3, 1..=900, "timeout")?,
        memory_mb: positive(&f.memory, 128, 128..=10240, "memory")?,
        environment: f
            .environment
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        deploy_name: deploy.name.unwrap_or_else(|| name.clone()),
        s3_bucket: deploy.s3_bucket,
        s3_prefix: deploy.s3_prefix,
        local_layers: Vec::new(),
    };
    Ok(Function {
        lambda,
        name: name.clone(),
        name_span: f.name.span(),
        handler: handler.clone(),
        runtime,
        architecture: f.architecture,
    })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// The error for the glob at index `i` of `globs`, where this artifact
/// writes it.
fn glob_error(
    ctx: &Ctx,
    globs: &[Spanned<String>],
    what: &str,
    i: usize,
    m: &str,
) -> ManifestError {
    ctx.at(
        globs[i].span(),
        format!("{what} glob {:?}: {m}", globs[i].get_ref()),
        GLOB_HINT,
    )
}

/// The globs as written.
fn texts(globs: &[Spanned<String>]) -> Vec<String> {
    globs.iter().map(|g| g.get_ref().clone()).collect()
}

/// Compiles spanned globs (each distinct glob once per load); an error
/// points at the glob at fault, where this artifact writes it.
fn compile_spanned(
    ctx: &Ctx,
    globs: &[Spanned<String>],
    what: &str,
) -> Result<(Globs, Vec<String>), ManifestError> {
    let patterns = texts(globs);
    let compiled = ctx
        .globs
        .globs(patterns.iter().map(String::as_str))
        .map_err(|(i, m)| glob_error(ctx, globs, what, i, &m))?;
    Ok((compiled, patterns))
}

const OUTSIDE_HINT: &str = "keep it inside the directory of lambda.toml (a cloned repository must not be able to package your home directory); to package files from outside the project on purpose, set allow_outside_project = true in this section";

pub(crate) fn sources(
    ctx: &Ctx,
    raw: Option<&Spanned<RawSources>>,
) -> Result<SourcesPlan, ManifestError> {
    let default = RawSources::default();
    let (s, section) = match raw {
        Some(r) => (r.get_ref(), r.span()),
        None => (&default, 0..0),
    };
    let (root_written, root_span) = match &s.root {
        Some(r) => (r.get_ref().clone(), r.span()),
        None => (".".to_string(), section.clone()),
    };
    let root_hint = "point root at an existing directory, relative to lambda.toml";
    let root = ctx.project_dir.join(&root_written);
    let root = ctx.canonicalize(&root).map_err(|e| {
        ctx.at(
            root_span.clone(),
            format!("sources root {root_written:?} cannot be opened: {e}"),
            root_hint,
        )
    })?;
    if !root.is_dir() {
        return Err(ctx.at(
            root_span,
            format!("sources root {root_written:?} is not a directory"),
            root_hint,
        ));
    }
    if !root.starts_with(&ctx.project_dir) && !*s.allow_outside_project {
        return Err(ctx.at(
            root_span,
            format!(
                "sources root {root_written:?} resolves to {}, outside the project {}",
                root.display(),
                ctx.project_dir.display()
            ),
            OUTSIDE_HINT,
        ));
    }
    let default_include = [Spanned::new(section.clone(), "**/*.py".to_string())];
    let include = s.include.as_deref().unwrap_or(&default_include);
    let (include, include_patterns) = compile_spanned(ctx, include, "include")?;
    let (exclude, exclude_patterns) = compile_spanned(ctx, &s.exclude, "exclude")?;
    let prune = ctx
        .globs
        .pruner(&include_patterns, &exclude_patterns)
        .map_err(|(g, m)| {
            let span = s
                .exclude
                .iter()
                .find(|e| *e.get_ref() == g)
                .map_or(section.clone(), |e| e.span());
            ctx.at(span, format!("exclude glob {g:?}: {m}"), GLOB_HINT)
        })?;
    Ok(SourcesPlan {
        root,
        root_written,
        include,
        exclude,
        include_patterns,
        exclude_patterns,
        prune,
    })
}

pub(crate) fn config(
    ctx: &Ctx,
    raw: Option<&Spanned<RawConfig>>,
) -> Result<ConfigPlan, ManifestError> {
    let default = RawConfig::default();
    let c = raw.map_or(&default, |r| r.get_ref());
    // Every glob checked first, the first at fault reported.
    let (_, patterns) = compile_spanned(ctx, &c.files, "config")?;
    let mut globs = Vec::new();
    for (g, pattern) in c.files.iter().zip(&patterns) {
        let base = literal_prefix(pattern);
        // The walk starts at the base: it must not lead out of the project.
        if let Ok(resolved) = ctx.project_dir.join(&base).canonicalize()
            && !resolved.starts_with(&ctx.project_dir)
            && !*c.allow_outside_project
        {
            return Err(ctx.at(
                g.span(),
                format!(
                    "config glob {pattern:?}: directory {base:?} resolves to {}, outside the project {}",
                    resolved.display(),
                    ctx.project_dir.display()
                ),
                OUTSIDE_HINT,
            ));
        }
        globs.push(ConfigGlob {
            pattern: pattern.clone(),
            set: ctx.globs.globs([pattern.as_str()]).map_err(|(_, m)| {
                ctx.at(g.span(), format!("config glob {pattern:?}: {m}"), GLOB_HINT)
            })?,
            base,
            literal: is_literal(pattern),
            at: ctx.position(&g.span()),
        });
    }
    Ok(ConfigPlan {
        patterns,
        globs,
        required: c.required.unwrap_or(true),
    })
}

pub(crate) fn dependencies(
    ctx: &Ctx,
    raw: &Spanned<RawDependencies>,
) -> Result<DepsPlan, ManifestError> {
    let d = raw.get_ref();
    let lock = lock(ctx, raw)?;
    let (written, span) = match &d.requirements {
        Some(r) => (r.get_ref().clone(), r.span()),
        None => ("requirements.txt".to_string(), raw.span()),
    };
    let requirements = match &lock {
        Some(l) => l.path.clone(),
        None => ctx.project_dir.join(&written),
    };
    if lock.is_none() && !requirements.is_file() {
        return Err(ctx.at(
            span,
            format!("requirements file {written:?} not found"),
            "create it, or remove the [dependencies] section if the function has none",
        ));
    }
    let find_links = d
        .find_links
        .iter()
        .map(|l| {
            let l = l.get_ref();
            if l.contains("://") {
                FindLinks::Url(l.clone())
            } else {
                FindLinks::Dir(normalize(&ctx.project_dir.join(l)))
            }
        })
        .collect();
    Ok(DepsPlan {
        requirements,
        lock,
        installer: d.installer,
        exclude: d.exclude.to_vec(),
        index_url: d.index_url.clone(),
        extra_index_urls: d.extra_index_urls.to_vec(),
        find_links,
        no_index: *d.no_index,
    })
}

/// `lock`, `groups`, `extras`, `locked`: the lockfile and what to take
/// from it; `lock` and `requirements` exclude each other.
fn lock(ctx: &Ctx, raw: &Spanned<RawDependencies>) -> Result<Option<LockPlan>, ManifestError> {
    let d = raw.get_ref();
    if let Some(py) = &d.pyproject {
        return pyproject(ctx, d, py).map(Some);
    }
    let Some(l) = &d.lock else {
        if let Some(g) = d.groups.first().or(d.extras.first()) {
            return Err(ctx.at(
                g.span(),
                "groups and extras are read from a lockfile, and [dependencies] names none".into(),
                "add lock = \"uv.lock\" (or poetry.lock, pylock.toml, or pyproject = \"pyproject.toml\"), or remove groups / extras",
            ));
        }
        return Ok(None);
    };
    if let Some(r) = &d.requirements {
        return Err(ctx.at(
            r.span(),
            format!(
                "[dependencies] sets both requirements ({:?}) and lock ({:?}) (at line {})",
                r.get_ref(),
                l.get_ref(),
                ctx.position(&l.span()).line
            ),
            "keep one: the packages come either from a requirements file or from a lockfile",
        ));
    }
    let written = l.get_ref();
    let path = normalize(&ctx.project_dir.join(written));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(kind) = LockKind::from_file_name(&file_name) else {
        return Err(ctx.at(
            l.span(),
            format!("lock {written:?} is not a lockfile lbuild reads (its kind comes from the file name)"),
            "name a uv.lock, poetry.lock, pylock.toml or pylock.NAME.toml file",
        ));
    };
    if !path.is_file() {
        return Err(ctx.at(
            l.span(),
            format!("lockfile {written:?} not found"),
            match kind {
                LockKind::Uv => "create it with `uv lock`",
                LockKind::Poetry => "create it with `poetry lock`",
                LockKind::Pylock => {
                    "create it with `uv export --format pylock.toml -o pylock.toml` or `pip lock`"
                }
                LockKind::Pyproject => "name an existing pyproject.toml",
            },
        ));
    }
    if kind == LockKind::Pylock
        && let Some(g) = d.groups.first().or(d.extras.first())
    {
        return Err(ctx.at(
            g.span(),
            "a pylock.toml holds the groups and extras chosen when it was written".into(),
            "choose them when exporting (`uv export --format pylock.toml --group NAME --extra NAME`) and remove groups / extras here",
        ));
    }
    Ok(Some(LockPlan {
        path,
        kind,
        groups: d.groups.iter().map(|g| g.get_ref().clone()).collect(),
        extras: d.extras.iter().map(|g| g.get_ref().clone()).collect(),
        locked: *d.locked,
    }))
}

/// `pyproject = "pyproject.toml"`: the project's dependency lists, with
/// the groups and extras named, resolved at build time; exclusive with
/// `requirements` and `lock`.
fn pyproject(
    ctx: &Ctx,
    d: &RawDependencies,
    py: &Spanned<String>,
) -> Result<LockPlan, ManifestError> {
    let other = d
        .requirements
        .as_ref()
        .map(|r| ("requirements", r))
        .or(d.lock.as_ref().map(|l| ("lock", l)));
    if let Some((key, r)) = other {
        return Err(ctx.at(
            r.span(),
            format!(
                "[dependencies] sets both {key} ({:?}) and pyproject ({:?}) (at line {})",
                r.get_ref(),
                py.get_ref(),
                ctx.position(&py.span()).line
            ),
            "keep one: the packages come from a requirements file, a lockfile, or pyproject.toml",
        ));
    }
    let written = py.get_ref();
    let path = normalize(&ctx.project_dir.join(written));
    if path.file_name().and_then(|n| n.to_str()) != Some("pyproject.toml") {
        return Err(ctx.at(
            py.span(),
            format!("pyproject {written:?} is not a file named pyproject.toml"),
            "name the project's pyproject.toml (for a lockfile, use lock = \"uv.lock\" and the like)",
        ));
    }
    if !path.is_file() {
        return Err(ctx.at(
            py.span(),
            format!("pyproject {written:?} not found"),
            "name an existing pyproject.toml",
        ));
    }
    if *d.locked {
        return Err(ctx.at(
            py.span(),
            "locked = true needs a lockfile, and pyproject.toml is not one".into(),
            "lock the project (`uv lock`) and set lock = \"uv.lock\", or remove locked",
        ));
    }
    Ok(LockPlan {
        path,
        kind: LockKind::Pyproject,
        groups: d.groups.iter().map(|g| g.get_ref().clone()).collect(),
        extras: d.extras.iter().map(|g| g.get_ref().clone()).collect(),
        locked: false,
    })
}

const OUTPUT_HINT: &str = "write the zip to a directory of its own, e.g. \"dist/NAME.zip\" (lbuild leaves that directory out of the sources)";

/// `[output]`, and that the output is none of the build's inputs.
pub(crate) fn output(
    ctx: &Ctx,
    raw: Option<&Spanned<RawOutput>>,
    f: &Function,
    sources: &SourcesPlan,
    config: &ConfigPlan,
    deps: Option<&DepsPlan>,
) -> Result<OutputPlan, ManifestError> {
    let default = RawOutput::default();
    let o = raw.map_or(&default, |r| r.get_ref());
    let level = match &o.level {
        // libdeflate 7: on the benchmark corpus the smallest level whose
        // archive is no larger than `zip -9`'s (6 is 0.05% larger), at less
        // than half `zip -6`'s CPU time.
        None => 7,
        Some(l) => {
            let level = *l.get_ref();
            if !(0..=12).contains(&level) {
                return Err(ctx.at(
                    l.span(),
                    format!("compression level {level} is out of range"),
                    "use 0 (store) to 12 (smallest, slowest); 7 is the default",
                ));
            }
            level as u32
        }
    };
    // The default path comes from the function's name: point there.
    let (rel, span) = match &o.path {
        Some(p) => (p.get_ref().clone(), p.span()),
        None => (format!("dist/{}.zip", f.name), f.name_span.clone()),
    };
    let at = ctx.position(&span);
    let err = |message: String, hint: &str| ctx.at(span.clone(), message, hint);
    if rel.is_empty() || rel.ends_with('/') {
        return Err(err(
            format!("output path {rel:?} is not a file name"),
            "use a path ending in .zip, e.g. \"dist/orders.zip\"",
        ));
    }
    let path = normalize(&ctx.project_dir.join(&rel));
    let out_dir = path.parent().unwrap_or(Path::new("/"));
    // The output's directory, symlinks resolved where it exists, so that
    // two spellings of one file compare equal.
    let resolved = ctx.resolve(&path);
    let shown = path.display();

    match fs_err::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => {
            return Err(err(
                format!("output path {shown} is a directory"),
                "use a path ending in .zip, e.g. \"dist/orders.zip\"",
            ));
        }
        Ok(m) if !m.is_file() => {
            let kind = file_kind(&m);
            return Err(err(
                format!(
                    "output path {shown} is {kind}, not a regular file: lbuild would replace it"
                ),
                "point [output] path at a new or regular file, e.g. \"dist/NAME.zip\"",
            ));
        }
        _ => {}
    }
    if resolved == ctx.manifest_path || path == ctx.manifest_path {
        return Err(err(
            format!(
                "output path {shown} is the manifest {}: lbuild would overwrite it",
                ctx.manifest_path.display()
            ),
            OUTPUT_HINT,
        ));
    }
    let requirements = deps.and_then(|d| ctx.canonicalize(&d.requirements).ok());
    if let Some((message, hint)) = overwritten_input_resolved(
        &ctx.project_dir,
        &path,
        &resolved,
        sources,
        config,
        deps,
        requirements.as_deref(),
    ) {
        return Err(err(message, hint));
    }
    // The output's directory is left out of the walk: it must not be the
    // sources root itself (that would leave out every source).
    if ctx.resolve(out_dir) == sources.root {
        return Err(err(
            format!(
                "output path {rel:?} is inside the sources: it would be written into the sources root {}",
                sources.root.display()
            ),
            OUTPUT_HINT,
        ));
    }
    // Some other file of the user's (a document, say): not lbuild's to
    // replace. A damaged zip of lbuild's own is rebuilt, so only a name
    // not ending in .zip is checked.
    if !rel.ends_with(".zip")
        && fs_err::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0)
        && !starts_like_a_zip(&path)
    {
        return Err(err(
            format!(
                "output path {shown} exists and is not a zip: lbuild would overwrite it (and `lbuild clean` would delete it)"
            ),
            "point [output] path at a new file, e.g. \"dist/NAME.zip\", or move that file away",
        ));
    }
    Ok(OutputPlan {
        path,
        level,
        mtime: o.mtime,
        size_limit: o.size_limit.unwrap_or_default(),
        at,
    })
}

/// Whether writing the zip to `path` would overwrite (or package) one of an
/// artifact's inputs: its requirements file or lockfile, a file its config
/// globs match, or one its sources select. The message and hint, if so.
/// Checked for the artifact's own output and, in a workspace, for every
/// other artifact's.
///
/// The filesystem is already asked: `resolved` is
/// `Ctx::resolve(path)` and `requirements` the canonical requirements file (None
/// when it does not resolve). A workspace checks every output against every
/// other artifact's inputs, so it resolves each path once, not once a pair.
pub(super) fn overwritten_input_resolved(
    project_dir: &Path,
    path: &Path,
    resolved: &Path,
    sources: &SourcesPlan,
    config: &ConfigPlan,
    deps: Option<&DepsPlan>,
    requirements: Option<&Path>,
) -> Option<(String, &'static str)> {
    let shown = path.display();
    if let Some(d) = deps
        && (path == d.requirements || Some(resolved) == requirements)
    {
        return Some((
            format!(
                "output path {shown} is the requirements file {}: lbuild would overwrite it",
                d.requirements.display()
            ),
            OUTPUT_HINT,
        ));
    }
    if let Ok(rel_to_project) = path.strip_prefix(project_dir)
        && let Some(rel_to_project) = rel_to_project.to_str()
        && let Some(g) = config.globs.iter().find(|g| g.set.is_match(rel_to_project))
    {
        return Some((
            format!(
                "output path {shown} is a config input (matched by [config] files {:?}): lbuild would overwrite it",
                g.pattern
            ),
            OUTPUT_HINT,
        ));
    }
    if let Ok(rel_to_root) = resolved.strip_prefix(&sources.root)
        && let Some(rel_to_root) = rel_to_root.to_str()
        && sources.selects(rel_to_root)
        && !exclusions::excluded_by_default(rel_to_root)
    {
        return Some((
            format!(
                "output path {shown} is one of the sources (selected by [sources] include under {}): lbuild would package or overwrite it",
                sources.root.display()
            ),
            "write the zip outside the sources, or exclude its directory in [sources] exclude (e.g. \"dist/**\")",
        ));
    }
    None
}

/// Whether the file begins with a zip signature (a local file header, or
/// the end of central directory of an empty zip). An unreadable file
/// counts as one: writing the output will say what is wrong with it.
fn starts_like_a_zip(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) => head == *b"PK\x03\x04" || head == *b"PK\x05\x06",
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}

fn file_kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load_with_env, parse};
    use super::*;

    #[test]
    fn positions_from_the_line_index_are_those_counted_from_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[functions.a]\nhandler = \"é.h\"\n\n  x = 1\nlast";
        let path = dir.path().join("lambda.toml");
        let ctx = Ctx::new(&path, text, Env::default()).unwrap();
        for offset in 0..=text.len() + 2 {
            if text.is_char_boundary(offset.min(text.len())) {
                assert_eq!(
                    ctx.position(&(offset..offset)),
                    Position::of(text, offset),
                    "offset {offset}"
                );
            }
        }
    }

    #[test]
    fn a_load_asks_the_filesystem_once_per_path() {
        // The artifacts of a workspace share a root and an output directory:
        // the second ask is answered from the load's memo, even after the
        // link changed (a later load sees the change).
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().canonicalize().unwrap();
        for sub in ["one", "two"] {
            fs_err::create_dir(dir.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink("one", dir.join("src")).unwrap();
        let manifest = dir.join("lambda.toml");
        let ctx = Ctx::new(&manifest, "", Env::default()).unwrap();
        assert_eq!(ctx.canonicalize(&dir.join("src")).unwrap(), dir.join("one"));
        fs_err::remove_file(dir.join("src")).unwrap();
        std::os::unix::fs::symlink("two", dir.join("src")).unwrap();
        assert_eq!(ctx.canonicalize(&dir.join("src")).unwrap(), dir.join("one"));
        assert_eq!(ctx.resolve(&dir.join("src/a.zip")), dir.join("one/a.zip"));
        let missing = ctx.canonicalize(&dir.join("gone")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            ctx.canonicalize(&dir.join("gone")).unwrap_err().to_string(),
            missing.to_string()
        );
        let later = Ctx::new(&manifest, "", Env::default()).unwrap();
        assert_eq!(
            later.canonicalize(&dir.join("src")).unwrap(),
            dir.join("two")
        );
    }

    fn project(manifest: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(d.path().join("lambda.toml"), manifest).unwrap();
        fs_err::write(d.path().join("app.py"), "def handler(e, c): pass\n").unwrap();
        d
    }

    #[test]
    fn cache_remote_is_an_s3_url_in_either_form() {
        let single = "[function]\nname = \"f\"\nhandler = \"app.handler\"\n\n[cache]\nremote = \"s3://b/p\"\n";
        let d = project(single);
        let plan = load_with_env(&d.path().join("lambda.toml"), Env::default()).unwrap();
        assert_eq!(plan.remote_cache.as_deref(), Some("s3://b/p"));
        let e = error_of(
            "[function]\nname = \"f\"\nhandler = \"app.handler\"\n\n[cache]\nremote = \"https://b\"\n",
        );
        assert!(
            e.contains(":6:10: remote \"https://b\" is not an s3://"),
            "{e}"
        );
        let ws = "[cache]\nremote = \"s3://team/x\"\n\n[functions.f]\nhandler = \"app.handler\"\n";
        let d = project(ws);
        let w = crate::manifest::workspace::load_workspace_with_env(
            &d.path().join("lambda.toml"),
            Env::default(),
        )
        .unwrap();
        assert_eq!(w.artifacts[0].remote_cache.as_deref(), Some("s3://team/x"));
    }

    #[test]
    fn cache_trust_settings_are_checked_where_they_are_written() {
        let head = "[function]\nname = \"f\"\nhandler = \"app.handler\"\n\n[cache]\n";
        let good = format!(
            "{head}trusted_keys = [\"ci:dX4EkSEIMSnOEVhU2S7uFO0gA2yDm6jQVOUaNrs+tNg=\"]\ntrust = \"bucket\"\n"
        );
        let d = project(&good);
        let plan = load_with_env(&d.path().join("lambda.toml"), Env::default()).unwrap();
        assert_eq!(plan.remote_trust.trusted_keys.len(), 1);
        assert_eq!(
            plan.remote_trust.mode,
            Some(crate::remote::trust::TrustMode::Bucket)
        );
        let e = error_of(&format!("{head}trusted_keys = [\"ci:AAAA\"]\n"));
        assert!(
            e.contains(":6:16: trusted_keys: public key ci: 3 bytes"),
            "{e}"
        );
        let e = error_of(&format!("{head}trust = \"anyone\"\n"));
        assert!(e.contains(":6:9: trust \"anyone\" is not"), "{e}");
    }

    fn error_of(manifest: &str) -> String {
        let d = project(manifest);
        load_with_env(&d.path().join("lambda.toml"), Env::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_in_inline_tables_and_dotted_keys_point_at_the_value() {
        let inline =
            "function = { name = \"f\", handler = \"app.handler\", runtime = \"python2.7\" }\n";
        let err = error_of(inline);
        assert!(
            err.contains("lambda.toml:1:61: runtime \"python2.7\" is deprecated by AWS (since 2021-07-15; updating functions on it is blocked from 2022-05-30)"),
            "{err}"
        );
        let unknown = error_of(
            "function = { name = \"f\", handler = \"app.handler\", runtime = \"nodejs20.x\" }\n",
        );
        assert!(
            unknown.contains("unsupported runtime \"nodejs20.x\""),
            "{unknown}"
        );

        let dotted = "function.name = \"f\"\nfunction.handler = \"app.handler\"\n\
                      output.level = 13\n";
        let err = error_of(dotted);
        assert!(
            err.contains("lambda.toml:3:16: compression level 13"),
            "{err}"
        );

        let glob = "[function]\nname = \"f\"\nhandler = \"app.handler\"\n\
                    [sources]\nexclude = [\"tests/**\",\n  \"../up\"]\n";
        let err = error_of(glob);
        assert!(
            err.contains("lambda.toml:6:3: exclude glob \"../up\""),
            "{err}"
        );
    }

    #[test]
    fn the_default_output_path_errors_at_the_function_name() {
        let d = project("[function]\nname = \"f\"\nhandler = \"app.handler\"\n");
        fs_err::create_dir_all(d.path().join("dist/f.zip")).unwrap();
        let err = load_with_env(&d.path().join("lambda.toml"), Env::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lambda.toml:2:8: output path"), "{err}");
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn a_relative_cache_dir_resolves_against_the_project() {
        let d = project("[function]\nname = \"f\"\nhandler = \"app.handler\"\n");
        let env = Env {
            cache_dir: Some("cache".into()),
            source_date_epoch: Some("5".into()),
            ..Env::default()
        };
        let plan = load_with_env(&d.path().join("lambda.toml"), env).unwrap();
        assert_eq!(plan.cache_dir, plan.project_dir.join("cache"));
        assert_eq!(plan.env.source_date_epoch.as_deref(), Some("5"));
    }

    #[test]
    fn find_links_are_typed() {
        let d = project(
            "[function]\nname = \"f\"\nhandler = \"app.handler\"\n[dependencies]\n\
             find_links = [\"wheels\", \"https://example.com/w/\"]\n",
        );
        fs_err::write(d.path().join("requirements.txt"), "").unwrap();
        let plan = load_with_env(&d.path().join("lambda.toml"), Env::default()).unwrap();
        let links = &plan.deps.unwrap().find_links;
        assert_eq!(
            links,
            &[
                FindLinks::Dir(plan.project_dir.join("wheels")),
                FindLinks::Url("https://example.com/w/".into())
            ]
        );
    }

    #[test]
    fn parse_keeps_the_template_readable() {
        let raw = parse(
            Path::new("x"),
            "[function]\nname = \"f\"\nhandler = \"a.b\"\n",
        )
        .unwrap();
        assert_eq!(raw.function.get_ref().handler.get_ref(), "a.b");
    }
}
