//! Command-line interface: clap definitions and dispatch to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::manifest::{self, Workspace};
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
lbuild --function orders    build one function of a workspace (and the layers it uses)\n  \
lbuild size                 where the bytes go, and the headroom under Lambda's limits\n  \
lbuild watch                rebuild on every save\n  \
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
    /// In a workspace, only this function and the layers it uses (repeatable)
    #[arg(long = "function", global = true, value_name = "NAME")]
    pub functions: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the zip (the default command); in a workspace, every function and layer
    Build,
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
    },
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
        Ok(manifest::load_workspace(&self.manifest_path()?)?)
    }
}

/// Builds what `--function` selects and prints it; a failure in any
/// artifact (each reported with its name) makes the command fail.
fn build(global: &GlobalArgs, reporter: &Reporter) -> crate::Result<pipeline::WorkspaceOutcome> {
    let ws = global.workspace()?;
    let outcome = pipeline::build_workspace(&ws, &global.functions, reporter)?;
    if outcome.single {
        // The single form: exactly today's output and error.
        match outcome.artifacts.into_iter().next() {
            Some(pipeline::ArtifactResult::Built(o)) => {
                pipeline::print_outcome(&o, reporter);
                return Ok(pipeline::WorkspaceOutcome {
                    single: true,
                    artifacts: vec![pipeline::ArtifactResult::Built(o)],
                    ms: outcome.ms,
                });
            }
            Some(pipeline::ArtifactResult::Failed { error, .. }) => return Err(error),
            None => unreachable!("a single-function manifest has one artifact"),
        }
    }
    pipeline::print_workspace(&outcome, reporter);
    match outcome.exit_code() {
        Some(code) => Err(crate::Error::ArtifactsFailed {
            failed: outcome.failures(),
            total: outcome.artifacts.len(),
            code,
        }),
        None => Ok(outcome),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> crate::Result<()> {
    let reporter = cli.global.reporter();
    match cli.command.unwrap_or(Command::Build) {
        Command::Build => build(&cli.global, &reporter).map(|_| ()),
        Command::Size { top } => {
            let ws = cli.global.workspace()?;
            let outcome = pipeline::build_workspace(&ws, &cli.global.functions, &reporter)?;
            crate::size::report(&ws, &outcome, &cli.global.functions, top, reporter.mode)
        }
        Command::Terraform => crate::terraform::run(),
        Command::Watch(args) => {
            let options = crate::watch::WatchOptions {
                manifest: cli.global.manifest_path()?,
                poll: args.poll,
                debounce: std::time::Duration::from_millis(args.debounce_ms),
            };
            crate::watch::run(&options, &reporter)
        }
        Command::Init { force } => {
            let cwd = std::env::current_dir().map_err(crate::Error::io("cannot read", "."))?;
            let path = crate::init::write_manifest(&cwd, force)?;
            reporter.info(format!("wrote {}; run `lbuild` to build", path.display()));
            Ok(())
        }
        Command::Clean => {
            let ws = cli.global.workspace()?;
            pipeline::clean(&ws.artifacts, &reporter)
        }
        Command::Gc { days } => {
            let ws = cli.global.workspace()?;
            pipeline::gc(&ws.artifacts[0], days, &reporter).map(|_| ())
        }
    }
}
