//! The two installers lbuild drives — uv and `python3 -m pip` — and the
//! Lambda target they install for.
//!
//! Owns: finding an installer and its version (part of the deps key), the
//! platform tags for a runtime's glibc (pip needs every older manylinux tag
//! spelled out; uv takes one `ARCH-manylinux_2_N` name), running the
//! install with a spinner showing the installer's current line, and turning
//! a failed install into an error that names the package and the target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::DepsError;
use crate::cache::Cache;
use crate::manifest::{Architecture, InstallerChoice, Runtime};
use crate::report::Reporter;

/// uv's environment variables that change what it installs (index, then
/// resolution settings).
pub const UV_KEYED_ENV: &[&str] = &[
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_EXCLUDE_NEWER",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_INDEX_STRATEGY",
];

/// pip's environment variables that change what it installs.
pub const PIP_KEYED_ENV: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_CONSTRAINT",
    "PIP_PRE",
    "PIP_UPGRADE_STRATEGY",
];

/// The cache "stage" under which `uv --version` answers are remembered.
const UV_VERSION_MEMO: &str = "uv-version";

/// Identifies one installed binary: its canonical path and stat data.
/// None for a script (a version manager's shim, say) or a binary under
/// another name than uv's (mise's shims are links to mise): their stat
/// does not change when the uv they run is upgraded.
fn binary_fingerprint(program: &Path) -> Option<crate::entry::Hash> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let real = program.canonicalize().ok()?;
    if !real
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("uv"))
    {
        return None;
    }
    let mut magic = [0u8; 2];
    std::fs::File::open(&real)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if &magic == b"#!" {
        return None;
    }
    let m = fs_err::metadata(&real).ok()?;
    let text = format!(
        "{}\n{} {} {} {} {}",
        real.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.ctime_nsec()
    );
    Some(blake3::hash(text.as_bytes()))
}

/// Where and for what the wheels must run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub runtime: Runtime,
    pub arch: Architecture,
}

/// The manylinux_2_N levels uv's `--python-platform` accepts (uv 0.13:
/// `manylinux2014` = 2_17, then 2_28 and 2_31 to 2_40).
const UV_GLIBC_LEVELS: &[u32] = &[17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];

impl Target {
    pub(crate) fn glibc_minor(self) -> u32 {
        self.runtime.glibc().1
    }

    /// "python3.12 x86_64 manylinux_2_34"
    pub(crate) fn describe(self) -> String {
        let (major, minor) = self.runtime.glibc();
        format!(
            "{} {} manylinux_{major}_{minor}",
            self.runtime.name(),
            self.arch.as_str()
        )
    }

    /// Every platform tag a wheel for this target may carry, best first,
    /// as `packaging.tags` lists them for a glibc: `manylinux_2_N` from the
    /// runtime's glibc down to the oldest for the machine, with the legacy
    /// aliases (manylinux2014 = 2_17, manylinux2010 = 2_12, manylinux1 =
    /// 2_5) next to their level. pip (23.x at least) does not expand
    /// `--platform manylinux_2_34_x86_64` to older levels by itself: given
    /// only that tag it refuses a manylinux2014 wheel.
    pub(crate) fn pip_platforms(self) -> Vec<String> {
        let m = self.arch.manylinux_machine();
        let oldest = match self.arch {
            Architecture::X86_64 => 5,
            Architecture::Arm64 => 17,
        };
        let mut out = Vec::new();
        for n in (oldest..=self.glibc_minor()).rev() {
            out.push(format!("manylinux_2_{n}_{m}"));
            match n {
                17 => out.push(format!("manylinux2014_{m}")),
                12 => out.push(format!("manylinux2010_{m}")),
                5 => out.push(format!("manylinux1_{m}")),
                _ => {}
            }
        }
        out
    }

    /// uv's `--python-platform`: the highest level uv knows that the
    /// runtime's glibc satisfies.
    pub(crate) fn uv_platform(self) -> String {
        format!(
            "{}-manylinux_2_{}",
            self.arch.manylinux_machine(),
            self.uv_level()
        )
    }

    fn uv_level(self) -> u32 {
        UV_GLIBC_LEVELS
            .iter()
            .copied()
            .filter(|l| *l <= self.glibc_minor())
            .max()
            .unwrap_or(17)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Uv,
    Pip,
}

/// A working installer, found on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Installer {
    pub kind: Kind,
    program: PathBuf,
    /// "uv 0.13.9 (x86_64-unknown-linux-gnu)" or "pip 23.2.1 (python 3.11)".
    pub version: String,
    /// For pip: the `X.Y` of the python3 that runs it.
    pub host_python: Option<String>,
}

/// The first executable `name` on PATH.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            fs_err::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

const UV_HINT: &str = "install uv with `python3 -m pip install uv` (or see https://docs.astral.sh/uv/getting-started/installation/), or set installer = \"pip\" (or \"auto\") in [dependencies]";
const PIP_HINT: &str = "install pip for python3 (`python3 -m ensurepip --upgrade`, or your system's python3-pip package), or install uv and set installer = \"uv\" (or \"auto\") in [dependencies]";

/// Why uv cannot be used.
#[derive(Debug)]
enum UvProblem {
    /// Not on PATH: `installer = "auto"` quietly takes pip, as documented.
    Missing(String),
    /// On PATH but failing here (a version manager's shim whose version
    /// has no uv, say): `auto` still takes pip, but says so and why.
    Failing { program: PathBuf, reason: String },
}

impl UvProblem {
    fn reason(&self) -> String {
        match self {
            UvProblem::Missing(r) | UvProblem::Failing { reason: r, .. } => r.clone(),
        }
    }
}

/// Picks the installer `choice` asks for. Both are probed in `cwd` (the
/// project's directory, where they will run): a version manager's shim
/// picks its program by the directory's `.python-version` or
/// `.tool-versions`.
pub(crate) fn detect(
    choice: InstallerChoice,
    cache: &Cache,
    cwd: &Path,
    reporter: &Reporter,
) -> Result<Installer, DepsError> {
    let uv = || uv(cache, cwd, reporter);
    match choice {
        InstallerChoice::Uv => uv().map_err(|problem| DepsError::InstallerMissing {
            installer: "uv",
            reason: problem.reason(),
            hint: UV_HINT,
        }),
        InstallerChoice::Pip => pip(cwd).map_err(|reason| DepsError::InstallerMissing {
            installer: "pip",
            reason,
            hint: PIP_HINT,
        }),
        InstallerChoice::Auto => uv().or_else(|uv_problem| {
            let pip = pip(cwd).map_err(|pip_reason| DepsError::InstallerMissing {
                installer: "uv or pip",
                reason: format!("{}; {pip_reason}", uv_problem.reason()),
                hint: "install uv (`python3 -m pip install uv`, much faster) or pip for python3",
            })?;
            if let UvProblem::Failing { program, reason } = &uv_problem {
                reporter.warn(format!(
                    "installing with pip, not uv: {reason}; fix {} for this directory (e.g. install uv for the Python its .python-version names), or set installer = \"pip\" in [dependencies] to use pip without this warning",
                    program.display()
                ));
            }
            Ok(pip)
        }),
    }
}

/// The cache "stage" under which the version a shim's uv gave is
/// remembered (see [`ShimMemo`]).
const UV_SHIM_MEMO: &str = "uv-shim-version";

/// How long a shim's answer is trusted when the real binary behind it
/// could not be found (no `pyenv which` / `asdf which` / `mise which`):
/// an upgrade of uv behind such a shim reaches the key within this time.
const SHIM_MEMO_SECS: u64 = 3600;

/// What a shim's uv said, remembered under [`shim_key`], with the real
/// binary it runs (when its version manager says) so that an upgrade of
/// that binary is noticed by its stat.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ShimMemo {
    version: String,
    /// The binary behind the shim and its [`binary_fingerprint`] (hex).
    real: Option<(PathBuf, String)>,
    /// Unix seconds when uv was asked.
    at: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A small file's bytes (a version file), or nothing.
fn small_file(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Version managers' environment variables that choose the program a shim
/// runs.
const SHIM_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "PYENV_VERSION",
    "PYENV_ROOT",
    "PYENV_DIR",
    "ASDF_PYTHON_VERSION",
    "ASDF_UV_VERSION",
    "ASDF_DATA_DIR",
    "ASDF_DEFAULT_TOOL_VERSIONS_FILENAME",
    "MISE_PYTHON_VERSION",
    "MISE_UV_VERSION",
    "MISE_ENV",
];

/// Version files shims read, the nearest of each from `cwd` upwards.
const SHIM_FILES: &[&str] = &[
    ".python-version",
    ".tool-versions",
    "mise.toml",
    ".mise.toml",
    "mise.local.toml",
    ".mise.local.toml",
];

/// What decides which uv the shim `program` runs in `cwd`, as far as
/// lbuild can see without running it: the shim itself (path and stat),
/// the version managers' variables, and the nearest version files from
/// `cwd` up (with the global ones of pyenv and asdf). A record under this
/// key is checked further by [`ShimMemo`] (the real binary's stat, or its
/// age).
fn shim_key(program: &Path, real: &Path, cwd: &Path) -> Option<crate::entry::Hash> {
    use std::os::unix::fs::MetadataExt;
    let m = fs_err::metadata(real).ok()?;
    let mut h = blake3::Hasher::new();
    let mut add = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    add("shim", program.as_os_str().as_encoded_bytes());
    add("real", real.as_os_str().as_encoded_bytes());
    let stat = format!(
        "{} {} {} {} {}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.ctime_nsec()
    );
    add("stat", stat.as_bytes());
    for var in SHIM_ENV {
        if let Some(v) = std::env::var_os(var) {
            add(var, v.as_encoded_bytes());
        }
    }
    for name in SHIM_FILES {
        if let Some(file) = cwd.ancestors().map(|d| d.join(name)).find(|f| f.is_file()) {
            add(
                &file.to_string_lossy(),
                &small_file(&file).unwrap_or_default(),
            );
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        let pyenv_root = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".pyenv"));
        for global in [pyenv_root.join("version"), home.join(".tool-versions")] {
            if let Some(bytes) = small_file(&global) {
                add(&global.to_string_lossy(), &bytes);
            }
        }
    }
    Some(h.finalize())
}

/// The binary a shim runs in `cwd`, asked of its version manager (`pyenv
/// which uv`, `asdf which uv`, `mise which uv`), if it is one lbuild knows
/// and the answer is a binary.
fn shim_target(real: &Path, cwd: &Path) -> Option<PathBuf> {
    let text = small_file(real).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let is_named = |n: &str| real.file_name().is_some_and(|f| f == n);
    let manager = if is_named("mise") {
        real.to_path_buf()
    } else if text.starts_with("#!") && text.contains("pyenv") {
        // pyenv's shims run `exec "PYENV_ROOT/libexec/pyenv" exec ...`.
        text.split('"')
            .find(|w| w.starts_with('/') && w.ends_with("/pyenv"))
            .map(PathBuf::from)
            .or_else(|| find_on_path("pyenv"))?
    } else if text.starts_with("#!") && text.contains("asdf") {
        find_on_path("asdf")?
    } else {
        return None;
    };
    let out = Command::new(manager)
        .args(["which", "uv"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().next()?.trim());
    (out.status.success() && path.is_absolute() && binary_fingerprint(&path).is_some())
        .then_some(path)
}

/// `s` with control characters escaped, for text another program wrote
/// that reaches the terminal; lines joined with " / ".
fn escape_controls(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    crate::sanitize::escape_controls(&joined)
}

/// `uv --version` run in `cwd`.
fn ask_uv_version(program: &Path, cwd: &Path) -> Result<String, UvProblem> {
    let out = Command::new(program)
        .arg("--version")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| UvProblem::Failing {
            program: program.to_path_buf(),
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || !version.starts_with("uv ") {
        let said = escape_controls(&String::from_utf8_lossy(&out.stderr));
        return Err(UvProblem::Failing {
            program: program.to_path_buf(),
            reason: format!(
                "`{} --version` failed in {} ({}){}",
                program.display(),
                cwd.display(),
                out.status
                    .code()
                    .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ),
        });
    }
    Ok(escape_controls(&version))
}

fn uv(cache: &Cache, cwd: &Path, reporter: &Reporter) -> Result<Installer, UvProblem> {
    let program = find_on_path("uv").ok_or(UvProblem::Missing("uv is not on PATH".into()))?;
    let found = |version| {
        Ok(Installer {
            kind: Kind::Uv,
            program: program.clone(),
            version,
            host_python: None,
        })
    };
    // `uv --version` costs ~50 ms (~150 ms through a shim), most of a
    // no-op build: remember the answer for this exact binary (an upgrade
    // replaces the file, so its stat changes and uv is asked again).
    if let Some(k) = binary_fingerprint(&program) {
        if let Some(version) = cache.stage_output(UV_VERSION_MEMO, &k).ok().flatten() {
            return found(version);
        }
        let version = ask_uv_version(&program, cwd)?;
        cache.record_stage(UV_VERSION_MEMO, &k, &version);
        return found(version);
    }
    // A shim (a script, or a version manager's binary under uv's name):
    // its own stat does not change when the uv it runs does. Remembered
    // under what chooses that uv, checked by the real binary's stat when
    // the version manager names it, else for an hour.
    let real = program.canonicalize().unwrap_or_else(|_| program.clone());
    let key = shim_key(&program, &real, cwd);
    let memo = key
        .as_ref()
        .and_then(|k| cache.stage_output(UV_SHIM_MEMO, k).ok().flatten())
        .and_then(|s| serde_json::from_str::<ShimMemo>(&s).ok());
    if let Some(m) = memo {
        let fresh = match &m.real {
            Some((path, fp)) => {
                binary_fingerprint(path).is_some_and(|now| now.to_hex().as_str() == fp)
            }
            None => now_s().abs_diff(m.at) < SHIM_MEMO_SECS,
        };
        if fresh {
            return found(m.version);
        }
    }
    // Asked in parallel: the version (which also shows the shim works
    // here) and the binary behind the shim.
    let (version, target) = std::thread::scope(|s| {
        let target = s.spawn(|| shim_target(&real, cwd));
        let version = ask_uv_version(&program, cwd);
        (version, target.join().ok().flatten())
    });
    let version = version?;
    let real_fp =
        target.and_then(|t| binary_fingerprint(&t).map(|fp| (t, fp.to_hex().to_string())));
    if real_fp.is_none() {
        reporter.detail(format!(
            "{} is a shim lbuild cannot see through: uv is asked for its version again after an hour or when a version file changes; put the real uv binary first on PATH to skip that",
            program.display()
        ));
    }
    if let Some(k) = &key {
        let memo = ShimMemo {
            version: version.clone(),
            real: real_fp,
            at: now_s(),
        };
        cache.record_stage(
            UV_SHIM_MEMO,
            k,
            &serde_json::to_string(&memo).unwrap_or_default(),
        );
    }
    found(version)
}

fn pip(cwd: &Path) -> Result<Installer, String> {
    let program = find_on_path("python3").ok_or("python3 is not on PATH")?;
    // What `python3 -m pip --version` says, minus pip's absolute path (the
    // machine's, not part of what pip does) and about 250 ms: every build
    // asks, cached or not, and importing only `pip/__init__.py` is cheap.
    let out = Command::new(&program)
        .args([
            "-c",
            "import sys, pip; print('pip', pip.__version__, '%d.%d' % sys.version_info[:2])",
        ])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let [_, version, python] = words[..] else {
        return Err(format!(
            "pip is not importable by {}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        ));
    };
    if !out.status.success() || words[0] != "pip" {
        return Err(format!(
            "cannot ask {} for pip's version",
            program.display()
        ));
    }
    Ok(Installer {
        kind: Kind::Pip,
        program,
        version: format!("pip {version} (python {python})"),
        host_python: Some(python.to_string()),
    })
}

impl Installer {
    pub(crate) fn name(&self) -> &'static str {
        match self.kind {
            Kind::Uv => "uv",
            Kind::Pip => "pip",
        }
    }

    /// The environment variables through which this installer takes index
    /// and resolution options (they change what gets installed, so they
    /// join the key).
    pub(crate) fn index_env_vars(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Uv => UV_KEYED_ENV,
            Kind::Pip => PIP_KEYED_ENV,
        }
    }

    /// The full command line for installing `requirements` into `dir`.
    pub(crate) fn command(
        &self,
        target: Target,
        requirements: &Path,
        index_args: &[String],
        dir: &Path,
    ) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.kind {
            Kind::Uv => {
                cmd.args(["pip", "install", "--target"])
                    .arg(dir)
                    .args(["--python-platform", &target.uv_platform()])
                    .args(["--python-version", &target.runtime.version()])
                    .args(["--only-binary", ":all:"])
                    .arg("--no-installer-metadata")
                    .arg("--no-compile-bytecode")
                    // Own copies: nothing in the tree is a hard link into
                    // uv's cache that a later uv run could touch.
                    .args(["--link-mode", "copy"]);
            }
            Kind::Pip => {
                cmd.args(["-m", "pip", "install", "--target"]).arg(dir);
                for p in target.pip_platforms() {
                    cmd.args(["--platform", &p]);
                }
                cmd.args(["--implementation", "cp"])
                    .args(["--python-version", &target.runtime.version()])
                    .arg("--only-binary=:all:")
                    .arg("--no-compile")
                    .arg("--no-warn-script-location")
                    .arg("--disable-pip-version-check")
                    .arg("--no-input");
            }
        }
        cmd.arg("-r").arg(requirements).args(index_args);
        cmd.env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .env("NO_COLOR", "1")
            // Settings that contradict --target.
            .env_remove("PIP_USER")
            .env_remove("PIP_PREFIX")
            .env_remove("PIP_TARGET")
            .env_remove("PIP_REQUIRE_VIRTUALENV")
            .env_remove("PIP_NO_COMPILE");
        cmd
    }

    /// The command that builds the package in `src` (a directory or an
    /// sdist) into one wheel in `out`, with its own build backend (from the
    /// same indexes as the install).
    pub(crate) fn build_wheel_command(
        &self,
        src: &Path,
        out: &Path,
        index_args: &[String],
    ) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.kind {
            Kind::Uv => {
                cmd.args(["build", "--wheel", "--out-dir"]).arg(out);
            }
            Kind::Pip => {
                cmd.args(["-m", "pip", "wheel", "--no-deps", "--wheel-dir"])
                    .arg(out)
                    .arg("--disable-pip-version-check")
                    .arg("--no-input");
            }
        }
        cmd.args(index_args).arg(src);
        cmd.env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs the install; on failure the error names the package (best
    /// effort) and the target, with the installer's own message.
    pub(crate) fn install(
        &self,
        target: Target,
        requirements: &Path,
        index_args: &[String],
        dir: &Path,
        cwd: &Path,
        reporter: &Reporter,
    ) -> Result<(), DepsError> {
        let mut cmd = self.command(target, requirements, index_args, dir);
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spinner = reporter.spinner(&format!("installing dependencies ({})", self.name()));
        let mut child = cmd.spawn().map_err(|e| DepsError::InstallerMissing {
            installer: self.name(),
            reason: format!("cannot run {}: {e}", self.program.display()),
            hint: if self.kind == Kind::Uv {
                UV_HINT
            } else {
                PIP_HINT
            },
        })?;
        let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i == 1, s)))
        .map(|(is_err, s)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
        drop(tx);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        for (is_err, line) in rx {
            let shown = line.trim();
            if !shown.is_empty() {
                spinner.set_message(shown.chars().take(120).collect::<String>());
            }
            if is_err {
                stderr.push(line);
            } else {
                stdout.push(line);
            }
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait().map_err(|e| DepsError::InstallerMissing {
            installer: self.name(),
            reason: format!("lost the installer process: {e}"),
            hint: "run the build again",
        })?;
        drop(spinner);
        if status.success() {
            return Ok(());
        }
        // The installer's own words: stderr, else (old pips) stdout.
        let lines = if stderr.iter().any(|l| !l.trim().is_empty()) {
            stderr
        } else {
            stdout
        };
        let lines: Vec<&String> = lines
            .iter()
            .filter(|l| !l.contains("Running pip as the 'root' user"))
            .collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        let output: String = tail.iter().map(|l| format!("  | {l}\n")).collect();
        let joined: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let shown = requirements.strip_prefix(cwd).unwrap_or(requirements);
        Err(DepsError::Install(Box::new(super::InstallFailure {
            installer: self.version.clone(),
            what: culprit(&joined).map_or_else(
                || format!("the requirements in {}", shown.display()),
                |p| format!("{p} (from {})", shown.display()),
            ),
            target: target.describe(),
            status: status
                .code()
                .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
            output,
            hint: self.hint(target, &joined),
        })))
    }

    /// No wheel fits the target: name the package and the target, and
    /// give both real fixes (a version with a wheel for it, or a wheel
    /// built for it and found through `find_links`).
    fn no_wheel_hint(&self, target: Target, output: &str) -> String {
        let package = culprit(output).map(|c| requirement_name(&c).to_string());
        let (it, named) = match &package {
            Some(p) => (format!("{p:?}"), p.as_str()),
            None => ("the package".to_string(), "PACKAGE"),
        };
        let mut hint = format!(
            "no binary wheel of {it} fits {target} on the indexes searched, and lbuild never builds from source. Either pin a version of {it} that publishes a wheel for this target (tags cp3{minor} or abi3/py3, manylinux_2_N with N <= {glibc}, {machine}), or build the wheel yourself for this target (e.g. `pip wheel --no-deps {named}==VERSION -w wheels/` in a {machine} manylinux container for {runtime}) and add that directory to find_links in lambda.toml",
            target = target.describe(),
            minor = target.runtime.minor,
            glibc = target.glibc_minor(),
            machine = target.arch.manylinux_machine(),
            runtime = target.runtime.name(),
        );
        if self.kind == Kind::Pip {
            hint.push_str(" (pip says the same when the name is misspelt or the index cannot be reached: check those too)");
        }
        hint
    }

    fn hint(&self, target: Target, output: &str) -> String {
        let has = |needles: &[&str]| needles.iter().any(|n| output.contains(n));
        let mut hint = if has(&["Hash mismatch", "DO NOT MATCH THE HASHES"]) {
            "the wheel downloaded is not the one the lock recorded (expected and computed hashes above): if the package was rebuilt or re-published on purpose, re-lock (`uv lock`, `poetry lock`) and review the change; otherwise the index or a proxy serves a different file, so do not deploy it".to_string()
        } else if has(&[
            "Failed to fetch",
            "Could not fetch URL",
            "Connection refused",
            "connect error",
            "Network is unreachable",
            "Temporary failure in name resolution",
            "NewConnectionError",
            "dns error",
        ]) {
            "the package index could not be reached: check the network or proxy, and index_url / find_links in lambda.toml or requirements.txt".to_string()
        } else if has(&[
            "not found in the package registry",
            "not found in the provided package locations",
        ]) {
            "the index has no package of that name: check its spelling in requirements.txt"
                .to_string()
        } else if has(&[
            "has no wheels with a matching",
            "has no usable wheels",
            "building from source is disabled",
            "Building source distributions is disabled",
            "matching platform tag",
            "Could not find a version that satisfies",
            "No matching distribution",
        ]) {
            self.no_wheel_hint(target, output)
        } else if has(&[
            "conflict",
            "No solution found",
            "unsatisfiable",
            "ResolutionImpossible",
        ]) {
            "the requirements cannot all be satisfied together: adjust the pins named above"
                .to_string()
        } else {
            "see the installer's message above".to_string()
        };
        if self.kind == Kind::Uv && target.uv_level() != target.glibc_minor() {
            hint.push_str(&format!(
                "; note: uv cannot target manylinux_2_{} exactly, so lbuild asks it for {}: installer = \"pip\" also accepts wheels up to manylinux_2_{}",
                target.glibc_minor(),
                target.uv_platform(),
                target.glibc_minor()
            ));
        }
        hint
    }
}

/// `name` of `name==1.0`, `name[extra]>=1`, `name ; markers`.
fn requirement_name(requirement: &str) -> &str {
    requirement
        .split(|c: char| "=<>!~;[( @".contains(c))
        .next()
        .unwrap_or(requirement)
}

/// The package an installer complains about, from its message (best effort).
pub(crate) fn culprit(output: &str) -> Option<String> {
    let clean = |s: &str| {
        s.trim_matches(|c: char| {
            c == '`' || c == '\'' || c == '"' || c == ',' || c == '.' || c == ':'
        })
        .to_string()
    };
    let after = |marker: &str| -> Option<String> {
        let i = output.find(marker)?;
        let word = output[i + marker.len()..].split_whitespace().next()?;
        let w = clean(word);
        (!w.is_empty()).then_some(w)
    };
    after("Hash mismatch for ")
        .or_else(|| {
            // pip: the line after "... DO NOT MATCH THE HASHES ..." names it.
            let i = output.find("DO NOT MATCH THE HASHES")?;
            let next = output[i..].lines().nth(1)?;
            next.split_whitespace().next().map(clean)
        })
        .or_else(|| after("satisfies the requirement "))
        .or_else(|| after("No matching distribution found for "))
        .or_else(|| after("there is no version of "))
        .or_else(|| {
            after("Because ").filter(|w| !matches!(w.as_str(), "you" | "only" | "all" | "there"))
        })
        .or_else(|| after("we only found wheels for "))
        .or_else(|| {
            let i = output.find("Cannot install ")?;
            let rest = &output[i + "Cannot install ".len()..];
            Some(rest.split(" because").next()?.trim().to_string())
        })
        .or_else(|| {
            // uv: "Failed to fetch: https://host/simple/NAME/"
            let url = after("Failed to fetch: ")?;
            let name = url.trim_end_matches('/').rsplit('/').next()?.to_string();
            url.contains("/simple/").then_some(name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_memo_is_keyed_on_binaries_never_on_shim_scripts() {
        let d = tempfile::tempdir().unwrap();
        let shim = d.path().join("uv");
        fs_err::write(&shim, "#!/usr/bin/env bash\nexec real-uv \"$@\"\n").unwrap();
        assert_eq!(binary_fingerprint(&shim), None);
        let bin = d.path().join("uv-bin");
        fs_err::write(&bin, b"\x7fELF\x02\x01\x01").unwrap();
        let first = binary_fingerprint(&bin).expect("a binary is fingerprinted");
        fs_err::write(&bin, b"\x7fELF\x02\x01\x01 upgraded").unwrap();
        assert_ne!(
            binary_fingerprint(&bin),
            Some(first),
            "an upgrade changes the key"
        );
    }

    /// A pyenv shim is seen through with pyenv's own `which` (the pyenv
    /// named in the shim, in the project's directory), so the memo can
    /// follow the real binary's stat; an unknown script is not.
    #[test]
    fn a_pyenv_shim_is_followed_to_its_binary() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let exe = |p: &Path, text: &[u8]| {
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
            fs_err::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let real = root.join("versions/3.12.1/bin/uv");
        exe(&real, b"\x7fELF\x02\x01\x01");
        let pyenv = root.join("libexec/pyenv");
        exe(
            &pyenv,
            format!(
                "#!/bin/sh\n[ \"$1 $2\" = 'which uv' ] && [ -f .python-version ] && echo '{}'\n",
                real.display()
            )
            .as_bytes(),
        );
        let shim = root.join("shims/uv");
        exe(
            &shim,
            format!(
                "#!/usr/bin/env bash\nprogram=\"${{0##*/}}\"\nexec \"{}\" exec \"$program\" \"$@\"\n",
                pyenv.display()
            )
            .as_bytes(),
        );
        let project = root.join("project");
        fs_err::create_dir_all(&project).unwrap();
        assert_eq!(shim_target(&shim, &project), None, "asked in the project");
        fs_err::write(project.join(".python-version"), "3.12.1\n").unwrap();
        assert_eq!(shim_target(&shim, &project), Some(real));
        let other = root.join("other-shim/uv");
        exe(&other, b"#!/bin/sh\nexec uv-somewhere \"$@\"\n");
        assert_eq!(shim_target(&other, &project), None);
    }

    fn target(runtime: &str, arch: Architecture) -> Target {
        Target {
            runtime: Runtime::parse(runtime).unwrap(),
            arch,
        }
    }

    #[test]
    fn pip_gets_every_older_manylinux_tag() {
        let t = target("python3.12", Architecture::X86_64);
        let p = t.pip_platforms();
        assert_eq!(p[0], "manylinux_2_34_x86_64");
        for tag in [
            "manylinux_2_28_x86_64",
            "manylinux2014_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2010_x86_64",
            "manylinux1_x86_64",
        ] {
            assert!(p.contains(&tag.to_string()), "{tag} missing from {p:?}");
        }
        let old = target("python3.11", Architecture::X86_64).pip_platforms();
        assert_eq!(old[0], "manylinux_2_26_x86_64");
        assert!(!old.contains(&"manylinux_2_28_x86_64".to_string()));
        let arm = target("python3.12", Architecture::Arm64).pip_platforms();
        assert_eq!(arm.last().unwrap(), "manylinux2014_aarch64");
        assert!(arm.iter().all(|p| p.ends_with("_aarch64")));
    }

    #[test]
    fn uv_gets_the_highest_level_it_knows() {
        assert_eq!(
            target("python3.12", Architecture::X86_64).uv_platform(),
            "x86_64-manylinux_2_34"
        );
        assert_eq!(
            target("python3.13", Architecture::Arm64).uv_platform(),
            "aarch64-manylinux_2_34"
        );
        assert_eq!(
            target("python3.11", Architecture::X86_64).uv_platform(),
            "x86_64-manylinux_2_17"
        );
        assert_eq!(
            target("python3.12", Architecture::Arm64).describe(),
            "python3.12 arm64 manylinux_2_34"
        );
    }

    #[test]
    fn culprits_from_real_messages() {
        let pip = "ERROR: Could not find a version that satisfies the requirement newglibc==1.0 (from versions: none)\nERROR: No matching distribution found for newglibc==1.0\n";
        assert_eq!(culprit(pip).as_deref(), Some("newglibc==1.0"));
        let uv = "error: No solution found when resolving dependencies\n  cause: Because nothere was not found in the provided package locations and you require nothere==1.0, we can conclude that your requirements are unsatisfiable.\n";
        assert_eq!(culprit(uv).as_deref(), Some("nothere"));
        let uv_net = "error: Request failed after 3 retries in 10.6s\n  cause: Failed to fetch: http://127.0.0.1:9/simple/nativepkg/\n";
        assert_eq!(culprit(uv_net).as_deref(), Some("nativepkg"));
        assert_eq!(culprit("something else entirely"), None);
        let uv_hash = "error: Failed to download `purepkg==1.0`\n  cause: Hash mismatch for `purepkg==1.0`\n\n    Expected:\n      sha256:00\n";
        assert_eq!(culprit(uv_hash).as_deref(), Some("purepkg==1.0"));
        let pip_hash = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated\n    purepkg==1.0 from file:///w/purepkg-1.0-py3-none-any.whl (from -r r.txt (line 2)):\n        Expected sha256 00\n";
        assert_eq!(culprit(pip_hash).as_deref(), Some("purepkg==1.0"));
    }
}
