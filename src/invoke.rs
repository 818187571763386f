//! `lbuild invoke`: run a built zip's handler on this machine the way Lambda
//! would, to catch "No module named x" before a deploy.
//!
//! Owns extracting the function zip and its layers (once per zip sha256,
//! into the cache), the interpreter choice (the runtime's Python, never the
//! host's default), the bootstrap that imports the handler with Lambda's
//! `sys.path` order and context object, and the timeout. It does not build
//! (the caller does) and needs no network, Docker or AWS API.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    #[error("the event {path} is not valid JSON: {message}")]
    BadEvent { path: String, message: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the handler {handler} could not be imported (the error is above)")]
    ImportFailed { handler: String },
    #[error("the handler {handler} failed ({status}; the traceback is above)")]
    HandlerFailed { handler: String, status: String },
    /// Lambda's own words.
    #[error("Task timed out after {secs:.2} seconds")]
    TimedOut { secs: f64 },
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
            InvokeError::BadEvent { .. } => {
                Some("pass a JSON document with --event FILE, or on stdin with --event -".into())
            }
            InvokeError::ImportFailed { .. } => Some(
                "Lambda would fail the same way: add the missing distribution to requirements.txt, or the module to [sources] include, and check the handler's module path (boto3, which the runtime provides, comes from this machine's Python when installed there: `python3.X -m pip install boto3`)"
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
pub struct InvokeOptions {
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

/// Exit status of the bootstrap when the handler cannot be imported.
pub const IMPORT_FAILED: i32 = 70;

/// The error for an outcome other than `Returned` (`None` for success).
pub fn outcome_error(outcome: &Outcome, handler: &str) -> Option<InvokeError> {
    match outcome {
        Outcome::Returned => None,
        Outcome::Failed(status) if status.code() == Some(IMPORT_FAILED) => {
            Some(InvokeError::ImportFailed {
                handler: handler.to_string(),
            })
        }
        Outcome::Failed(status) => Some(InvokeError::HandlerFailed {
            handler: handler.to_string(),
            status: status.to_string(),
        }),
        Outcome::TimedOut(d) => Some(InvokeError::TimedOut {
            secs: d.as_secs_f64(),
        }),
    }
}

/// What one local invocation needs.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub zip: PathBuf,
    pub zip_sha256: String,
    /// Layer zips with their sha256, in the function's order.
    pub layers: Vec<(PathBuf, String)>,
    pub handler: String,
    pub runtime: Runtime,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub environment: Vec<(String, String)>,
    /// The event, as JSON text.
    pub event: String,
    /// Where extracted zips are kept (`.lbuild/invoke/`).
    pub scratch: PathBuf,
}

/// How the handler ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handler returned; its value, as JSON, went to stdout.
    Returned,
    /// The handler raised (traceback on stderr) or the process failed.
    Failed(ExitStatus),
    TimedOut(Duration),
}

/// Reads an event argument: a file, `-` for stdin, or nothing (`{}`).
pub fn read_event(arg: Option<&str>) -> Result<String, InvokeError> {
    let (text, path) = match arg {
        None => return Ok("{}".into()),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            (s, "(stdin)".to_string())
        }
        Some(p) => (fs_err::read_to_string(p)?, p.to_string()),
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| InvokeError::BadEvent {
        path,
        message: e.to_string(),
    })?;
    Ok(text)
}

/// The interpreter for `runtime`: `python3.X` on PATH, else what
/// `uv python find 3.X` reports.
pub fn find_interpreter(runtime: Runtime) -> Result<PathBuf, InvokeError> {
    let version = runtime.version();
    let name = format!("python{version}");
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(&name);
            if candidate.is_file() && reports_version(&candidate, &version) {
                return Ok(candidate);
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
        if path.is_file() && reports_version(&path, &version) {
            return Ok(path);
        }
    }
    Err(InvokeError::NoInterpreter {
        version,
        runtime: runtime.name(),
    })
}

fn reports_version(python: &Path, version: &str) -> bool {
    Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == version)
}

/// The host's architecture, as Lambda names it.
pub fn host_architecture() -> Option<Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Arm64),
        _ => None,
    }
}

/// Extracts `zip` into `scratch/SHA256/` once; later calls reuse it.
fn extract_once(zip: &Path, sha256: &str, scratch: &Path) -> Result<PathBuf, InvokeError> {
    let dest = scratch.join(sha256);
    if dest.join(".complete").is_file() {
        return Ok(dest);
    }
    let err = |message: String| InvokeError::Extract {
        zip: zip.to_path_buf(),
        message,
    };
    fs_err::create_dir_all(scratch)?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(scratch)?;
    let file = fs_err::File::open(zip)?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| err(e.to_string()))?;
    // `extract` refuses names that would leave the directory.
    archive
        .extract(tmp.path())
        .map_err(|e| err(e.to_string()))?;
    fs_err::File::create(tmp.path().join(".complete"))?;
    let tmp = tmp.keep();
    match fs_err::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another invoke extracted the same zip meanwhile.
        Err(_) if dest.join(".complete").is_file() => {
            let _ = fs_err::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(e.into()),
    }
}

/// Native code in an extracted tree, with the architecture it is for.
fn native_architecture(root: &Path) -> Option<(Architecture, String)> {
    for entry in walkdir::WalkDir::new(root).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || !(name.ends_with(".so") || name.contains(".so.")) {
            continue;
        }
        let mut head = [0u8; 20];
        let Ok(mut f) = std::fs::File::open(entry.path()) else {
            continue;
        };
        if f.read_exact(&mut head).is_err() || &head[..4] != b"\x7fELF" {
            continue;
        }
        // e_machine, little-endian: 0x3e x86-64, 0xb7 AArch64.
        let machine = u16::from_le_bytes([head[18], head[19]]);
        let arch = match machine {
            0x3e => Architecture::X86_64,
            0xb7 => Architecture::Arm64,
            _ => continue,
        };
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .display()
            .to_string();
        return Some((arch, rel));
    }
    None
}

/// Imports the handler with Lambda's path order and context, runs it once,
/// and prints its return value as JSON on the real stdout (the handler's
/// own prints go to stderr, like Lambda's logs).
const BOOTSTRAP: &str = r#"
import json, os, sys, time, traceback, uuid
spec = json.loads(sys.argv[1])
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
    log_stream_name = "lbuild-invoke"
    identity = None
    client_context = None
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.monotonic()) * 1000))

out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
module_name, _, function_name = spec["handler"].rpartition(".")
try:
    import importlib
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
except Exception as e:
    print("[ERROR] Runtime.ImportModuleError: Unable to import module '%s': %s" % (module_name, e), file=sys.stderr)
    traceback.print_exc()
    sys.exit(70)  # IMPORT_FAILED
event = json.loads(spec["event"])
try:
    result = handler(event, LambdaContext())
except Exception:
    traceback.print_exc()
    sys.exit(1)
out.write(json.dumps(result) + "\n")
out.flush()
"#;

/// What Lambda's Python runtimes put on `sys.path` after the function's
/// code and layers (`/var/runtime`): the AWS SDK and what it imports.
const RUNTIME_PACKAGES: &[&str] = &[
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "urllib3",
    "six",
];

/// Prints, as JSON, where `python` (with its site-packages) finds each of
/// the runtime's packages: a package's directory or a module's file.
const FIND_RUNTIME_PACKAGES: &str = r#"
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is None:
        continue
    if spec.submodule_search_locations:
        found[name] = list(spec.submodule_search_locations)[0]
    elif spec.origin and spec.origin.endswith(".py"):
        found[name] = spec.origin
print(json.dumps(found, sort_keys=True))
"#;

/// A directory holding only the runtime's packages (boto3 and its
/// dependencies), linked from `python`'s own site-packages when installed
/// there; `None` when boto3 is not. The rest of the machine's packages stay
/// out of reach, as on Lambda. Kept per set of paths under `scratch`.
fn runtime_sdk(python: &Path, scratch: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args(["-I", "-B", "-c", FIND_RUNTIME_PACKAGES])
        .args(RUNTIME_PACKAGES)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let found: std::collections::BTreeMap<String, PathBuf> =
        serde_json::from_slice(&out.stdout).ok()?;
    if !found.contains_key("boto3") {
        return None;
    }
    let id = blake3::hash(&out.stdout).to_hex();
    let dir = scratch.join(format!("runtime-sdk-{}", &id[..16]));
    if dir.is_dir() {
        return Some(dir);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".runtime-sdk-")
        .tempdir_in(scratch)
        .ok()?;
    for (name, target) in &found {
        let link = match target.extension() {
            Some(ext) if target.is_file() => tmp.path().join(name).with_extension(ext),
            _ => tmp.path().join(name),
        };
        std::os::unix::fs::symlink(target, link).ok()?;
    }
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Some(dir),
        // Another invoke made it meanwhile: theirs is as good.
        Err(_) => {
            let _ = std::fs::remove_dir_all(&tmp);
            dir.is_dir().then_some(dir)
        }
    }
}

/// Runs the invocation; the handler's result goes to this process's stdout.
pub fn run(inv: &Invocation, python: &Path) -> Result<Outcome, InvokeError> {
    let task = extract_once(&inv.zip, &inv.zip_sha256, &inv.scratch)?;
    let mut layer_dirs = Vec::new();
    for (zip, sha) in &inv.layers {
        layer_dirs.push(extract_once(zip, sha, &inv.scratch)?);
    }
    if let Some(host) = host_architecture() {
        for root in std::iter::once(&task).chain(&layer_dirs) {
            if let Some((arch, example)) = native_architecture(root)
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
    let runtime_sdk = runtime_sdk(python, &inv.scratch);
    let spec = serde_json::json!({
        "path": path,
        "runtime": runtime_sdk.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "handler": inv.handler,
        "function": inv.function,
        "memory_mb": inv.memory_mb,
        "timeout_s": inv.timeout.as_secs_f64(),
        "event": inv.event,
    });
    let mut cmd = Command::new(python);
    // -I: no user site, no PYTHON* variables, no script directory; -S: not
    // the interpreter's site-packages either. Only the zip and its layers,
    // then the runtime's SDK (and the standard library) are importable, as
    // on Lambda.
    cmd.args(["-I", "-S", "-B", "-c", BOOTSTRAP])
        .arg(spec.to_string())
        .current_dir(&task)
        .env("LAMBDA_TASK_ROOT", &task)
        .env("AWS_LAMBDA_FUNCTION_NAME", &inv.function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", inv.memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_EXECUTION_ENV",
            format!("AWS_Lambda_{}", inv.runtime.name()),
        )
        .env("_HANDLER", &inv.handler)
        .envs(inv.environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let mut child = cmd.spawn().map_err(|source| InvokeError::Spawn {
        program: python.to_path_buf(),
        source,
    })?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            std::io::stdout().flush()?;
            return Ok(if status.success() {
                Outcome::Returned
            } else {
                Outcome::Failed(status)
            });
        }
        if started.elapsed() > inv.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::TimedOut(inv.timeout));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_must_be_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = read_event(p.to_str()).unwrap_err();
        assert!(matches!(e, InvokeError::BadEvent { .. }), "{e}");
        std::fs::write(&p, r#"{"a": 1}"#).unwrap();
        assert_eq!(read_event(p.to_str()).unwrap(), r#"{"a": 1}"#);
        assert_eq!(read_event(None).unwrap(), "{}");
    }
}
