//! Command-line interface: clap definitions and dispatch to the library.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

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
    /// Remove the output zip and the cache (.lbuild/)
    Clean,
    /// Forget cached stages (and installed dependency trees) not used recently
    Gc {
        /// Keep what was used within this many days
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Print a shell completion script (e.g. `lbuild completions bash > ~/.local/share/bash-completion/completions/lbuild`)
    Completions {
        /// bash, zsh, fish, powershell or elvish
        shell: clap_complete::Shell,
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
        Command::Watch(args) => {
            let options = crate::watch::WatchOptions {
                manifest: cli.global.manifest_path()?,
                poll: args.poll,
                debounce: std::time::Duration::from_millis(args.debounce_ms),
            };
            crate::watch::run(&options, &reporter)
        }
        Command::Init { force } => {
            let path = match &cli.global.manifest {
                Some(p) => p.clone(),
                None => std::env::current_dir()
                    .map_err(crate::Error::io("cannot read", "."))?
                    .join(manifest::MANIFEST_NAME),
            };
            let outcome = crate::init::write_manifest(&path, force)?;
            print_json(&cli.global, &outcome);
            for note in &outcome.notes {
                reporter.info(note);
            }
            reporter.info(format!(
                "wrote {} (handler {}, root {}); run `lbuild` to build",
                outcome.manifest.display(),
                outcome.handler,
                outcome.root
            ));
            Ok(())
        }
        Command::Clean => {
            let plan = cli.global.plan()?;
            pipeline::clean(&plan, &reporter)?;
            print_json(
                &cli.global,
                &serde_json::json!({
                    "cleaned": true,
                    "output": plan.output.path,
                    "cache_dir": plan.cache_dir,
                }),
            );
            Ok(())
        }
        Command::Gc { days } => {
            let plan = cli.global.plan()?;
            let removed = pipeline::gc(&plan, days, &reporter)?;
            print_json(
                &cli.global,
                &serde_json::json!({
                    "removed": removed,
                    "days": days,
                    "cache_dir": plan.cache_dir,
                }),
            );
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lbuild", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// With `--json`, the one JSON object a non-build command prints.
fn print_json(global: &GlobalArgs, value: &impl serde::Serialize) {
    if global.json
        && let Ok(text) = serde_json::to_string(value)
    {
        println!("{text}");
    }
}
