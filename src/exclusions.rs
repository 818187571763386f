//! What never enters a zip or wakes the watcher, by name alone: the
//! directories every walk prunes, other tools' directories, virtualenvs,
//! byte-code, secrets, and editors' temporary files. A leaf: shared by the
//! build's walk, the dependency tree's normalisation and the watch filter,
//! so the three cannot disagree. It does not walk or read anything but
//! one `pyvenv.cfg` stat.

use std::path::Path;

/// Directory names never descended into: VCS and tool state, byte-code,
/// and virtual environments (host binaries and symlinks, never Lambda code).
/// The project walks (sources) also prune [`TOOL_DIRS`] and any
/// virtualenv ([`is_virtualenv`]).
pub(crate) const PRUNED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".lbuild",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".venv",
];

/// Directories of other tools found in projects, never Lambda code: build
/// and deployment output (`.aws-sam/`, `.serverless/`, `cdk.out/`,
/// `.terraform/`) and `node_modules/`. Pruned from the sources walk and
/// ignored by the watcher, but not from installed dependency trees (a
/// wheel may ship a `node_modules/` of its own assets).
pub(crate) const TOOL_DIRS: &[&str] = &[
    "node_modules",
    ".aws-sam",
    ".serverless",
    "cdk.out",
    ".terraform",
];

/// The project's ignore files, read in each directory the sources walk
/// enters (and in those between the project directory and the sources
/// root). `.lbuildignore` has `.gitignore`'s syntax and wins over it in
/// the same directory. The user's global gitignore (`core.excludesFile`)
/// is never read: it differs per machine.
pub(crate) const IGNORE_FILES: &[&str] = &[".gitignore", ".lbuildignore"];

/// The file that marks a virtual environment (see [`is_virtualenv`]).
pub(crate) const VIRTUALENV_MARKER: &str = "pyvenv.cfg";

/// A directory holding `pyvenv.cfg` is a virtual environment (`python -m
/// venv`, virtualenv, uv, poetry): host binaries, never Lambda code.
pub(crate) fn is_virtualenv(dir: &Path) -> bool {
    fs_err::symlink_metadata(dir.join(VIRTUALENV_MARKER)).is_ok()
}

/// True for files that never enter a zip from the project: byte-code,
/// secrets, and editor lock files (Emacs keeps `.#name` as a dangling
/// symlink while editing). Installed trees take [`excluded_from_trees`].
pub(crate) fn excluded_by_default(name: &str) -> bool {
    excluded_from_trees(name) || is_secret(name)
}

/// True for files that never enter a zip from an installed dependency
/// tree: the project's rule without [`is_secret`], since a `.env*` file in
/// a wheel is the package's data (an example configuration, a test
/// fixture), not this project's secret.
pub(crate) fn excluded_from_trees(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.ends_with(".pyc")
        || base.ends_with(".pyo")
        || base.starts_with(".#")
        || base == ".DS_Store"
        || name.split('/').any(|seg| PRUNED_DIRS.contains(&seg))
}

/// A project's secrets by name: `.env`, `.env.production`, ...
pub(crate) fn is_secret(name: &str) -> bool {
    name.rsplit('/').next().unwrap_or(name).starts_with(".env")
}

/// Editors' temporary and backup files (never a project's input): vim's
/// `.app.py.swp`/`.swo`/`.swx`, its `4913` write test and `app.py~`
/// backups, emacs' `#app.py#` autosaves and `.#app.py` lock links,
/// JetBrains' safe-write files, GNOME's GIO temporaries.
pub(crate) fn is_editor_temp(name: &str) -> bool {
    let b = name.as_bytes();
    (name.starts_with('.') && b.len() >= 5 && b[..b.len() - 1].ends_with(b".sw"))
        || name == "4913"
        || name.ends_with('~')
        || (b.len() >= 2 && name.starts_with('#') && name.ends_with('#'))
        || name.starts_with(".#")
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name.starts_with(".goutputstream-")
}
