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

use crate::error::Death;
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

/// The end of zygote worker `pid` (its pidfd `pidfd`) if it is a zombie whose status can be
/// read; `None` otherwise (running, reaped already, or not readable).
pub(super) fn of_zombie(pid: Pid, pidfd: &impl AsRawFd) -> Option<Death> {
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
fn status_of(raw: i32) -> Option<Death> {
    if libc::WIFEXITED(raw) {
        Some(Death::Exit(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(Death::Signal(libc::WTERMSIG(raw)))
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

    /// Runs `sh -c script` and waits (on its pidfd, without reaping it) until it has ended:
    /// the child, a zombie now, and its pidfd.
    #[cfg(target_os = "linux")]
    fn zombie(script: &str) -> (std::process::Child, std::os::fd::OwnedFd) {
        use std::os::fd::FromRawFd;
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptor was just opened and belongs to nobody else.
        let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        let mut polled = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        assert_eq!(crate::sys::poll(&mut polled, None).unwrap(), 1);
        (child, pidfd)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_zombie_shows_its_real_end_and_a_reaped_process_shows_none() {
        let cases = [
            ("kill -SEGV $$", Death::Signal(libc::SIGSEGV)),
            ("exit 3", Death::Exit(3)),
            ("exit 0", Death::Exit(0)),
        ];
        for (script, end) in cases {
            let (mut child, pidfd) = zombie(script);
            let pid = Pid::from_raw(child.id() as i32);
            assert_eq!(of_zombie(pid, &pidfd), Some(end), "{script}");
            child.wait().unwrap();
            assert_eq!(of_zombie(pid, &pidfd), None, "{script}: reaped");
        }
    }

    #[test]
    fn the_stat_line_gives_the_state_and_the_wait_status_whatever_the_name() {
        for name in ["w", "a b) Z 1 (c", ")", "x\ny"] {
            assert_eq!(
                parse_stat(&stat(name, 'Z', 139)),
                Some(('Z', 139)),
                "{name}"
            );
        }
        assert_eq!(parse_stat("4242 (w) Z 1 2"), None, "cut short: no status");
        assert_eq!(parse_stat("4242 w Z"), None);
    }

    #[test]
    fn a_raw_status_reads_as_the_signal_or_code_it_holds() {
        assert_eq!(status_of(libc::SIGSEGV), Some(Death::Signal(libc::SIGSEGV)));
        // A core dump sets 0x80 besides the signal.
        assert_eq!(
            status_of(0x80 | libc::SIGABRT),
            Some(Death::Signal(libc::SIGABRT))
        );
        assert_eq!(status_of(3 << 8), Some(Death::Exit(3)));
        assert_eq!(status_of(0), Some(Death::Exit(0)));
        assert_eq!(status_of(0x137f), None, "stopped by SIGSTOP: no end");
    }
}
