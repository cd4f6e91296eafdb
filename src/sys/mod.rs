//! The parent side's platform layer: every call that differs between Linux and macOS, behind one
//! interface that `linux.rs` and `macos.rs` each implement in full, and the POSIX calls around
//! them (waiting for a child's end, `poll`).
//!
//! The interface (each platform file defines all of it, with these signatures):
//! - `PLATFORM: &str`: the platform's name, for errors;
//! - `ENFORCES_MEMORY_LIMIT: bool`: whether the kernel enforces `RLIMIT_AS` (a pool with a
//!   `memory_limit` is refused where it does not);
//! - `socket_pair() -> io::Result<[OwnedFd; 2]>`: a connected pair of close-on-exec sockets
//!   that keep datagram boundaries and never raise `SIGPIPE`;
//! - `pipe() -> io::Result<[OwnedFd; 2]>`: a close-on-exec pipe whose ends do not block,
//!   `[read, write]` (close-on-exec from the call that makes it where the platform can);
//! - `pidfd_open(pid) -> Option<OwnedFd>` and `pidfd_signal(&pidfd, signal) -> io::Result<()>`:
//!   a descriptor that names one child until it is reaped, where the platform has them (`None`
//!   elsewhere, and then `pidfd_signal` is never called);
//! - `exit_queue() -> io::Result<OwnedFd>`: a close-on-exec kernel queue that reports the ends
//!   of many children to one thread (epoll of pidfds on Linux, kqueue on macOS);
//! - `watch_exit(&queue, pid, pidfd, token) -> io::Result<()>`: watches child `pid` (through
//!   `pidfd`, where the platform needs one): `token` comes out of `wait_exits` once the child
//!   has ended, even if it ended before the call; an error if the platform cannot promise that
//!   (no pidfd, a refused watch, a child that ended before an edge-triggered watch began), and
//!   then `token` may still come out once, or never (the caller reaps that child another way);
//! - `unwatch_exit(&queue, pid, pidfd)`: stops watching a child whose end was reported, before
//!   it is reaped and its pidfd closed;
//! - `wait_exits(&queue, &mut tokens) -> io::Result<usize>`: blocks until at least one watched
//!   child has ended and writes their tokens (a signal does not end the wait);
//! - `wait_without_reaping(pid)`: blocks until child `pid` has ended, leaving it a zombie
//!   (`waitid` with `WNOWAIT`);
//! - `on_stack(size, run) -> Option<R>`: runs `run` on a stack of `size` bytes in a freshly
//!   forked child, without starting a `std` thread (`None`: it panicked past every guard);
//! - `before_fork()`: what the forking thread prepares before each fork so that `on_stack` costs
//!   the child less;
//! - `keep_out_of_forks(address, len) -> bool`: leaves a mapping out of later forks' children,
//!   where the platform can;
//! - `shared_memory_file(len) -> io::Result<OwnedFd>`: a close-on-exec file of `len` zero
//!   bytes in memory whose size no holder can change: every worker's shared page lives in one
//!   (Linux; `Unsupported` on macOS, which has no `/proc/self/map_files/` through which a task
//!   could reach an anonymous shared mapping as a file, and where the zygote is not offered).
//!
//! Everything else in this crate is plain POSIX and calls `crate::sys::…` without `cfg`. Other
//! platforms do not build: forkpool runs on Linux and macOS only.

use crate::error::Death;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("forkpool runs on Linux and macOS only");

use os::wait_without_reaping;
pub(crate) use os::{
    ENFORCES_MEMORY_LIMIT, PLATFORM, before_fork, exit_queue, keep_out_of_forks, on_stack,
    pidfd_open, pidfd_signal, pipe, shared_memory_file, socket_pair, unwatch_exit, wait_exits,
    watch_exit,
};

/// Blocks until the child `pid` has ended, kills whatever is left of its process group (the
/// grandchildren a task may have started), reaps it, and says how it ended. `reaping` runs
/// once the child has ended and before it is reaped: the last moment its pid, and its process
/// group id, are surely its own (see `child_handle::Unreaped`).
pub(crate) fn wait_for_exit(pid: Pid, reaping: impl FnOnce()) -> Death {
    wait_without_reaping(pid);
    reaping();
    // The child is a zombie now, so its pid, which is also its process group id, cannot have
    // been reused yet.
    let _ = killpg(pid, Signal::SIGKILL);
    reap(pid)
}

fn reap(pid: Pid) -> Death {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Death::Exit(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Death::Signal(signal as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return Death::Unknown,
        }
    }
}

/// Waits until one of `fds` is ready or `timeout` has passed (`None`: no limit), retrying when
/// a signal interrupts the wait with the time that is left. Returns how many are ready.
pub(crate) fn poll(
    fds: &mut [libc::pollfd],
    deadline: Option<std::time::Instant>,
) -> std::io::Result<usize> {
    retrying(|| {
        let timeout = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(std::time::Instant::now());
                // Round up to whole milliseconds, so a wait never ends early and spins.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, writable array of pollfd of the stated length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) }
    })
}

/// Makes the system call `call` (a count, or -1 with `errno` set) again each time a signal
/// interrupts it; returns the count or the error.
fn retrying(mut call: impl FnMut() -> libc::c_int) -> std::io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Wraps a descriptor the caller just received from the kernel and owns.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
unsafe fn owned(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: as the caller promises.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}
