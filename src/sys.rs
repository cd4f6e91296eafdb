//! Platform-specific process calls, kept in one module: waiting for a child's end, signalling its group.
//!
//! Everything outside this module is plain POSIX; Linux-only calls live behind
//! `#[cfg(target_os = "linux")]` here.

use forkpool_worker::protocol::ExitStatus;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// Blocks until the child `pid` has ended, kills whatever is left of its process group (the
/// grandchildren a task may have started), reaps it, and says how it ended.
pub(crate) fn wait_for_exit(pid: Pid) -> ExitStatus {
    wait_without_reaping(pid);
    // The child is a zombie now (or already reaped on a platform without `waitid`), so its pid,
    // which is also its process group id, cannot have been reused yet.
    let _ = killpg(pid, Signal::SIGKILL);
    reap(pid)
}

#[cfg(target_os = "linux")]
fn wait_without_reaping(pid: Pid) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn wait_without_reaping(_pid: Pid) {}

fn reap(pid: Pid) -> ExitStatus {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return ExitStatus::Signal(signal as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return ExitStatus::Unknown,
        }
    }
}

/// Sends `SIGKILL` to the child's whole process group.
pub(crate) fn kill_group(pid: Pid) {
    let _ = killpg(pid, Signal::SIGKILL);
}

/// Sends `SIGTERM` to the child's whole process group: the polite first step of stopping a
/// worker whose item ran past its timeout.
pub(crate) fn terminate_group(pid: Pid) {
    let _ = killpg(pid, Signal::SIGTERM);
}
