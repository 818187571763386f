//! The handler's processes: the bootstrap runs in a process group of its
//! own, waited for with the timeout and Ctrl-C in view, and at the end —
//! return, failure, timeout, interruption or an early `?` — everything it
//! started is killed and reaped, so no `subprocess.Popen` or `os.fork`
//! child outlives the invocation (Lambda freezes or discards the whole
//! sandbox).
//!
//! On Linux lbuild becomes a child subreaper first: a process whose parent
//! dies is reparented to lbuild rather than to init, so lbuild can reap it
//! (the pids are gone, not zombies of a container's PID 1 that never reaps)
//! and can find those that left the group (`setsid`,
//! `start_new_session=True`) as its own children. Owns spawning, waiting
//! and killing; not what the process runs.
//!
//! Unsafe by necessity: waitid without reaping, killpg, prctl have no safe
//! std wrapper; each call carries its SAFETY note.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How waiting for the bootstrap ended.
#[derive(Debug)]
pub(super) enum Ended {
    Exited(ExitStatus),
    TimedOut,
    /// SIGINT, SIGTERM or SIGHUP reached lbuild (the number).
    Interrupted(i32),
}

/// The running bootstrap; dropping it kills and reaps all it started.
pub(super) struct Group {
    child: Child,
    /// The group's id: the bootstrap's pid (`process_group(0)`).
    pgid: libc::pid_t,
    /// Set by lbuild's signal handlers: the signal that asked to stop.
    stop: Arc<AtomicUsize>,
    status: Option<ExitStatus>,
    /// lbuild's children before the spawn: not the handler's to kill.
    before: Vec<libc::pid_t>,
    cleaned: bool,
}

/// Spawns `cmd` as the leader of a new process group.
pub(super) fn spawn(cmd: &mut Command) -> io::Result<Group> {
    become_subreaper();
    // In its own group the handler no longer gets the terminal's Ctrl-C
    // (only lbuild's group does): lbuild catches it and kills the group.
    // Registered for the rest of lbuild's life, which ends with the
    // invocation (unregistering would not restore the default action).
    let stop = Arc::new(AtomicUsize::new(0));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register_usize(sig, Arc::clone(&stop), sig as usize)?;
    }
    let before = children_of(std::process::id());
    // setpgid happens in the child before exec, so the group exists when
    // spawn returns.
    let child = cmd.process_group(0).spawn()?;
    let pgid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("child pid out of range"))?;
    Ok(Group {
        child,
        pgid,
        stop,
        status: None,
        before,
        cleaned: false,
    })
}

impl Group {
    /// Waits until the bootstrap exits, `timeout` passes or a signal asks
    /// lbuild to stop; then kills the whole group either way. The exit is
    /// only observed (not reaped) until the group is killed, so the group's
    /// id cannot be reused by another process in between.
    pub(super) fn wait(&mut self, timeout: Duration) -> io::Result<Ended> {
        let started = Instant::now();
        let ended = loop {
            if self.has_exited()? {
                break None;
            }
            let sig = self.stop.load(Ordering::Relaxed);
            if sig != 0 {
                break Some(Ended::Interrupted(sig as i32));
            }
            if started.elapsed() >= timeout {
                break Some(Ended::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.kill_all();
        Ok(match ended {
            Some(e) => e,
            None => Ended::Exited(
                self.status
                    .ok_or_else(|| io::Error::other("no exit status"))?,
            ),
        })
    }

    /// Whether the bootstrap has exited, leaving it a zombie (WNOWAIT).
    fn has_exited(&self) -> io::Result<bool> {
        // SAFETY: zeroed siginfo_t is valid; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pgid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        // SAFETY: waitid filled `info`; si_pid stays 0 when nothing exited.
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// SIGKILL to the group, reap the bootstrap (its status kept), then
    /// reap and kill whatever is left of the handler's processes.
    fn kill_all(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        // Never lbuild's own group (nor 0 or 1, which mean "everyone").
        // SAFETY: getpgrp cannot fail.
        if self.pgid > 1 && self.pgid != unsafe { libc::getpgrp() } {
            // SAFETY: a negative pid sends to that process group only.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        }
        self.status = self.child.wait().ok();
        reap_orphans(&self.before);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(target_os = "linux")]
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer flag. Best effort:
    // without it orphans go to init, and the group kill still ends them.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn become_subreaper() {}

/// Kills and reaps lbuild's children (but those it had `before` the
/// handler) until none is left: each is one the handler started, an orphan
/// reparented to lbuild (the subreaper), perhaps in a session of its own. Killing one makes its children lbuild's: the next round takes
/// them. Bounded, so a process that forks faster than this kills cannot
/// hold lbuild forever.
#[cfg(target_os = "linux")]
fn reap_orphans(before: &[libc::pid_t]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut children = children_of(std::process::id());
        children.retain(|pid| !before.contains(pid));
        if children.is_empty() {
            return;
        }
        for pid in children {
            // SAFETY: signals to one pid, and to the group it leads (if it
            // does: a `setsid` child's own children are in it).
            unsafe {
                if libc::getpgid(pid) == pid && pid != libc::getpgrp() {
                    libc::kill(-pid, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn reap_orphans(_: &[libc::pid_t]) {}

#[cfg(not(target_os = "linux"))]
fn children_of(_: u32) -> Vec<libc::pid_t> {
    Vec::new()
}

/// The pids whose parent is `parent`, from /proc/PID/stat (the field after
/// the command name, which may itself hold spaces and parentheses).
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<libc::pid_t> {
    let Ok(dir) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn children_are_found_by_their_parent_pid() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        assert!(children_of(std::process::id()).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!children_of(std::process::id()).contains(&pid));
    }
}
