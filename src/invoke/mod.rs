//! `lbuild invoke`: run a built zip's handler on this machine the way Lambda
//! would, to catch "No module named x" before a deploy.
//!
//! Owns the invocation: the interpreter choice (the runtime's Python, never
//! the host's default), the bootstrap that imports the handler with
//! Lambda's `sys.path` order and context object, how its outcome is told
//! apart (a return, an exception, an import failure, leaving the process
//! early, the timeout) and reported. The pieces: `event.rs` (reading and
//! bounding the event), `files.rs` (extracting zips, the runtime's SDK),
//! `environment.rs` (Lambda's variables), `group.rs` (the process group,
//! killed whole at the end). It does not build (the caller does) and needs
//! no network, Docker or AWS API.

mod environment;
mod event;
mod files;
mod group;

use std::ffi::OsString;
use std::io::{Seek, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

pub(crate) use event::{EventProblem, MAX_PAYLOAD};

use crate::manifest::{Architecture, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no Python {version} found to run the {runtime} handler locally")]
    NoInterpreter { version: String, runtime: String },
    #[error(
        "{zip} holds native code for {zip_arch} ({example}), which cannot run on this {host} machine"
    )]
    ForeignNativeCode {
        zip: PathBuf,
        zip_arch: &'static str,
        host: &'static str,
        example: String,
    },
    #[error("cannot extract {zip}: {message}")]
    Extract { zip: PathBuf, message: String },
    /// The user's input (exit 2), whatever the problem.
    #[error("the event {path} {problem}")]
    BadEvent { path: String, problem: EventProblem },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the handler {handler} could not be imported (the error is above)")]
    ImportFailed {
        handler: String,
        /// Layer ARNs the function names that are not here (no
        /// `local_layers` entry): a missing module may come from them.
        external: Vec<String>,
    },
    #[error("local_layers maps {arn} to {}, which {problem}", path.display())]
    LocalLayer {
        arn: String,
        path: PathBuf,
        problem: &'static str,
    },
    #[error("the handler {handler} failed: it raised an exception (the traceback is above)")]
    Raised { handler: String },
    #[error("the handler {handler} failed: its return value is not JSON (the error is above)")]
    NotJson { handler: String },
    #[error(
        "the handler {handler} returned {bytes} bytes of JSON, over Lambda's limit of {MAX_PAYLOAD} bytes (6 MB)"
    )]
    ResponseTooLarge { handler: String, bytes: u64 },
    /// `sys.exit`, `os._exit`, a signal: Lambda's `Runtime.ExitError`.
    #[error(
        "the handler {handler} ended the Python process ({how}) instead of returning; Lambda reports this as Runtime.ExitError"
    )]
    LeftEarly {
        handler: String,
        how: String,
        signal: bool,
    },
    /// Lambda's own words.
    #[error("Task timed out after {secs:.2} seconds")]
    TimedOut { secs: f64 },
    #[error("interrupted by {signal}: the handler and every process it started were stopped")]
    Interrupted { signal: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl InvokeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            InvokeError::NoInterpreter { version, .. } => Some(format!(
                "install Python {version} (put python{version} on PATH, or `uv python install {version}` so `uv python find {version}` sees it)"
            )),
            InvokeError::ForeignNativeCode { .. } => Some(
                "invoke on a machine of the function's architecture, or build for this one (architecture in lambda.toml) to try it here"
                    .into(),
            ),
            InvokeError::BadEvent { problem, .. } => Some(problem.hint()),
            InvokeError::ImportFailed { external, .. } if !external.is_empty() => Some(format!(
                "the missing module may come from {} {}, which lbuild does not have here: map {} to a local copy with local_layers = {{ \"ARN\" = \"path/to/dir-or.zip\" }} in the function's table (`aws lambda get-layer-version-by-arn --arn ARN` gives the zip's download URL); a module a layer provides does not belong in requirements.txt (if the module is not the layer's, it is missing from requirements.txt or [sources] include)",
                if external.len() == 1 { "the layer" } else { "the layers" },
                external.join(", "),
                if external.len() == 1 { "it" } else { "each" },
            )),
            InvokeError::ImportFailed { .. } => Some(
                "Lambda would fail the same way: add the missing distribution to requirements.txt, or the module to [sources] include, and check the handler's module path (boto3, which the runtime provides, comes from this machine's Python when installed there: `python3.X -m pip install boto3`)"
                    .into(),
            ),
            InvokeError::LocalLayer { .. } => Some(
                "give a directory laid out as the layer's zip (python/...) or the layer's zip, relative to lambda.toml".into(),
            ),
            InvokeError::NotJson { .. } => Some(
                "return what json.dumps accepts (dicts, lists, strings, numbers, booleans, None); Lambda reports Runtime.MarshalError"
                    .into(),
            ),
            InvokeError::ResponseTooLarge { .. } => Some(
                "Lambda fails such an invocation: return less, or put the data in S3 and return its key"
                    .into(),
            ),
            InvokeError::LeftEarly { signal: false, .. } => Some(
                "return a value or raise an exception: sys.exit() and os._exit() end the runtime, and Lambda counts the invocation as failed"
                    .into(),
            ),
            InvokeError::LeftEarly { signal: true, .. } => Some(
                "a crash in native code (an extension built for another Python or platform?), or the handler or a process it started sent the signal"
                    .into(),
            ),
            InvokeError::TimedOut { .. } => Some(
                "make the handler faster, or raise --timeout to the function's timeout (Lambda allows up to 900 seconds)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// What `lbuild invoke` takes from the command line (and later the
/// manifest): the function's settings that are not in the zip.
#[derive(Debug, Clone)]
pub(crate) struct InvokeOptions {
    pub timeout: Duration,
    pub memory_mb: u32,
    pub environment: Vec<(String, String)>,
}

impl Default for InvokeOptions {
    /// Lambda's defaults: 3 seconds, 128 MB.
    fn default() -> Self {
        InvokeOptions {
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            environment: Vec::new(),
        }
    }
}

/// The error for an outcome other than `Returned` (`None` for success).
/// `external`: layer ARNs the function names that were not available.
pub(crate) fn outcome_error(
    outcome: &Outcome,
    handler: &str,
    external: &[String],
) -> Option<InvokeError> {
    let handler = handler.to_string();
    Some(match outcome {
        Outcome::Returned => return None,
        Outcome::ImportFailed => InvokeError::ImportFailed {
            handler,
            external: external.to_vec(),
        },
        Outcome::Raised => InvokeError::Raised { handler },
        Outcome::NotJson => InvokeError::NotJson { handler },
        Outcome::ResponseTooLarge(bytes) => InvokeError::ResponseTooLarge {
            handler,
            bytes: *bytes,
        },
        Outcome::LeftEarly(status) => InvokeError::LeftEarly {
            handler,
            how: describe(*status),
            signal: status.signal().is_some(),
        },
        Outcome::TimedOut(d) => InvokeError::TimedOut {
            secs: d.as_secs_f64(),
        },
        Outcome::Interrupted(sig) => InvokeError::Interrupted {
            signal: signal_hook::low_level::signal_name(*sig)
                .map_or_else(|| format!("signal {sig}"), str::to_string),
        },
    })
}

/// "exit status 3", "signal 9 (SIGKILL)".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match signal_hook::low_level::signal_name(sig) {
            Some(name) => format!("signal {sig} ({name})"),
            None => format!("signal {sig}"),
        },
        (None, None) => status.to_string(),
    }
}

/// A layer as `lbuild invoke` has it.
#[derive(Debug, Clone)]
pub(crate) enum LocalLayer {
    /// A zip with its sha256 (a layer of the manifest, or a mapped ARN's zip).
    Zip(PathBuf, String),
    /// A directory laid out as the layer's zip (a mapped ARN's).
    Dir(PathBuf),
}

impl LocalLayer {
    /// What `local_layers` maps `arn` to: a directory as it is, a zip by
    /// its sha256.
    pub(crate) fn mapped(arn: &str, path: &Path) -> Result<LocalLayer, InvokeError> {
        let err = |problem| InvokeError::LocalLayer {
            arn: arn.to_string(),
            path: path.to_path_buf(),
            problem,
        };
        let meta = fs_err::metadata(path).map_err(|_| err("does not exist"))?;
        if meta.is_dir() {
            return Ok(LocalLayer::Dir(path.to_path_buf()));
        }
        // The extraction key: the zip's content, as for built layers.
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut file = fs_err::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut file, &mut buf)? {
                0 => break,
                n => hasher.update(&buf[..n]),
            }
        }
        let sha = crate::entry::hex(&hasher.finalize());
        Ok(LocalLayer::Zip(path.to_path_buf(), sha))
    }
}

/// What one local invocation needs.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub function: String,
    pub zip: PathBuf,
    pub zip_sha256: String,
    /// The function's layers here, in its order.
    pub layers: Vec<LocalLayer>,
    pub handler: String,
    pub runtime: Runtime,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// The manifest's `environment`, then `--env` (the last one wins).
    pub environment: Vec<(String, String)>,
    /// Host variables the handler may see (`--pass-env`).
    pub pass_env: Vec<String>,
    /// The event, as JSON text (see [`read_event`]).
    pub event: String,
    /// Where extracted zips are kept (`.lbuild/invoke/`).
    pub scratch: PathBuf,
}

/// How the handler ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler returned; its value, as JSON, went to stdout.
    Returned,
    ImportFailed,
    /// The handler raised (traceback on stderr).
    Raised,
    NotJson,
    /// The JSON of the return value, in bytes.
    ResponseTooLarge(u64),
    /// The process ended without the bootstrap reporting an outcome.
    LeftEarly(ExitStatus),
    TimedOut(Duration),
    Interrupted(i32),
}

/// Reads an event argument: a file, `-` for stdin, or nothing (`{}`);
/// UTF-8 JSON of at most 6 MB.
pub(crate) fn read_event(arg: Option<&str>) -> Result<String, InvokeError> {
    event::read_event(arg).map_err(|(path, problem)| InvokeError::BadEvent { path, problem })
}

/// The interpreter for `runtime`: `python3.X` on PATH, else what
/// `uv python find 3.X` reports; resolved to the executable itself (not a
/// pyenv shim, which needs the host's environment to find it).
pub(crate) fn find_interpreter(runtime: Runtime) -> Result<PathBuf, InvokeError> {
    let version = runtime.version();
    let name = format!("python{version}");
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(&name);
            if candidate.is_file()
                && let Some(exe) = executable_of(&candidate, &version)
            {
                return Ok(exe);
            }
        }
    }
    let found = Command::new("uv")
        .args(["python", "find", "--no-python-downloads", &version])
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = found
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if path.is_file()
            && let Some(exe) = executable_of(&path, &version)
        {
            return Ok(exe);
        }
    }
    Err(InvokeError::NoInterpreter {
        version,
        runtime: runtime.name(),
    })
}

/// `sys.executable` of `python` if it is Python `version`.
fn executable_of(python: &Path, version: &str) -> Option<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let exe = PathBuf::from(lines.nth(1).unwrap_or_default());
    (out.status.success() && text.lines().next() == Some(version) && exe.is_absolute())
        .then_some(exe)
}

/// The host's architecture, as Lambda names it.
pub(crate) fn host_architecture() -> Option<Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Arm64),
        _ => None,
    }
}

/// Lambda's log stream names this invocation in the context and the
/// environment; a fixed local name, since nothing is logged to CloudWatch.
const LOG_STREAM: &str = "lbuild-invoke";

/// Imports the handler with Lambda's path order and context, runs it once,
/// and records how it ended in the result file (the outcome's tag, then
/// the return value as JSON): an exit status alone cannot tell a return
/// from `sys.exit(0)`, nor an import failure from `os._exit(70)`. The
/// handler's own prints go to stderr, like Lambda's logs. stdin holds one
/// line of settings, then the event.
const BOOTSTRAP: &str = r#"
import json, os, sys, time, traceback, uuid
spec = json.loads(sys.stdin.buffer.readline())
event = sys.stdin.buffer.read()
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)  # the handler's stdin is empty
os.close(null)
for name in spec["unset"]:
    os.environ.pop(name, None)
sys.path[:0] = spec["path"]
sys.path.extend(spec["runtime"])  # /var/runtime: after the code and layers
deadline = time.monotonic() + spec["timeout_s"]

class LambdaContext:
    function_name = spec["function"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:%s:000000000000:function:%s" % (os.environ.get("AWS_REGION", "us-east-1"), spec["function"])
    memory_limit_in_mb = str(spec["memory_mb"])
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/" + spec["function"]
    log_stream_name = spec["log_stream"]
    identity = None
    client_context = None
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.monotonic()) * 1000))

def finish(tag, body=b"", status=1):
    sys.stdout.flush()
    sys.stderr.flush()
    with open(spec["result"], "wb") as f:
        f.write(tag + b"\n" + body)
    # Not a normal exit: threads the handler left running would hold the
    # process until the timeout (Lambda freezes them instead).
    os._exit(status)

sys.stdout = sys.stderr
module_name, _, function_name = spec["handler"].rpartition(".")
try:
    import importlib
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
except Exception as e:
    print("[ERROR] Runtime.ImportModuleError: Unable to import module '%s': %s" % (module_name, e), file=sys.stderr)
    traceback.print_exc()
    finish(b"import")
event = json.loads(event)
try:
    result = handler(event, LambdaContext())
except Exception:
    traceback.print_exc()
    finish(b"raised")
try:
    body = json.dumps(result).encode()
except Exception as e:
    print("[ERROR] Runtime.MarshalError: Unable to marshal response: %s" % e, file=sys.stderr)
    finish(b"not-json")
finish(b"returned", body + b"\n", 0)
"#;

/// Runs the invocation; the handler's result goes to this process's stdout.
///
/// Makes this process a child subreaper and, at the end, kills every child
/// process it did not have before the call (see `group.rs`): meant to be
/// the last thing `lbuild invoke` does.
pub(crate) fn run(inv: &Invocation, python: &Path) -> Result<Outcome, InvokeError> {
    let task = files::extract_once(&inv.zip, &inv.zip_sha256, &inv.scratch)?;
    let mut layer_dirs = Vec::new();
    for layer in &inv.layers {
        layer_dirs.push(match layer {
            LocalLayer::Zip(zip, sha) => files::extract_once(zip, sha, &inv.scratch)?,
            LocalLayer::Dir(dir) => dir.clone(),
        });
    }
    if let Some(host) = host_architecture() {
        for root in std::iter::once(&task).chain(&layer_dirs) {
            if let Some((arch, example)) = files::native_architecture(root)
                && arch != host
            {
                return Err(InvokeError::ForeignNativeCode {
                    zip: inv.zip.clone(),
                    zip_arch: arch.as_str(),
                    host: host.as_str(),
                    example,
                });
            }
        }
    }
    // Lambda's order: the function's code, then each layer's
    // python/lib/python3.X/site-packages and python/.
    let mut path = vec![task.display().to_string()];
    for dir in &layer_dirs {
        let py = dir.join("python");
        path.push(
            py.join("lib")
                .join(inv.runtime.name())
                .join("site-packages")
                .display()
                .to_string(),
        );
        path.push(py.display().to_string());
    }
    let runtime_sdk = files::runtime_sdk(python, &inv.scratch);
    let runtime_dir = match &runtime_sdk {
        Some(dir) => dir.clone(),
        None => {
            let empty = inv.scratch.join("runtime-none");
            fs_err::create_dir_all(&empty)?;
            empty
        }
    };
    let host: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let env = environment::environment(
        &environment::Function {
            name: &inv.function,
            handler: &inv.handler,
            runtime: &inv.runtime.name(),
            memory_mb: inv.memory_mb,
            log_stream: LOG_STREAM,
            environment: &inv.environment,
            pass_env: &inv.pass_env,
        },
        &environment::Places {
            task: &task,
            layers: &layer_dirs,
            runtime_dir: &runtime_dir,
            python,
        },
        &host,
    );
    // Python sets LC_CTYPE when it coerces a C locale (en_US.UTF-8 missing
    // here): the handler should not see a variable nobody gave it.
    let unset: Vec<&str> = ["LC_CTYPE"]
        .into_iter()
        .filter(|k| !env.contains_key(std::ffi::OsStr::new(k)))
        .collect();
    // Private to this invocation (0700), removed when it ends.
    let work = tempfile::Builder::new()
        .prefix(".invoke-")
        .tempdir_in(&inv.scratch)?;
    let result = work.path().join("result");
    let spec = serde_json::json!({
        "path": path,
        "runtime": runtime_sdk.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "handler": inv.handler,
        "function": inv.function,
        "memory_mb": inv.memory_mb,
        "timeout_s": inv.timeout.as_secs_f64(),
        "log_stream": LOG_STREAM,
        "unset": unset,
        "result": result.display().to_string(),
    });
    // The event reaches the bootstrap on stdin, from an unnamed file: no
    // argv size limit, nothing in /proc/PID/cmdline, no pipe to keep fed.
    let mut input = tempfile::tempfile_in(work.path())?;
    writeln!(input, "{spec}")?;
    input.write_all(inv.event.as_bytes())?;
    input.rewind()?;
    let mut cmd = Command::new(python);
    // -I: no user site, no PYTHON* variables, no script directory; -S: not
    // the interpreter's site-packages either. Only the zip and its layers,
    // then the runtime's SDK (and the standard library) are importable, as
    // on Lambda.
    cmd.args(["-I", "-S", "-B", "-c", BOOTSTRAP])
        .current_dir(&task)
        .env_clear()
        .envs(&env)
        .stdin(input)
        // Nothing is meant for stdout before the result: the handler's
        // prints are logs.
        .stdout(std::io::stderr());
    let mut group = group::spawn(&mut cmd).map_err(|source| InvokeError::Spawn {
        program: python.to_path_buf(),
        source,
    })?;
    let ended = group.wait(inv.timeout)?;
    Ok(match ended {
        group::Ended::TimedOut => Outcome::TimedOut(inv.timeout),
        group::Ended::Interrupted(sig) => Outcome::Interrupted(sig),
        group::Ended::Exited(status) => {
            let report = fs_err::read(&result).unwrap_or_default();
            let (tag, body) = match report.iter().position(|&b| b == b'\n') {
                Some(i) => (&report[..i], &report[i + 1..]),
                None => (&report[..], &[][..]),
            };
            match tag {
                b"returned" if status.success() => {
                    let json = body.strip_suffix(b"\n").unwrap_or(body).len() as u64;
                    if json > MAX_PAYLOAD {
                        Outcome::ResponseTooLarge(json)
                    } else {
                        let mut out = std::io::stdout().lock();
                        out.write_all(body)?;
                        out.flush()?;
                        Outcome::Returned
                    }
                }
                b"import" => Outcome::ImportFailed,
                b"raised" => Outcome::Raised,
                b"not-json" => Outcome::NotJson,
                _ => Outcome::LeftEarly(status),
            }
        }
    })
}
