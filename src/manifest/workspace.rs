//! Workspace manifests: functions and layers in keyed tables
//! (`[functions.NAME]`, `[layers.NAME]`) with a `[defaults]` table they
//! inherit from, validated into one [`Plan`] per artifact.
//!
//! The single-function form (`[function]` ...) is a workspace of one
//! function; [`load_workspace`] reads either. This module owns the raw
//! workspace types, inheritance from `[defaults]` (key by key within each
//! section, as Cargo's `[workspace.package]`), and the checks across
//! artifacts: layers a function names exist, at most five of them, and no
//! two artifacts write one output. Each artifact's own sections are
//! validated by [`super::validate::artifact`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::raw::{
    Architecture, RawConfig, RawDependencies, RawDeploy, RawFunction, RawOutput, RawSources,
};
use super::validate::{self, Ctx, Sections};
use super::{ArtifactKind, Env, ManifestError, Plan, Position};
use crate::limits::MAX_LAYERS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    defaults: Option<Spanned<RawDefaults>>,
    functions: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawFunctionEntry>>>>,
    layers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawLayerEntry>>>>,
    cache: Option<Spanned<super::raw::RawCache>>,
}

/// Keys every function and layer inherits unless it sets its own.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    runtime: Option<Spanned<String>>,
    architecture: Option<Architecture>,
    sources: Option<Spanned<RawSources>>,
    dependencies: Option<Spanned<RawDependencies>>,
    config: Option<Spanned<RawConfig>>,
    output: Option<Spanned<RawOutput>>,
    timeout: Option<Spanned<i64>>,
    memory: Option<Spanned<i64>>,
    environment: Option<BTreeMap<String, String>>,
    deploy: Option<Spanned<RawDeploy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunctionEntry {
    handler: Spanned<String>,
    runtime: Option<Spanned<String>>,
    architecture: Option<Architecture>,
    /// Names of `[layers.NAME]` tables and layer version ARNs, in the
    /// order Lambda stacks them.
    layers: Option<Spanned<Vec<Spanned<String>>>>,
    /// For `lbuild invoke`: a local directory or zip per layer ARN.
    local_layers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    sources: Option<Spanned<RawSources>>,
    dependencies: Option<Spanned<RawDependencies>>,
    config: Option<Spanned<RawConfig>>,
    output: Option<Spanned<RawOutput>>,
    timeout: Option<Spanned<i64>>,
    memory: Option<Spanned<i64>>,
    environment: Option<BTreeMap<String, String>>,
    deploy: Option<Spanned<RawDeploy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayerEntry {
    /// Shorthand for `dependencies = { requirements = "..." }`.
    requirements: Option<Spanned<String>>,
    dependencies: Option<Spanned<RawDependencies>>,
    sources: Option<Spanned<RawSources>>,
    /// The archive directory every file goes under: `python` (default) or
    /// `python/lib/python3.X/site-packages`.
    prefix: Option<Spanned<String>>,
    runtime: Option<Spanned<String>>,
    architecture: Option<Architecture>,
    output: Option<Spanned<RawOutput>>,
}

/// A validated manifest: every artifact's plan, layers first.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub manifest_path: PathBuf,
    pub project_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The single-function form: `--json` keeps its one-object shape.
    pub single: bool,
    /// Layers (by name), then functions (by name): a layer is built
    /// before the functions that use it.
    pub artifacts: Vec<Plan>,
}

impl Workspace {
    pub fn functions(&self) -> impl Iterator<Item = &Plan> {
        self.artifacts.iter().filter(|p| !p.is_layer())
    }

    pub fn layer(&self, name: &str) -> Option<&Plan> {
        self.artifacts
            .iter()
            .find(|p| p.is_layer() && p.name == name)
    }

    pub fn function(&self, name: &str) -> Option<&Plan> {
        self.functions().find(|p| p.name == name)
    }

    /// The layers `plan` uses that this manifest builds, in its order
    /// (layer version ARNs it names are not among them).
    pub fn layers_of(&self, plan: &Plan) -> Vec<&Plan> {
        match &plan.kind {
            ArtifactKind::Function { layers } => {
                layers.iter().filter_map(|l| self.layer(l)).collect()
            }
            ArtifactKind::Layer { .. } => Vec::new(),
        }
    }

    /// The artifacts to build for `--function NAME...`: those functions and
    /// the layers they use (everything when `names` is empty), in build
    /// order.
    pub fn select(&self, names: &[String]) -> crate::Result<Vec<&Plan>> {
        if names.is_empty() {
            return Ok(self.artifacts.iter().collect());
        }
        let mut wanted: Vec<&str> = Vec::new();
        for n in names {
            let Some(f) = self.function(n) else {
                let known: Vec<&str> = self.functions().map(|p| p.name.as_str()).collect();
                return Err(crate::Error::Input {
                    message: format!(
                        "no function named {n:?} in {}",
                        self.manifest_path.display()
                    ),
                    hint: format!("functions defined: {}", known.join(", ")),
                });
            };
            wanted.push(&f.name);
        }
        Ok(self
            .artifacts
            .iter()
            .filter(|p| {
                if p.is_layer() {
                    wanted
                        .iter()
                        .filter_map(|w| self.function(w))
                        .any(|f| self.layers_of(f).iter().any(|l| l.name == p.name))
                } else {
                    wanted.contains(&p.name.as_str())
                }
            })
            .collect())
    }
}

/// Reads and validates a manifest of either form, with the process's
/// environment.
pub(crate) fn load_workspace(path: &Path) -> Result<Workspace, ManifestError> {
    load_workspace_with_env(path, Env::from_process())
}

pub(crate) fn load_workspace_with_env(path: &Path, env: Env) -> Result<Workspace, ManifestError> {
    let text = fs_err::read_to_string(path).map_err(ManifestError::Read)?;
    // The form is told by its tables: `[function]` is the single form,
    // anything else is read as a workspace (whose unknown-key error then
    // names the tables a workspace allows).
    let single = text
        .parse::<toml::Table>()
        .map(|t| t.contains_key("function"))
        .unwrap_or(true);
    if single {
        let raw = super::parse(path, &text)?;
        let plan = validate::manifest(path, &text, raw, env)?;
        return Ok(Workspace {
            manifest_path: plan.manifest_path.clone(),
            project_dir: plan.project_dir.clone(),
            cache_dir: plan.cache_dir.clone(),
            single: true,
            artifacts: vec![plan],
        });
    }
    let raw: RawWorkspace = toml::from_str(&text).map_err(|e| {
        let at = Position::of(&text, e.span().map_or(0, |s| s.start));
        let message = e.message().trim().to_string();
        let hint = if message.contains("unknown field") {
            "a workspace holds [defaults], [functions.NAME], [layers.NAME] and [cache]; sections such as sources, dependencies, config and output go inside one of them (see lambda.toml.example)"
        } else {
            "fix the value at that position; lambda.toml.example documents every workspace key"
        };
        ManifestError::At {
            path: path.to_path_buf(),
            line: at.line,
            column: at.column,
            message,
            hint: Some(hint.into()),
        }
    })?;
    let ctx = Ctx::new(path, &text, env)?;
    validate_workspace(&ctx, raw)
}

fn validate_workspace(ctx: &Ctx, raw: RawWorkspace) -> Result<Workspace, ManifestError> {
    let remote_cache = validate::cache(ctx, raw.cache.as_ref())?;
    let remote_trust = validate::cache_trust(ctx, raw.cache.as_ref())?;
    let defaults = raw.defaults.map(Spanned::into_inner).unwrap_or_default();
    let layer_tables = raw.layers.map(Spanned::into_inner).unwrap_or_default();
    let function_tables = match raw.functions {
        Some(f) if f.get_ref().is_empty() => {
            return Err(ctx.at(
                f.span(),
                "[functions] defines no function".into(),
                "add a [functions.NAME] table with a handler, e.g. [functions.orders] handler = \"orders.app.handler\"",
            ));
        }
        Some(f) => f.into_inner(),
        None => BTreeMap::new(),
    };
    if function_tables.is_empty() && layer_tables.is_empty() {
        return Err(ctx.at(
            0..0,
            "the manifest defines no function and no layer".into(),
            "add [function] (one function) or [functions.NAME] / [layers.NAME] tables (a workspace); `lbuild init` writes one",
        ));
    }

    let mut artifacts = Vec::new();
    for (name, entry) in &layer_tables {
        artifacts.push(layer(ctx, &defaults, name, entry)?);
    }
    for (name, entry) in &function_tables {
        let plan = function(ctx, &defaults, name, entry)?;
        if let Some(uses) = &entry.get_ref().layers {
            if uses.get_ref().len() > MAX_LAYERS {
                return Err(ctx.at(
                    uses.span(),
                    format!(
                        "function {:?} uses {} layers; Lambda allows at most {MAX_LAYERS}",
                        name.get_ref(),
                        uses.get_ref().len()
                    ),
                    "merge layers (one dependency layer is usually enough), or move code into the function",
                ));
            }
            let mut seen: Vec<&str> = Vec::new();
            for used in uses.get_ref() {
                let entry = used.get_ref().as_str();
                if seen.contains(&entry) {
                    return Err(ctx.at(
                        used.span(),
                        format!("function {:?} names layer {entry:?} twice", name.get_ref()),
                        "a layer is attached once: remove the repeated entry",
                    ));
                }
                seen.push(entry);
                if entry.starts_with("arn:") {
                    if let Err(why) = check_layer_arn(entry) {
                        return Err(ctx.at(
                            used.span(),
                            format!(
                                "function {:?}: {entry:?} is not a layer version ARN: {why}",
                                name.get_ref()
                            ),
                            "write arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION (as `aws lambda list-layer-versions` prints it), or a layer name from a [layers.NAME] table",
                        ));
                    }
                    continue;
                }
                if !layer_tables.keys().any(|l| l.get_ref() == used.get_ref()) {
                    let known: Vec<&str> =
                        layer_tables.keys().map(|l| l.get_ref().as_str()).collect();
                    return Err(ctx.at(
                        used.span(),
                        format!(
                            "function {:?} uses layer {:?}, which no [layers.{}] table defines",
                            name.get_ref(),
                            used.get_ref(),
                            used.get_ref()
                        ),
                        &if known.is_empty() {
                            "define the layer in a [layers.NAME] table, name a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION), or remove it from layers"
                                .to_string()
                        } else {
                            format!("layers defined: {} (or name a layer version ARN)", known.join(", "))
                        },
                    ));
                }
            }
        }
        let mut plan = plan;
        for (arn, path) in entry.get_ref().local_layers.iter().flatten() {
            let named = entry
                .get_ref()
                .layers
                .as_ref()
                .is_some_and(|l| l.get_ref().iter().any(|u| u.get_ref() == arn.get_ref()));
            if !named || !arn.get_ref().starts_with("arn:") {
                return Err(ctx.at(
                    arn.span(),
                    format!(
                        "function {:?}: local_layers maps {:?}, which is not a layer version ARN in its layers",
                        name.get_ref(),
                        arn.get_ref()
                    ),
                    "local_layers = { \"arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION\" = \"path/to/dir-or.zip\" } maps an ARN listed in layers to a local copy, for lbuild invoke",
                ));
            }
            if path.get_ref().is_empty() {
                return Err(ctx.at(
                    path.span(),
                    "an empty path".into(),
                    "give the directory (laid out as the layer's zip: python/...) or the zip of that layer version",
                ));
            }
            plan.lambda
                .local_layers
                .push((arn.get_ref().clone(), ctx.project_dir.join(path.get_ref())));
        }
        artifacts.push(plan);
    }

    // No two artifacts write one zip, however its directory is spelled
    // (a symlinked directory leads two paths to one file).
    let resolved: Vec<PathBuf> = artifacts
        .iter()
        .map(|p| ctx.resolve(&p.output.path))
        .collect();
    // Looked up by path, not compared pair by pair: `Path`'s equality
    // walks components, and 80 artifacts are 3,160 pairs.
    let mut spelled: std::collections::HashMap<&Path, usize> = Default::default();
    let mut real: std::collections::HashMap<&Path, usize> = Default::default();
    for (i, a) in artifacts.iter().enumerate() {
        let first_spelled = *spelled.entry(a.output.path.as_path()).or_insert(i);
        let first_real = *real.entry(resolved[i].as_path()).or_insert(i);
        if let Some(b) = [first_spelled, first_real]
            .into_iter()
            .filter(|&j| j != i)
            .min()
            .map(|j| &artifacts[j])
        {
            return Err(a.output_error(
                format!(
                    "{} {:?} and {} {:?} both write {}{}",
                    b.kind.label(),
                    b.name,
                    a.kind.label(),
                    a.name,
                    a.output.path.display(),
                    if b.output.path == a.output.path {
                        String::new()
                    } else {
                        format!(" (the same file as {})", b.output.path.display())
                    }
                ),
                "give one of them its own [output] path",
            ));
        }
    }
    // Nor one's zip over another's input (its own are checked with its
    // output): building it would overwrite that file.
    // Each path is resolved once (above and here), not once a pair: the
    // pairs are N², and resolving walks the filesystem.
    let requirements: Vec<Option<PathBuf>> = artifacts
        .iter()
        .map(|b| {
            b.deps
                .as_ref()
                .and_then(|d| ctx.canonicalize(&d.requirements).ok())
        })
        .collect();
    for (i, (a, a_resolved)) in artifacts.iter().zip(&resolved).enumerate() {
        use std::os::unix::ffi::OsStrExt;
        let a_bytes = a_resolved.as_os_str().as_bytes();
        // Every other artifact: no two write one zip (checked above).
        for (_, (b, b_requirements)) in artifacts
            .iter()
            .zip(&requirements)
            .enumerate()
            .filter(|(j, _)| *j != i)
            // Only a pair that could match is checked in full: 80 functions
            // sharing a root and writing outside it are 6,400 pairs, most
            // ruled out by one byte comparison (a path under the root
            // begins with the root's bytes).
            .filter(|(_, (b, _))| {
                b.deps.is_some()
                    || !b.config.globs.is_empty()
                    || a_bytes.starts_with(b.sources.root.as_os_str().as_bytes())
            })
        {
            if let Some((message, hint)) = super::validate::overwritten_input_resolved(
                &ctx.project_dir,
                &a.output.path,
                a_resolved,
                &b.sources,
                &b.config,
                b.deps.as_ref(),
                b_requirements.as_deref(),
            ) {
                return Err(a.output_error(
                    format!(
                        "{} {:?}: {message} (an input of {} {:?})",
                        a.kind.label(),
                        a.name,
                        b.kind.label(),
                        b.name
                    ),
                    hint,
                ));
            }
        }
    }
    let outputs: std::sync::Arc<std::collections::HashSet<PathBuf>> =
        std::sync::Arc::new(artifacts.iter().map(|p| p.output.path.clone()).collect());
    for plan in &mut artifacts {
        plan.store_file = format!("store-{}-{}.zip", plan.kind.label(), plan.name);
        plan.remote_cache = remote_cache.clone();
        plan.remote_trust = remote_trust.clone();
        plan.workspace_outputs = outputs.clone();
    }
    Ok(Workspace {
        manifest_path: ctx.manifest_path.clone(),
        project_dir: ctx.project_dir.clone(),
        cache_dir: artifacts
            .first()
            .map(|p| p.cache_dir.clone())
            .unwrap_or_else(|| ctx.project_dir.join(".lbuild")),
        single: false,
        artifacts,
    })
}

fn function(
    ctx: &Ctx,
    d: &RawDefaults,
    name: &Spanned<String>,
    entry: &Spanned<RawFunctionEntry>,
) -> Result<Plan, ManifestError> {
    let e = entry.get_ref();
    let raw_function = Spanned::new(
        entry.span(),
        RawFunction {
            name: name.clone(),
            handler: e.handler.clone(),
            runtime: e.runtime.clone().or_else(|| d.runtime.clone()),
            architecture: e.architecture.or(d.architecture).unwrap_or_default(),
            timeout: e.timeout.clone().or_else(|| d.timeout.clone()),
            memory: e.memory.clone().or_else(|| d.memory.clone()),
            environment: merge_env(&d.environment, &e.environment),
            deploy: merge_deploy(&d.deploy, &e.deploy),
        },
    );
    let sources = merge_sources(&d.sources, &e.sources);
    let dependencies = inherited_deps(&d.dependencies, &e.dependencies);
    let config = merge_config(&d.config, &e.config);
    let output = merge_output(&d.output, &e.output, None);
    let mut plan = validate::artifact(
        ctx,
        Sections {
            function: &raw_function,
            sources: sources.as_ref(),
            dependencies: dependencies.as_ref(),
            config: config.as_ref(),
            output: output.as_ref(),
        },
    )?;
    plan.kind = ArtifactKind::Function {
        layers: e
            .layers
            .as_ref()
            .map(|l| l.get_ref().iter().map(|n| n.get_ref().clone()).collect())
            .unwrap_or_default(),
    };
    Ok(plan)
}

fn layer(
    ctx: &Ctx,
    d: &RawDefaults,
    name: &Spanned<String>,
    entry: &Spanned<RawLayerEntry>,
) -> Result<Plan, ManifestError> {
    let e = entry.get_ref();
    let prefix = match &e.prefix {
        None => "python".to_string(),
        Some(p) => {
            let v = p.get_ref().trim_end_matches('/');
            let ok = !v.is_empty()
                && !v.starts_with('/')
                && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
            if !ok {
                return Err(ctx.at(
                    p.span(),
                    format!("layer prefix {:?} is not a relative directory", p.get_ref()),
                    "use \"python\" (the default) or \"python/lib/python3.X/site-packages\"",
                ));
            }
            v.to_string()
        }
    };
    // A layer has no handler: validate its name and target through the
    // function rules with a placeholder handler that nothing reads.
    let raw_function = Spanned::new(
        entry.span(),
        RawFunction {
            name: name.clone(),
            handler: Spanned::new(entry.span(), "layer.placeholder".into()),
            runtime: e.runtime.clone().or_else(|| d.runtime.clone()),
            architecture: e.architecture.or(d.architecture).unwrap_or_default(),
            timeout: None,
            memory: None,
            environment: None,
            deploy: None,
        },
    );
    let own_deps = match (&e.requirements, &e.dependencies) {
        (Some(r), Some(deps)) => {
            return Err(ctx.at(
                r.span(),
                format!(
                    "layer {:?} sets both requirements and [dependencies] (at line {})",
                    name.get_ref(),
                    Position::of(ctx.text(), deps.span().start).line
                ),
                "keep one: requirements = \"...\" is short for dependencies = { requirements = \"...\" }",
            ));
        }
        (Some(r), None) => Some(Spanned::new(
            r.span(),
            RawDependencies {
                requirements: Some(r.clone()),
                ..Default::default()
            },
        )),
        (None, deps) => deps.clone(),
    };
    let dependencies = inherited_deps(&d.dependencies, &own_deps);
    // A layer without sources of its own packages none: the defaults'
    // sources describe functions' code.
    let sources = match &e.sources {
        Some(_) => merge_sources(&d.sources, &e.sources),
        None => Some(Spanned::new(
            entry.span(),
            RawSources {
                include: Some(Vec::new()),
                ..Default::default()
            },
        )),
    };
    let default_path = Spanned::new(name.span(), format!("dist/layers/{}.zip", name.get_ref()));
    let output = merge_output(&d.output, &e.output, Some(default_path));
    let mut plan = validate::artifact(
        ctx,
        Sections {
            function: &raw_function,
            sources: sources.as_ref(),
            dependencies: dependencies.as_ref(),
            config: None,
            output: output.as_ref(),
        },
    )?;
    plan.handler = String::new();
    plan.kind = ArtifactKind::Layer { prefix };
    Ok(plan)
}

type Section<T> = Option<Spanned<T>>;

fn merge_env(
    d: &Option<BTreeMap<String, String>>,
    own: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    match (d, own) {
        (None, None) => None,
        _ => {
            let mut env = d.clone().unwrap_or_default();
            env.extend(own.clone().unwrap_or_default());
            Some(env)
        }
    }
}

fn merge_deploy(d: &Section<RawDeploy>, own: &Section<RawDeploy>) -> Section<RawDeploy> {
    merge(d, own, |d, o| RawDeploy {
        // A name is one function's: never inherited.
        name: o.name.clone(),
        s3_bucket: o.s3_bucket.clone().or_else(|| d.s3_bucket.clone()),
        s3_prefix: o.s3_prefix.clone().or_else(|| d.s3_prefix.clone()),
    })
    .map(|s| {
        if own.is_none() {
            Spanned::new(
                s.span(),
                RawDeploy {
                    name: None,
                    ..s.into_inner()
                },
            )
        } else {
            s
        }
    })
}

/// Key-by-key inheritance within one section: the artifact's own value
/// where it writes the key (even `[]` or `false`), else the default's.
fn merge<T: Clone>(d: &Section<T>, own: &Section<T>, f: impl Fn(&T, &T) -> T) -> Section<T> {
    match (d, own) {
        (None, None) => None,
        (Some(d), None) => Some(d.clone()),
        (None, Some(o)) => Some(o.clone()),
        (Some(d), Some(o)) => Some(Spanned::new(o.span(), f(d.get_ref(), o.get_ref()))),
    }
}

fn merge_sources(d: &Section<RawSources>, own: &Section<RawSources>) -> Section<RawSources> {
    merge(d, own, |d, o| RawSources {
        root: o.root.clone().or_else(|| d.root.clone()),
        include: o.include.clone().or_else(|| d.include.clone()),
        exclude: o.exclude.or_default_of(&d.exclude),
        allow_outside_project: o
            .allow_outside_project
            .or_default_of(&d.allow_outside_project),
    })
}

fn merge_deps(
    d: &Section<RawDependencies>,
    own: &Section<RawDependencies>,
) -> Section<RawDependencies> {
    merge(d, own, |d, o| RawDependencies {
        requirements: if o.lock.is_some() || o.pyproject.is_some() {
            o.requirements.clone()
        } else {
            o.requirements.clone().or_else(|| d.requirements.clone())
        },
        // One source: a function's own `requirements` is not overridden
        // by a default `lock` (or `pyproject`), nor the reverse.
        lock: if o.requirements.is_some() || o.pyproject.is_some() {
            o.lock.clone()
        } else {
            o.lock.clone().or_else(|| d.lock.clone())
        },
        pyproject: if o.requirements.is_some() || o.lock.is_some() {
            o.pyproject.clone()
        } else {
            o.pyproject.clone().or_else(|| d.pyproject.clone())
        },
        groups: o.groups.or_default_of(&d.groups),
        extras: o.extras.or_default_of(&d.extras),
        locked: o.locked.or_default_of(&d.locked),
        installer: if o.installer == Default::default() {
            d.installer
        } else {
            o.installer
        },
        exclude: o.exclude.or_default_of(&d.exclude),
        index_url: o.index_url.clone().or_else(|| d.index_url.clone()),
        extra_index_urls: o.extra_index_urls.or_default_of(&d.extra_index_urls),
        find_links: o.find_links.or_default_of(&d.find_links),
        no_index: o.no_index.or_default_of(&d.no_index),
    })
}

/// `[defaults] dependencies` gives an artifact dependencies only when it
/// names a requirements file itself; otherwise it holds options (index,
/// find_links, installer, exclude) for the artifacts that have their own,
/// so a function taking its dependencies from a layer stays without.
fn inherited_deps(
    d: &Section<RawDependencies>,
    own: &Section<RawDependencies>,
) -> Section<RawDependencies> {
    let d_names_file = d
        .as_ref()
        .is_some_and(|d| d.get_ref().requirements.is_some());
    if own.is_none() && !d_names_file {
        return None;
    }
    merge_deps(d, own)
}

fn merge_config(d: &Section<RawConfig>, own: &Section<RawConfig>) -> Section<RawConfig> {
    merge(d, own, |d, o| RawConfig {
        files: o.files.or_default_of(&d.files),
        allow_outside_project: o
            .allow_outside_project
            .or_default_of(&d.allow_outside_project),
        required: o.required.or(d.required),
    })
}

/// Output settings inherit, but never the path: two artifacts writing one
/// zip would be an error.
fn merge_output(
    d: &Section<RawOutput>,
    own: &Section<RawOutput>,
    default_path: Option<Spanned<String>>,
) -> Section<RawOutput> {
    let d = d.as_ref().map(|d| {
        Spanned::new(
            d.span(),
            RawOutput {
                path: None,
                ..d.get_ref().clone()
            },
        )
    });
    let merged = merge(&d, own, |d, o| RawOutput {
        path: o.path.clone(),
        level: o.level.clone().or_else(|| d.level.clone()),
        mtime: o.mtime.or(d.mtime),
        size_limit: o.size_limit.or(d.size_limit),
    });
    match (merged, default_path) {
        (Some(m), Some(p)) if m.get_ref().path.is_none() => {
            let span = m.span();
            let mut o = m.into_inner();
            o.path = Some(p);
            Some(Spanned::new(span, o))
        }
        (None, Some(p)) => Some(Spanned::new(
            p.span(),
            RawOutput {
                path: Some(p),
                ..Default::default()
            },
        )),
        (m, _) => m,
    }
}

/// Whether `arn` has the shape of a layer version ARN,
/// `arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME:VERSION`; the reason
/// when not. Only the shape: whether the version exists is AWS's to say.
pub(crate) fn check_layer_arn(arn: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [
        "arn",
        partition,
        "lambda",
        region,
        account,
        "layer",
        name,
        version,
    ] = parts.as_slice()
    else {
        return Err(
            "expected eight ':'-separated parts, arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION",
        );
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !partition.starts_with("aws") || !word(partition) {
        return Err("the partition is not aws, aws-cn or aws-us-gov");
    }
    if !word(region) {
        return Err("the region is empty or not a region name");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the account is not 12 digits");
    }
    if name.is_empty()
        || name.len() > 140
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("the layer name is not 1-140 letters, digits, '-' or '_'");
    }
    if version.is_empty()
        || !version.bytes().all(|b| b.is_ascii_digit())
        || version.starts_with('0')
    {
        return Err(
            "the version is not a positive number (a layer is attached by one of its versions)",
        );
    }
    Ok(())
}
