//! Which events can trigger a rebuild. Dropped: access events (a build
//! reads its inputs: without this it would trigger itself), lbuild's
//! outputs (the cache, the zip, the output directory), names no build reads
//! ([`ignored_name`]: VCS and tool state, byte-code, lbuild's temporary
//! zips, editor temp files), and the files our own stdout/stderr are
//! redirected to (`lbuild watch > watch.log` inside the project).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind};

use super::debounce::Change;
use crate::exclusions;
use crate::manifest::Plan;

pub(crate) struct Filter {
    /// lambda.toml's directory: names are judged relative to it.
    project_dir: PathBuf,
    /// (device, inode) of our stdout/stderr when they are regular files.
    own_logs: Vec<(u64, u64)>,
}

impl Filter {
    pub(crate) fn new(project_dir: PathBuf) -> Filter {
        Filter {
            project_dir,
            own_logs: own_log_files(),
        }
    }

    /// What the event contributes to a batch; `None` when nothing.
    /// `plans` are the artifacts of the last manifest that loaded (for
    /// their output paths).
    pub(crate) fn change(&self, event: Event, plans: &[Plan]) -> Option<Change> {
        // Opening or reading a file (as every build does) is no change; a
        // close after writing is kept (it ends a save).
        if event.kind.is_access()
            && event.kind != EventKind::Access(AccessKind::Close(AccessMode::Write))
        {
            return None;
        }
        if event.need_rescan() {
            return Some(Change {
                paths: Vec::new(),
                rescan: true,
                structural: true,
            });
        }
        let paths: Vec<PathBuf> = event
            .paths
            .into_iter()
            .filter(|p| !self.ignored(p, plans))
            .collect();
        if paths.is_empty() {
            return None;
        }
        let structural = match event.kind {
            EventKind::Access(_) => false,
            EventKind::Modify(ModifyKind::Name(_)) => true,
            EventKind::Modify(_) => false,
            // Create, Remove, and kinds the backend could not tell.
            _ => true,
        };
        Some(Change {
            paths,
            rescan: false,
            structural,
        })
    }

    fn ignored(&self, path: &Path, plans: &[Plan]) -> bool {
        let rel = path.strip_prefix(&self.project_dir).unwrap_or(path);
        ignored_name(rel)
            || plans.iter().any(|plan| is_output(plan, path))
            || (!self.own_logs.is_empty()
                && fs_err::metadata(path)
                    .is_ok_and(|m| self.own_logs.contains(&(m.dev(), m.ino()))))
    }
}

/// lbuild's own outputs: the cache, the zip, and the output directory
/// unless it holds the project.
fn is_output(plan: &Plan, path: &Path) -> bool {
    let out_dir = plan.output.path.parent();
    path.starts_with(&plan.cache_dir)
        || path == plan.output.path
        || out_dir.is_some_and(|d| !plan.project_dir.starts_with(d) && path.starts_with(d))
}

/// Names that never trigger a rebuild, whatever the manifest says:
/// lbuild's and VCS state, byte-code, lbuild's temporary zips, and the
/// temporary files editors write while saving. `rel` is relative to the
/// project directory when the path is inside it.
pub(crate) fn ignored_name(rel: &Path) -> bool {
    if rel.components().any(|c| {
        c.as_os_str().to_str().is_some_and(|s| {
            exclusions::PRUNED_DIRS.contains(&s) || exclusions::TOOL_DIRS.contains(&s)
        })
    }) {
        return true;
    }
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".pyc")
        || name.ends_with(".pyo")
        || (name.starts_with(".lbuild-") && name.ends_with(".tmp"))
        || exclusions::is_editor_temp(name)
}

/// (device, inode) of stdout and stderr where they are regular files.
fn own_log_files() -> Vec<(u64, u64)> {
    use std::os::fd::AsFd;
    let fds = [
        std::io::stdout().as_fd().try_clone_to_owned(),
        std::io::stderr().as_fd().try_clone_to_owned(),
    ];
    fds.into_iter()
        .flatten()
        .filter_map(|fd| std::fs::File::from(fd).metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// A watch error that only says the path is gone (deleted meanwhile).
pub(crate) fn vanished(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound | notify::ErrorKind::WatchNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RenameMode};

    #[test]
    fn editor_temp_names_and_outputs_are_ignored() {
        for name in [
            ".app.py.swp",
            ".app.py.swx",
            "pkg/.mod.py.swo",
            "4913",
            "app.py~",
            "#app.py#",
            ".#app.py",
            "app.py___jb_tmp___",
            "app.py___jb_old___",
            "__pycache__/app.cpython-312.pyc",
            "app.pyc",
            ".git/index",
            ".lbuild/cache.sqlite-wal",
            "dist/.lbuild-x1y2.zip.tmp",
            "node_modules/left-pad/index.js",
            ".aws-sam/build/Fn/app.py",
            "cdk.out/manifest.json",
            ".terraform/terraform.tfstate",
            ".serverless/state.json",
        ] {
            assert!(ignored_name(Path::new(name)), "{name} should be ignored");
        }
        for name in [
            "app.py",
            "config/settings.json",
            "swap.py",
            ".env",
            "lambda.toml",
            ".abé",
            "#",
            "ünïcode.py",
        ] {
            assert!(!ignored_name(Path::new(name)), "{name} should be kept");
        }
    }

    fn filter() -> Filter {
        Filter {
            project_dir: PathBuf::from("/p"),
            own_logs: Vec::new(),
        }
    }

    #[test]
    fn reads_are_dropped_and_a_close_after_writing_is_kept() {
        let f = filter();
        let open = Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)))
            .add_path("/p/app.py".into());
        assert_eq!(f.change(open, &[]), None);
        let closed = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
            .add_path("/p/app.py".into());
        let kept = f.change(closed, &[]).unwrap();
        assert_eq!(kept.paths, [PathBuf::from("/p/app.py")]);
        assert!(!kept.structural);
    }

    #[test]
    fn renames_and_creations_are_structural_writes_are_not() {
        let f = filter();
        let write = Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)))
            .add_path("/p/app.py".into());
        assert!(!f.change(write, &[]).unwrap().structural);
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/p/app.py.tmp".into())
            .add_path("/p/app.py".into());
        assert!(f.change(rename, &[]).unwrap().structural);
        let create = Event::new(EventKind::Create(CreateKind::Folder)).add_path("/p/pkg".into());
        assert!(f.change(create, &[]).unwrap().structural);
    }

    #[test]
    fn an_event_with_only_ignored_paths_is_dropped_whole() {
        let f = filter();
        let swap = Event::new(EventKind::Create(CreateKind::File))
            .add_path("/p/.app.py.swp".into())
            .add_path("/p/.git/index".into());
        assert_eq!(f.change(swap, &[]), None);
        let mixed = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/p/app.py~".into())
            .add_path("/p/app.py".into());
        assert_eq!(
            f.change(mixed, &[]).unwrap().paths,
            [PathBuf::from("/p/app.py")]
        );
    }

    #[test]
    fn a_queue_overflow_is_a_rescan() {
        let f = filter();
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        let c = f.change(overflow, &[]).unwrap();
        assert!(c.rescan && c.structural);
    }
}
