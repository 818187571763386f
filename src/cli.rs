//! Command-line interface: clap definitions and dispatch to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::manifest::{self, Plan};
use crate::pipeline;
use crate::report::{Mode, Reporter};

#[derive(Debug, Parser)]
#[command(
    name = "lbuild",
    version,
    about = "Reproducible, incremental deployment zips for Python AWS Lambda functions",
    long_about = "lbuild reads lambda.toml, installs binary wheels for the Lambda target, \
collects the handler, sources and config files, and writes a zip whose bytes \
depend only on those inputs: the same CodeSha256 on every machine.\n\n\
Stages whose inputs did not change are skipped (content hashes kept in .lbuild/).",
    after_help = "Examples:\n  \
lbuild init                 write a commented lambda.toml here\n  \
lbuild                      build dist/NAME.zip (same as `lbuild build`)\n  \
lbuild --json               build and print a JSON summary (sha256, CodeSha256, stages)\n  \
lbuild watch                rebuild on every save\n  \
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
    /// Print nothing but errors and warnings
    #[arg(short, long, global = true, conflicts_with = "json")]
    pub quiet: bool,
    /// Explain each stage key's inputs
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the zip (the default command)
    Build,
    /// Build, then rebuild whenever an input changes
    Watch(WatchArgs),
    /// Write a commented lambda.toml for the current directory
    Init {
        /// Overwrite an existing lambda.toml
        #[arg(long)]
        force: bool,
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
get_remaining_time_in_millis(), and the timeout enforced. The handler's return value is \
printed as JSON on stdout; its prints and logs go to stderr. An exception prints the \
traceback and exits non-zero, so a `No module named x` shows up before a deploy.\n\n\
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
    /// Stop the handler after this many seconds, like the function's timeout
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub timeout: u64,
    /// The memory size the context reports, in MB
    #[arg(long, value_name = "MB", default_value_t = 128)]
    pub memory: u32,
    /// An environment variable for the handler (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
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

    pub fn plan(&self) -> crate::Result<Plan> {
        Ok(manifest::load(&self.manifest_path()?)?)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> crate::Result<()> {
    let reporter = cli.global.reporter();
    match cli.command.unwrap_or(Command::Build) {
        Command::Build => {
            let plan = cli.global.plan()?;
            let outcome = pipeline::build(&plan, &reporter)?;
            pipeline::print_outcome(&outcome, &reporter);
            Ok(())
        }
        Command::Watch(args) => crate::watch::run(&cli.global, &args, &reporter),
        Command::Init { force } => {
            let cwd = std::env::current_dir().map_err(crate::Error::io("cannot read", "."))?;
            let path = crate::init::write_manifest(&cwd, force)?;
            reporter.info(format!("wrote {}; run `lbuild` to build", path.display()));
            Ok(())
        }
        Command::Deploy(args) => deploy(&cli.global, &args, &reporter),
        Command::Invoke(args) => invoke(&cli.global, &args, &reporter),
        Command::Clean => pipeline::clean(&cli.global.plan()?, &reporter),
        Command::Gc { days } => pipeline::gc(&cli.global.plan()?, days, &reporter).map(|_| ()),
    }
}

/// `lbuild deploy`: build, then deploy the one function of the manifest.
fn deploy(global: &GlobalArgs, args: &DeployArgs, reporter: &Reporter) -> crate::Result<()> {
    use crate::deploy::{DeployOptions, FunctionArtifact};
    let plan = global.plan()?;
    let opts = DeployOptions {
        plan: args.plan,
        strict: args.strict,
        s3_bucket: args.s3_bucket.clone(),
        s3_prefix: args.s3_prefix.clone(),
        name_prefix: args.name_prefix.clone(),
        name_suffix: args.name_suffix.clone(),
    };
    let outcome = pipeline::build(&plan, reporter)?;
    reporter.info(format!(
        "built {} ({}, CodeSha256 {})",
        outcome.zip.display(),
        pipeline::human_size(outcome.size),
        outcome.code_sha256
    ));
    let aws_name = opts.aws_name(&plan.name, args.name.as_deref());
    let function = FunctionArtifact::from_build(&plan, &outcome, aws_name);
    let report = crate::deploy::deploy(&[function], &[], &opts, reporter)?;
    report.print(reporter);
    if args.plan {
        reporter.info("plan only: nothing was changed");
    }
    Ok(())
}

/// `lbuild invoke`: build, then run the handler locally.
fn invoke(global: &GlobalArgs, args: &InvokeArgs, reporter: &Reporter) -> crate::Result<()> {
    use crate::invoke::{self, Invocation, InvokeOptions};
    let plan = global.plan()?;
    let opts = InvokeOptions {
        timeout: std::time::Duration::from_secs(args.timeout),
        memory_mb: args.memory,
        environment: args.env.clone(),
    };
    // Cheap failures first: a bad event or no interpreter should not wait
    // for a build.
    let event = invoke::read_event(args.event.as_deref())?;
    let python = invoke::find_interpreter(plan.runtime)?;
    let outcome = pipeline::build(&plan, reporter)?;
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
        layers: Vec::new(),
        handler: plan.handler.clone(),
        runtime: plan.runtime,
        architecture: plan.architecture,
        timeout: opts.timeout,
        memory_mb: opts.memory_mb,
        environment: opts.environment,
        event,
        scratch: plan.cache_dir.join("invoke"),
    };
    let result = invoke::run(&inv, &python)?;
    match invoke::outcome_error(&result, &plan.handler) {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}
