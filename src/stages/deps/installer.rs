//! The two installers lbuild drives — uv and `python3 -m pip` — and the
//! Lambda target they install for.
//!
//! Owns: picking the installer the manifest asks for (uv's probe and its
//! remembered version are `uv_probe.rs`'s; pip's is here), the
//! platform tags for a runtime's glibc (pip needs every older manylinux tag
//! spelled out; uv takes one `ARCH-manylinux_2_N` name), running the
//! install with a spinner showing the installer's current line, and turning
//! a failed install into an error that names the package and the target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::DepsError;
use super::uv_probe::{UvProblem, uv};
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
    pub(super) program: PathBuf,
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
