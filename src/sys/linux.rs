//! Linux: `SOCK_SEQPACKET` socket pairs, pidfds (Linux 5.3 and later), an epoll set of pidfds
//! for the reaper, `waitid` without reaping, and an enforced `RLIMIT_AS`.

use super::owned;
use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};

/// The platform's name, for errors.
pub(crate) const PLATFORM: &str = "Linux";

/// The kernel enforces `RLIMIT_AS`: an allocation past it fails.
pub(crate) const ENFORCES_MEMORY_LIMIT: bool = true;

/// A connected pair of close-on-exec datagram sockets that keep message boundaries
/// (`SOCK_SEQPACKET`), for one parent–child channel. (`send` passes `MSG_NOSIGNAL`.)
pub(crate) fn socket_pair() -> std::io::Result<[OwnedFd; 2]> {
    let mut fds = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { [owned(fds[0]), owned(fds[1])] })
}

/// A pipe whose ends are close-on-exec from the call that makes them and do not block:
/// `[read, write]`.
pub(crate) fn pipe() -> std::io::Result<[OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { [owned(fds[0]), owned(fds[1])] })
}

/// A pidfd for child `pid`, or `None` if the kernel has none.
pub(crate) fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created and belongs to nobody else.
    Some(unsafe { owned(fd as i32) })
}

/// Sends `signal` to the process `pidfd` refers to; an error once it has been reaped.
pub(crate) fn pidfd_signal(pidfd: &impl AsRawFd, signal: i32) -> std::io::Result<()> {
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

/// A close-on-exec epoll set, where the reaper watches its children's pidfds.
pub(crate) fn exit_queue() -> std::io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes flags and returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and belongs to nobody else.
    Ok(unsafe { owned(fd) })
}

/// Watches child `pid` through its pidfd: `token` comes out of [`wait_exits`] once it has
/// ended (a pidfd is readable from then on, so a child that ended before this call is reported
/// too). An error without a pidfd.
pub(crate) fn watch_exit(
    queue: &OwnedFd,
    _pid: Pid,
    pidfd: Option<&OwnedFd>,
    token: u64,
) -> std::io::Result<()> {
    let Some(pidfd) = pidfd else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    let add = libc::EPOLL_CTL_ADD;
    // SAFETY: both descriptors are open and `event` is a valid epoll_event for the call.
    let r = unsafe { libc::epoll_ctl(queue.as_raw_fd(), add, pidfd.as_raw_fd(), &mut event) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Stops watching child `pid` (before its pidfd is closed and it is reaped: a reaped child's
/// pidfd stays readable).
pub(crate) fn unwatch_exit(queue: &OwnedFd, _pid: Pid, pidfd: Option<&OwnedFd>) {
    if let Some(pidfd) = pidfd {
        let mut unused = libc::epoll_event { events: 0, u64: 0 };
        let del = libc::EPOLL_CTL_DEL;
        // SAFETY: both descriptors are open; DEL ignores the event (old kernels want one).
        unsafe { libc::epoll_ctl(queue.as_raw_fd(), del, pidfd.as_raw_fd(), &mut unused) };
    }
}

/// Blocks until at least one watched child has ended; writes their tokens into `tokens` and
/// returns how many (`tokens` must not be empty). Goes on waiting when a signal interrupts it.
pub(crate) fn wait_exits(queue: &OwnedFd, tokens: &mut [u64]) -> std::io::Result<usize> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let room = events.len().min(tokens.len()) as libc::c_int;
    // SAFETY: `events` is a writable array of at least `room` epoll_events.
    let n = super::retrying(|| unsafe {
        libc::epoll_wait(queue.as_raw_fd(), events.as_mut_ptr(), room, -1)
    })?;
    for (token, event) in tokens.iter_mut().zip(&events[..n]) {
        *token = event.u64;
    }
    Ok(n.min(tokens.len()))
}

/// Blocks until child `pid` has ended and leaves it a zombie (`waitid` with `WNOWAIT`), so its
/// pid, which is also its process group id, cannot be reused yet.
pub(crate) fn wait_without_reaping(pid: Pid) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Runs `run` on a stack segment of `size` bytes mapped for it, in this same thread
/// (`stacker`): no thread is started.
pub(crate) fn on_stack<R>(size: usize, run: impl FnOnce() -> R) -> Option<R> {
    Some(stacker::grow(size, run))
}

/// Makes `stacker` learn where this thread's stack ends, once per thread, so that a child forked
/// from it inherits the answer: in a child that has to find it, `stacker::grow` asks
/// `pthread_getattr_np`, which for a main thread reads and parses all of `/proc/self/maps`
/// (0.3 ms of CPU per worker forked from a main thread: 200 `Pool::new(2)` + drop under
/// `perf stat`, with and without this).
pub(crate) fn before_fork() {
    let _ = stacker::remaining_stack();
}

/// Leaves `len` bytes at `address` out of the children of every later fork (`MADV_DONTFORK`):
/// a fork copies every mapping of the parent, so forking n workers, each with a shared page of
/// its own, copied n² mappings, and `Pool::new(n)` and its drop grew quadratically. No child
/// needs a sibling's page (it unmapped them right after the fork anyway). Best effort: `false`
/// if the kernel refused, and then the child unmaps the page itself.
pub(crate) fn keep_out_of_forks(address: usize, len: usize) -> bool {
    // SAFETY: madvise only changes how the kernel treats the range at a fork; it neither
    // unmaps nor changes the memory, and a range that is not mapped is an error returned, not
    // undefined behaviour.
    unsafe { libc::madvise(address as *mut libc::c_void, len, libc::MADV_DONTFORK) == 0 }
}

/// A close-on-exec shared-memory file of `len` zero bytes whose size is sealed (no process that
/// holds it or maps it can shrink or grow it: a worker cannot truncate the memory its parent
/// reads under it).
pub(crate) fn shared_memory_file(len: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: the name is a valid C string; the result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"forkpool-worker".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and belongs to nobody else.
    let file = unsafe { owned(fd) };
    let len = libc::off_t::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: size and seal calls on a descriptor we own.
    let done = unsafe {
        libc::ftruncate(fd, len) == 0
            && libc::fcntl(
                fd,
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ) == 0
    };
    if !done {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}
