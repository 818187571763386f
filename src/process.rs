//! This process and the others on this host, as far as lbuild asks about
//! them. A leaf.

/// Whether a process with this pid exists: signal 0 checks without
/// sending, and EPERM means it exists under another user. Only meaningful
/// within one PID namespace.
#[allow(unsafe_code)]
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The cores this process may use (its CPU affinity and cgroup quota),
/// read once: the standard library reads them from `/proc` and `/sys` on
/// every call, and a workspace's artifacts each ask (hashing, compressing,
/// verifying).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
