//! Command-line interface: clap definitions and dispatch to the library.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::context::BuildContext;
use crate::manifest::{self, Workspace};
use crate::pipeline;
use crate::report::{Mode, Reporter};

#[derive(Debug, Parser)]
#[command(
    name = "lbuild",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LBUILD_COMMIT"), ")"),
    about = "Reproducible, incremental deployment zips for Python AWS Lambda functions",
    long_about = "lbuild reads lambda.toml, installs binary wheels for the Lambda target, \
collects the handler, sources and config files, and writes a zip whose bytes \
depend only on those inputs: the same CodeSha256 on every machine.\n\n\
Stages whose inputs did not change are skipped (content hashes kept in .lbuild/).",
    after_help = "Examples:\n  \
lbuild init                 write a commented lambda.toml here\n  \
lbuild                      build dist/NAME.zip (same as `lbuild build`)\n  \
lbuild --json               build and print a JSON summary (sha256, CodeSha256, stages)\n  \
lbuild --function orders    build one function of a workspace (and the layers it uses)\n  \
lbuild explain              build, and say why each stage ran (what changed since the last build)\n  \
lbuild check                syntax-check the sources with the runtime's Python\n  \
lbuild build --sbom         also write dist/NAME.cdx.json (CycloneDX) beside the zip\n  \
lbuild verify               rebuild with an empty cache and compare with dist/NAME.zip\n  \
lbuild verify --deployed    compare a rebuild with the CodeSha256 on AWS\n  \
lbuild size                 where the bytes go, and the headroom under Lambda's limits\n  \
lbuild watch                rebuild on every save\n  \
lbuild watch --deploy       rebuild on every save, then deploy what changed\n  \
lbuild invoke               build, then run the handler locally (--event FILE)\n  \
lbuild deploy --plan        show what a deploy would change on AWS\n  \
lbuild deploy               build, then update the Lambda function if its code changed\n  \
lbuild clean                remove the zip and the cache"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Path to lambda.toml [default: ./lambda.toml, then each parent directory]
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (one object per build)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors and warnings (with --json: only the JSON on stdout)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Explain each stage key's inputs
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// In a workspace, only this function and the layers it uses (repeatable)
    #[arg(long = "function", global = true, value_name = "NAME")]
    pub functions: Vec<String>,
    /// Share compressed entries and dependency trees through this bucket
    /// (s3://BUCKET/PREFIX; also LBUILD_REMOTE_CACHE or [cache] remote)
    #[arg(long, global = true, value_name = "S3_URL")]
    pub remote_cache: Option<String>,
    /// read: fetch only; read-write: also upload what this build made
    /// [default: read-write when CI is set, else read]
    #[arg(long, global = true, value_name = "MODE", value_parser = ["read", "read-write"])]
    pub remote_cache_mode: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the zip (the default command); in a workspace, every function and layer
    Build {
        /// First check the sources' syntax with the runtime's Python (as `lbuild check`)
        #[arg(long)]
        check: bool,
        /// Also write a CycloneDX SBOM beside each zip (dist/NAME.cdx.json)
        #[arg(long)]
        sbom: bool,
        /// Also write an in-toto SLSA provenance statement beside each zip
        /// (dist/NAME.intoto.json; unsigned: sign it in CI, see README)
        #[arg(long)]
        provenance: bool,
    },
    /// Build, then print the function's SBOM (every distribution in its zip
    /// and layers: version, purl, licence, hashes; the zip's SHA-256)
    Sbom {
        /// cyclonedx (1.6 JSON) or spdx (2.3 JSON)
        #[arg(long, default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"])]
        format: String,
    },
    /// Rebuild from the manifest with an empty cache and compare: with the
    /// zips in dist/ (or --zip) byte for byte, or with what is deployed
    /// (--deployed: CodeSha256 of the function and its layers). Exit 0 when
    /// equal, 1 with the differences listed
    Verify {
        /// The zip to check (one function; default: its output path)
        #[arg(long, value_name = "PATH", conflicts_with = "deployed")]
        zip: Option<PathBuf>,
        /// Compare with the CodeSha256 AWS reports (GetFunction, GetLayerVersion)
        #[arg(long)]
        deployed: bool,
    },
    /// Build, saying for each stage that ran what differs from the last build
    /// (files changed, added or removed, pins moved, settings, installer version)
    Explain,
    /// Compile the sources with the runtime's Python (python3.X on PATH) and report
    /// syntax errors as `path:line:col: error: message`; skipped without that Python
    Check,
    /// Show where each zip's bytes go (largest distributions and directories, zipped
    /// and unzipped) and the headroom under Lambda's size limits; builds first
    Size {
        /// How many distributions and directories to list
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Terraform's external data source: read {"function": NAME} or {"layer": NAME}
    /// (optionally "manifest") on stdin, build it, print {zip, sha256, code_sha256, size}
    #[command(
        after_help = "In Terraform:\n  data \"external\" \"orders\" {\n    program = [\"lbuild\", \"terraform\"]\n    query   = { function = \"orders\", manifest = \"${path.module}/lambda.toml\" }\n  }\n  # filename = data.external.orders.result.zip\n  # source_code_hash = data.external.orders.result.code_sha256"
    )]
    Terraform,
    /// Build, then rebuild whenever an input changes
    Watch(WatchArgs),
    /// Write a commented lambda.toml for the current directory
    Init {
        /// Overwrite an existing lambda.toml
        #[arg(long)]
        force: bool,
        /// Write a workspace: one function per package that defines a handler
        #[arg(long)]
        workspace: bool,
        /// The SAM/CloudFormation template or serverless.yml to migrate
        #[arg(long, value_name = "PATH")]
        template: Option<std::path::PathBuf>,
        /// The handler (module.function) when several functions fit
        #[arg(long, value_name = "MODULE.FUNCTION")]
        handler: Option<String>,
    },
    /// Build, then update the function on AWS if its code changed
    Deploy(DeployArgs),
    /// Build, then run the handler locally with the runtime's Python
    Invoke(InvokeArgs),
    /// Remove the output zip and the cache (.lbuild/)
    Clean,
    /// Forget cached stages (and installed dependency trees) not used recently
    Gc {
        /// Keep what was used within this many days
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Instead: trim the machine store (shared by every project) to this
        /// size, least recently used first (e.g. 2G, 500M)
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
    },
    /// Print a shell completion script (e.g. `lbuild completions bash > ~/.local/share/bash-completion/completions/lbuild`)
    Completions {
        /// bash, zsh, fish, powershell or elvish
        shell: clap_complete::Shell,
    },
    /// The machine store shared by every project ($LBUILD_STORE, else ~/.cache/lbuild)
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print where the machine store is and what it holds
    Stats,
    /// Make an ed25519 key pair for signing the remote cache's objects:
    /// prints the public key (NAME:BASE64, for [cache] trusted_keys or
    /// LBUILD_TRUSTED_KEYS) and writes the secret key (for
    /// LBUILD_SIGNING_KEY) to a new file readable only by you
    Keygen {
        /// The key's name, e.g. ci-2026 (letters, digits, -_.@+)
        name: String,
        /// Where to write the secret key (default NAME.secret; never overwritten)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Poll the file system instead of native events (network mounts, some containers)
    #[arg(long)]
    pub poll: bool,
    /// Quiet period after the last change before rebuilding, in milliseconds
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub debounce_ms: u64,
    /// After each rebuild, deploy what changed to the existing Lambda functions
    /// (as `lbuild deploy` does; one deploy at a time, a failure does not stop the watch)
    #[arg(long)]
    pub deploy: bool,
    /// With --deploy: fail, instead of warning, when a function's runtime or architecture differs
    #[arg(long, requires = "deploy")]
    pub strict: bool,
    /// With --deploy: remove layers attached on AWS that lambda.toml does not name
    /// (by default they are kept, with a warning)
    #[arg(long, requires = "deploy")]
    pub remove_unmanaged_layers: bool,
    /// With --deploy: S3 bucket for zips over 50 MB
    #[arg(long, value_name = "BUCKET", requires = "deploy")]
    pub s3_bucket: Option<String>,
    /// With --deploy: key prefix in the bucket [default: lbuild]
    #[arg(long, value_name = "PREFIX", requires = "deploy")]
    pub s3_prefix: Option<String>,
    /// With --deploy: put before each function's name (--name-prefix dev-)
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "deploy",
        allow_hyphen_values = true
    )]
    pub name_prefix: Option<String>,
    /// With --deploy: put after each function's name (--name-suffix -dev)
    #[arg(
        long,
        value_name = "SUFFIX",
        requires = "deploy",
        allow_hyphen_values = true
    )]
    pub name_suffix: Option<String>,
}

impl WatchArgs {
    /// `--deploy` and its flags as deploy options (before lambda.toml's defaults).
    #[cfg(feature = "aws")]
    fn deploy_options(&self) -> Option<crate::deploy::DeployOptions> {
        self.deploy.then(|| crate::deploy::DeployOptions {
            plan: false,
            strict: self.strict,
            s3_bucket: self.s3_bucket.clone(),
            s3_prefix: self.s3_prefix.clone(),
            name_prefix: self.name_prefix.clone().unwrap_or_default(),
            name_suffix: self.name_suffix.clone().unwrap_or_default(),
            name: None,
            remove_unmanaged_layers: self.remove_unmanaged_layers,
        })
    }
}

#[derive(Debug, Args, Clone)]
#[command(
    long_about = "Builds the zip, then puts it on the existing Lambda function: GetFunction \
reads the deployed CodeSha256 and UpdateFunctionCode is called only when it differs, \
followed by a wait until the update has finished. Running it twice makes no write call \
the second time.\n\n\
Zips over 50 MB go through S3 (--s3-bucket): s3://BUCKET/PREFIX/SHA256.zip, uploaded \
once per content.\n\n\
lbuild does not create functions (use Terraform, SAM or `aws lambda create-function`). \
Region and credentials come from the standard AWS chain (AWS_PROFILE, AWS_REGION, SSO, \
environment, instance role); AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_LAMBDA point it at \
another endpoint.",
    after_help = "Examples:\n  \
lbuild deploy --plan                  what would be called; changes nothing\n  \
lbuild deploy                         deploy to the function named in lambda.toml\n  \
lbuild deploy --name-suffix -dev      deploy to NAME-dev\n  \
lbuild deploy --s3-bucket my-builds   stage zips over 50 MB in s3://my-builds/lbuild/\n  \
lbuild deploy --json                  one JSON object per function (status, old and new CodeSha256)"
)]
pub struct DeployArgs {
    /// Print what would be called and change nothing (only read calls are made)
    #[arg(long)]
    pub plan: bool,
    /// Fail, instead of warning, when the function's runtime or architecture differs from lambda.toml
    #[arg(long)]
    pub strict: bool,
    /// Remove layers attached on AWS that lambda.toml does not name
    /// (by default they are kept, with a warning)
    #[arg(long)]
    pub remove_unmanaged_layers: bool,
    /// S3 bucket for zips over 50 MB (in the function's region)
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix in the bucket [default: lbuild]
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// The function's name in AWS, instead of the name in lambda.toml
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Put before the function's name (stages: --name-prefix dev-)
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub name_prefix: String,
    /// Put after the function's name (stages: --name-suffix -prod)
    #[arg(
        long,
        value_name = "SUFFIX",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub name_suffix: String,
}

#[derive(Debug, Args, Clone)]
#[command(
    long_about = "Builds the zip, then runs its handler on this machine the way Lambda would: \
the zip extracted once (keyed by its sha256) under .lbuild/invoke/, only the zip importable \
(function code first), a context object with Lambda's attributes and \
get_remaining_time_in_millis(), Lambda's environment variables (plus the manifest's, --env \
and the caller's AWS credentials; nothing else of this machine's unless --pass-env names it), \
the event on stdin (UTF-8 JSON up to 6 MB), and the timeout enforced on the handler's whole \
process group. The handler's return value is printed as JSON on stdout; its prints and logs go \
to stderr. An exception prints the traceback and exits non-zero, so a `No module named x` \
shows up before a deploy; so does sys.exit() or os._exit(), as on Lambda.\n\n\
Needs the runtime's Python (python3.X on PATH, or found by `uv python find`); no Docker, \
no network.",
    after_help = "Examples:\n  \
lbuild invoke                              the handler with the event {}\n  \
lbuild invoke --event events/order.json    an event from a file\n  \
echo '{\"id\": 7}' | lbuild invoke --event -   an event from stdin\n  \
lbuild invoke --timeout 30 --env TABLE=orders-dev"
)]
pub struct InvokeArgs {
    /// The event: a JSON file, or - for stdin [default: {}]
    #[arg(long, value_name = "FILE|-")]
    pub event: Option<String>,
    /// Stop the handler after this many seconds [default: the manifest's timeout, else 3]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// The memory size the context reports, in MB [default: the manifest's memory, else 128]
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// An environment variable for the handler (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Give the handler this variable of lbuild's environment, if set (repeatable)
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
}

impl DeployArgs {
    /// The command line's deploy options (before lambda.toml's defaults).
    #[cfg(feature = "aws")]
    fn options(&self) -> crate::deploy::DeployOptions {
        crate::deploy::DeployOptions {
            plan: self.plan,
            strict: self.strict,
            s3_bucket: self.s3_bucket.clone(),
            s3_prefix: self.s3_prefix.clone(),
            name_prefix: self.name_prefix.clone(),
            name_suffix: self.name_suffix.clone(),
            name: self.name.clone(),
            remove_unmanaged_layers: self.remove_unmanaged_layers,
        }
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl GlobalArgs {
    pub fn reporter(&self) -> Reporter {
        let mode = if self.json {
            Mode::Json
        } else if self.quiet {
            Mode::Quiet
        } else {
            Mode::Human
        };
        Reporter::new(mode, self.verbose)
    }

    /// The manifest to use: --manifest, or the nearest lambda.toml upwards.
    pub fn manifest_path(&self) -> crate::Result<PathBuf> {
        match &self.manifest {
            Some(p) => Ok(p.clone()),
            None => {
                let cwd = std::env::current_dir().map_err(crate::Error::io("cannot read", "."))?;
                Ok(manifest::find_manifest(&cwd)?)
            }
        }
    }

    pub fn workspace(&self) -> crate::Result<Workspace> {
        let mut ws = manifest::load_workspace(&self.manifest_path()?)?;
        for plan in &mut ws.artifacts {
            if self.remote_cache.is_some() {
                plan.env.remote_cache = self.remote_cache.clone();
            }
            if self.remote_cache_mode.is_some() {
                plan.env.remote_cache_mode = self.remote_cache_mode.clone();
            }
        }
        Ok(ws)
    }
}

/// Builds what `--function` selects and prints it; a failure in any
/// artifact (each reported with its name) makes the command fail.
fn build(
    global: &GlobalArgs,
    reporter: &Reporter,
) -> crate::Result<crate::outcome::WorkspaceOutcome> {
    built(global, reporter, true)
}

/// Builds what `--function` selects; prints the outcome only when asked
/// (`deploy` prints its own report), failures always.
fn built(
    global: &GlobalArgs,
    reporter: &Reporter,
    print: bool,
) -> crate::Result<crate::outcome::WorkspaceOutcome> {
    let ws = global.workspace()?;
    let cx = BuildContext::for_workspace(&ws, reporter)?;
    let outcome = pipeline::build_workspace(&cx, &ws, &global.functions)?;
    if outcome.single {
        // The single form: exactly today's output and error.
        return match outcome.artifacts.into_iter().next() {
            Some(crate::outcome::ArtifactResult::Built(o)) => {
                if print {
                    crate::output::print_outcome(&o, reporter);
                }
                Ok(crate::outcome::WorkspaceOutcome {
                    single: true,
                    artifacts: vec![crate::outcome::ArtifactResult::Built(o)],
                    ms: outcome.ms,
                })
            }
            Some(crate::outcome::ArtifactResult::Failed { error, .. }) => Err(error),
            None => unreachable!("a single-function manifest has one artifact"),
        };
    }
    match outcome.exit_code() {
        Some(code) => {
            crate::output::print_workspace(&outcome, reporter);
            Err(crate::Error::ArtifactsFailed {
                failed: outcome.failures(),
                total: outcome.artifacts.len(),
                code,
            })
        }
        None => {
            if print {
                crate::output::print_workspace(&outcome, reporter);
            }
            Ok(outcome)
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> crate::Result<()> {
    let mut reporter = cli.global.reporter();
    match cli.command.unwrap_or(Command::Build {
        check: false,
        sbom: false,
        provenance: false,
    }) {
        Command::Build {
            check,
            sbom,
            provenance,
        } => {
            if check {
                // With --json, stdout keeps the build's one document.
                let check_reporter = if reporter.mode == Mode::Json {
                    Reporter::silent()
                } else {
                    reporter.clone()
                };
                crate::check::run(
                    &cli.global.workspace()?,
                    &cli.global.functions,
                    &check_reporter,
                )?;
            }
            let built = build(&cli.global, &reporter)?;
            if sbom || provenance {
                let ws = cli.global.workspace()?;
                let contents = crate::sbom::contents_of(&ws, &built)?;
                if sbom {
                    crate::sbom::write_for_build(&ws, &built, &contents, &reporter)?;
                }
                if provenance {
                    crate::provenance::write_for_build(&ws, &built, &contents, &reporter)?;
                }
            }
            Ok(())
        }
        Command::Sbom { format } => {
            let ws = cli.global.workspace()?;
            let built = built(&cli.global, &reporter, false)?;
            let format = match format.as_str() {
                "spdx" => crate::sbom::Format::Spdx,
                _ => crate::sbom::Format::CycloneDx,
            };
            crate::sbom::print_for(&ws, &cli.global.functions, &built, format)
        }
        Command::Verify { zip, deployed } => {
            let ws = cli.global.workspace()?;
            let against = match (zip, deployed) {
                (_, true) => crate::verify::Against::Deployed,
                (Some(z), false) => crate::verify::Against::Zip(z),
                (None, false) => crate::verify::Against::Outputs,
            };
            crate::verify::run(&ws, &cli.global.functions, &against, &reporter)
        }
        Command::Explain => {
            reporter.explain = true;
            build(&cli.global, &reporter).map(|_| ())
        }
        Command::Check => {
            crate::check::run(&cli.global.workspace()?, &cli.global.functions, &reporter)
        }
        Command::Size { top } => {
            let ws = cli.global.workspace()?;
            let cx = BuildContext::for_workspace(&ws, &reporter)?;
            let outcome = pipeline::build_workspace(&cx, &ws, &cli.global.functions)?;
            crate::size::report(&ws, &outcome, &cli.global.functions, top, &reporter)
        }
        Command::Terraform => crate::terraform::run(),
        Command::Watch(args) => {
            #[cfg(not(feature = "aws"))]
            if args.deploy {
                return Err(crate::Error::without_aws(
                    "`lbuild watch --deploy`",
                    ", or watch without --deploy",
                ));
            }
            let options = crate::watch::WatchOptions {
                manifest: cli.global.manifest_path()?,
                poll: args.poll,
                debounce: std::time::Duration::from_millis(args.debounce_ms),
                #[cfg(feature = "aws")]
                deploy: args.deploy_options(),
            };
            crate::watch::run(&options, &reporter)
        }
        Command::Init {
            force,
            workspace,
            template,
            handler,
        } => {
            let path = match &cli.global.manifest {
                Some(p) => p.clone(),
                None => std::env::current_dir()
                    .map_err(crate::Error::io("cannot read", "."))?
                    .join(manifest::MANIFEST_NAME),
            };
            let options = crate::init::InitOptions {
                force,
                workspace,
                template,
                handler,
            };
            let outcome = crate::init::write_manifest(&path, &options)?;
            print_json(&cli.global, &outcome);
            for note in &outcome.notes {
                reporter.info(note);
            }
            reporter.info(if outcome.functions > 1 {
                format!(
                    "wrote {} ({} functions); run `lbuild` to build them all",
                    outcome.manifest.display(),
                    outcome.functions
                )
            } else {
                format!(
                    "wrote {} (handler {}, root {}); run `lbuild` to build",
                    outcome.manifest.display(),
                    outcome.handler,
                    outcome.root
                )
            });
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lbuild", &mut std::io::stdout());
            Ok(())
        }
        Command::Clean => {
            let ws = cli.global.workspace()?;
            crate::clean::clean(&ws.artifacts, &reporter)?;
            let outputs: Vec<&std::path::Path> = ws
                .artifacts
                .iter()
                .map(|p| p.output.path.as_path())
                .collect();
            print_json(
                &cli.global,
                &serde_json::json!({
                    "cleaned": true,
                    "outputs": outputs,
                    "cache_dir": ws.cache_dir,
                }),
            );
            Ok(())
        }
        Command::Gc {
            max_size: Some(size),
            ..
        } => crate::gc::gc_store(crate::store::parse_size(&size)?, &reporter),
        Command::Gc { days, .. } => {
            let ws = cli.global.workspace()?;
            let removed = crate::gc::gc(&ws.artifacts[0], days, &reporter)?;
            print_json(
                &cli.global,
                &serde_json::json!({
                    "removed": removed,
                    "days": days,
                    "cache_dir": ws.cache_dir,
                }),
            );
            Ok(())
        }
        Command::Cache {
            command: CacheCommand::Stats,
        } => crate::stats::store_stats(&reporter),
        Command::Cache {
            command: CacheCommand::Keygen { name, out },
        } => crate::remote::trust::keygen_command(&name, out, &reporter),
        Command::Deploy(args) => deploy(&cli.global, &args, &reporter),
        Command::Invoke(args) => invoke(&cli.global, &args, &reporter),
    }
}

/// `lbuild deploy` in a build without the `aws` feature: says so before
/// building anything.
#[cfg(not(feature = "aws"))]
fn deploy(_: &GlobalArgs, _: &DeployArgs, _: &Reporter) -> crate::Result<()> {
    Err(crate::Error::without_aws("`lbuild deploy`", ""))
}

/// `lbuild deploy`: build what `--function` selects, then deploy its
/// layers (published once per content) and functions (updated only when
/// their CodeSha256 differs).
#[cfg(feature = "aws")]
fn deploy(global: &GlobalArgs, args: &DeployArgs, reporter: &Reporter) -> crate::Result<()> {
    let ws = global.workspace()?;
    let built = built(global, reporter, false)?;
    let opts = args.options().with_manifest(&ws);
    let (functions, layers) = crate::deploy::artifacts_from(&ws, &built, &global.functions, &opts)?;
    let report = crate::deploy::deploy(&functions, &layers, &opts, reporter)?;
    report.print(reporter);
    if args.plan {
        reporter.info("plan only: nothing was changed");
    }
    Ok(())
}

/// `lbuild invoke`: build, then run the handler locally.
fn invoke(global: &GlobalArgs, args: &InvokeArgs, reporter: &Reporter) -> crate::Result<()> {
    use crate::invoke::{self, Invocation, InvokeOptions};
    let ws = global.workspace()?;
    let plan = match (global.functions.as_slice(), ws.single) {
        (_, true) => &ws.artifacts[0],
        ([name], false) => ws.function(name).ok_or_else(|| crate::Error::Input {
            message: format!(
                "no function named {name:?} in {}",
                ws.manifest_path.display()
            ),
            hint: format!(
                "functions defined: {}",
                ws.functions()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?,
        // A workspace of one function (and its layers): that one.
        ([], false) if ws.functions().count() == 1 => {
            ws.functions().next().expect("counted one function")
        }
        _ => {
            return Err(crate::Error::Input {
                message: "this workspace has several functions: say which one to invoke".into(),
                hint: format!(
                    "add --function NAME (one of {})",
                    ws.functions()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    // The manifest's settings, unless the command line says otherwise.
    let mut environment = plan.lambda.environment.clone();
    environment.extend(args.env.iter().cloned());
    let opts = InvokeOptions {
        timeout: std::time::Duration::from_secs(
            args.timeout.unwrap_or(plan.lambda.timeout_s as u64),
        ),
        memory_mb: args.memory.unwrap_or(plan.lambda.memory_mb),
        environment,
    };
    // Cheap failures first: a bad event or no interpreter should not wait
    // for a build.
    let event = invoke::read_event(args.event.as_deref())?;
    let python = invoke::find_interpreter(plan.runtime)?;
    let names = if ws.single {
        Vec::new()
    } else {
        vec![plan.name.clone()]
    };
    let cx = BuildContext::for_workspace(&ws, reporter)?;
    let built = pipeline::build_workspace(&cx, &ws, &names)?;
    // The function's layers in its order: the manifest's own as built,
    // an ARN by its local_layers copy (else named if an import fails).
    let mut layers = Vec::new();
    let mut external = Vec::new();
    let named = match &plan.kind {
        crate::manifest::ArtifactKind::Function { layers } => layers.as_slice(),
        crate::manifest::ArtifactKind::Layer { .. } => &[],
    };
    for entry in named {
        if let Some(l) = ws.layer(entry) {
            let o = built
                .built(&l.name, "layer")
                .ok_or_else(|| crate::Error::Input {
                    message: format!("layer {:?} did not build", l.name),
                    hint: "run `lbuild` to see why".into(),
                })?;
            layers.push(invoke::LocalLayer::Zip(o.zip.clone(), o.sha256.clone()));
        } else if let Some((arn, path)) = plan.lambda.local_layers.iter().find(|(a, _)| a == entry)
        {
            layers.push(invoke::LocalLayer::mapped(arn, path)?);
        } else {
            external.push(entry.clone());
        }
    }
    let outcome = match built.built(&plan.name, "function") {
        Some(o) => o.clone(),
        None => {
            crate::output::print_workspace(&built, reporter);
            return Err(crate::Error::Input {
                message: format!("function {:?} did not build", plan.name),
                hint: "fix the error above".into(),
            });
        }
    };
    if let Some(host) = invoke::host_architecture()
        && host != plan.architecture
    {
        reporter.warn(format!(
            "{} is built for {}; running it on this {} machine works only for pure-Python code",
            plan.name,
            plan.architecture.as_str(),
            host.as_str()
        ));
    }
    let inv = Invocation {
        function: plan.name.clone(),
        zip: outcome.zip.clone(),
        zip_sha256: outcome.sha256.clone(),
        layers,
        handler: plan.handler.clone(),
        runtime: plan.runtime,
        timeout: opts.timeout,
        memory_mb: opts.memory_mb,
        environment: opts.environment,
        pass_env: args.pass_env.clone(),
        event,
        scratch: plan.cache_dir.join("invoke"),
    };
    let result = invoke::run(&inv, &python)?;
    match invoke::outcome_error(&result, &plan.handler, &external) {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

/// With `--json`, the one JSON object a non-build command prints.
fn print_json(global: &GlobalArgs, value: &impl serde::Serialize) {
    if global.json
        && let Ok(doc) = serde_json::to_value(value)
    {
        global.reporter().json(&doc);
    }
}
