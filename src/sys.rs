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

/// A connected pair of close-on-exec datagram sockets that keep message boundaries
/// (`SOCK_SEQPACKET`), for one parent–child channel.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn socket_pair() -> std::io::Result<[std::os::fd::OwnedFd; 2]> {
    let mut fds = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { [crate::channel::owned(fds[0]), crate::channel::owned(fds[1])] })
}

/// macOS has no `SOCK_SEQPACKET` for local sockets: local datagram sockets are reliable and
/// keep boundaries too. `SO_NOSIGPIPE` stands in for `MSG_NOSIGNAL`, and `FD_CLOEXEC` is set
/// after the fact (the register's lock keeps this crate's own forks from seeing them first).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn socket_pair() -> std::io::Result<[std::os::fd::OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    let owned = unsafe { [crate::channel::owned(fds[0]), crate::channel::owned(fds[1])] };
    for fd in &fds {
        let one: libc::c_int = 1;
        // SAFETY: plain option and flag calls on a descriptor we own.
        unsafe {
            libc::setsockopt(
                *fd,
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(owned)
}

/// A close-on-exec pipe whose ends do not block: `[read, write]`.
pub(crate) fn pipe() -> std::io::Result<[std::os::fd::OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    let owned = unsafe { [crate::channel::owned(fds[0]), crate::channel::owned(fds[1])] };
    for fd in fds {
        // SAFETY: flag calls on descriptors we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        }
    }
    Ok(owned)
}

/// Waits until one of `fds` is ready or `timeout` has passed (`None`: no limit), retrying when
/// a signal interrupts the wait with the time that is left. Returns how many are ready.
pub(crate) fn poll(
    fds: &mut [libc::pollfd],
    deadline: Option<std::time::Instant>,
) -> std::io::Result<usize> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(std::time::Instant::now());
                // Round up to whole milliseconds, so a wait never ends early and spins.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, writable array of pollfd of the stated length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A pidfd for child `pid` (Linux 5.3 and later), or `None`.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: Pid) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created and belongs to nobody else.
    Some(unsafe { crate::channel::owned(fd as i32) })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_open(_: Pid) -> Option<std::os::fd::OwnedFd> {
    None
}

/// Sends `signal` to the process `pidfd` refers to; an error once it has been reaped.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_signal(pidfd: &impl std::os::fd::AsRawFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal, no siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_signal(_: &impl std::os::fd::AsRawFd, _: i32) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
