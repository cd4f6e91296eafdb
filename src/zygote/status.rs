//! How the program learns the end of a zygote's worker without the zygote: the worker is the
//! zygote's child, so the program cannot wait for it, but until the zygote reaps it the worker
//! is a zombie whose `/proc/<pid>/stat` holds its wait status (`exit_code`, Linux 3.5 and
//! later). A zygote that is stopped or stuck reaps nothing, so this is how the end of a worker
//! of a stuck zygote is known with its real cause.
//!
//! Invariants:
//! - A status is read only from a zombie (state `Z`: its status is final), and believed only if
//!   the worker's pidfd still names an unreaped process after the read: a pid is reused only
//!   once its process is reaped, so the status read was the worker's own.
//! - A zero status is believed only when the zombie belongs to this program's user: the kernel
//!   shows a status of 0 to anyone it does not let see the real one. Anything else unreadable is
//!   `None`: the caller says "unknown" rather than guess.

use forkpool_worker::protocol::ExitStatus;
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

/// The end of zygote worker `pid` (its pidfd `pidfd`) if it is a zombie whose status can be
/// read; `None` otherwise (running, reaped already, or not readable).
pub(super) fn of_zombie(pid: Pid, pidfd: &impl AsRawFd) -> Option<ExitStatus> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw())).ok()?;
    let (state, raw) = parse_stat(&stat)?;
    let own = raw != 0 || owned_by_us(pid);
    // Signal 0 sends nothing: it fails only if the process has been reaped (its pid may name
    // another process since), and succeeds on a zombie.
    let unreaped = crate::sys::pidfd_signal(pidfd, 0).is_ok();
    if state == 'Z' && own && unreaped {
        status_of(raw)
    } else {
        None
    }
}

/// The state letter and the raw wait status (`exit_code`, field 52) of a `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    // The name (field 2) may hold spaces and parentheses: the fields after it follow its last
    // `)`, starting with field 3, the state.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let raw = fields.nth(52 - 4)?.parse().ok()?;
    Some((state, raw))
}

/// The end a raw wait status says (`None`: not an end, such as a stop).
fn status_of(raw: i32) -> Option<ExitStatus> {
    if libc::WIFEXITED(raw) {
        Some(ExitStatus::Code(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(ExitStatus::Signal(libc::WTERMSIG(raw)))
    } else {
        None
    }
}

/// Whether `/proc/<pid>` belongs to this program's effective user (a zombie's does to its
/// owner's effective user).
fn owned_by_us(pid: Pid) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid takes nothing, always succeeds and touches no memory.
    let me = unsafe { libc::geteuid() };
    std::fs::metadata(format!("/proc/{}", pid.as_raw())).is_ok_and(|m| m.uid() == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc/<pid>/stat` line with `name`, `state` and `exit_code` (the other fields 0).
    fn stat(name: &str, state: char, exit_code: i32) -> String {
        let middle = vec!["0"; 52 - 4].join(" ");
        format!("4242 ({name}) {state} {middle} {exit_code}\n")
    }

    #[test]
    fn the_stat_line_gives_the_state_and_the_wait_status_whatever_the_name() {
        for name in ["w", "a b) Z 1 (c", ")", "x\ny"] {
            assert_eq!(parse_stat(&stat(name, 'Z', 139)), Some(('Z', 139)), "{name}");
        }
        assert_eq!(parse_stat("4242 (w) Z 1 2"), None, "cut short: no status");
        assert_eq!(parse_stat("4242 w Z"), None);
    }

    #[test]
    fn a_raw_status_reads_as_the_signal_or_code_it_holds() {
        assert_eq!(status_of(libc::SIGSEGV), Some(ExitStatus::Signal(libc::SIGSEGV)));
        // A core dump sets 0x80 besides the signal.
        assert_eq!(status_of(0x80 | libc::SIGABRT), Some(ExitStatus::Signal(libc::SIGABRT)));
        assert_eq!(status_of(3 << 8), Some(ExitStatus::Code(3)));
        assert_eq!(status_of(0), Some(ExitStatus::Code(0)));
        assert_eq!(status_of(0x137f), None, "stopped by SIGSTOP: no end");
    }
}
