//! macOS: local datagram socket pairs with `SO_NOSIGPIPE`, no pidfds, a kqueue of `NOTE_EXIT`
//! for the reaper, `waitid` through libc (nix offers it on Linux only), and no enforced
//! `RLIMIT_AS`.
//!
//! Type-checked for `x86_64-apple-darwin` and `aarch64-apple-darwin`, never run here (see the
//! README's Platforms section).

use super::owned;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};

/// The platform's name, for errors.
pub(crate) const PLATFORM: &str = "macOS";

/// macOS accepts `RLIMIT_AS` but does not enforce it: a pool with a memory limit is refused.
pub(crate) const ENFORCES_MEMORY_LIMIT: bool = false;

/// macOS has no `SOCK_SEQPACKET` for local sockets: local datagram sockets are reliable and
/// keep boundaries too. `SO_NOSIGPIPE` stands in for `MSG_NOSIGNAL`, and `FD_CLOEXEC` is set
/// after the fact (the register's lock keeps this crate's own forks from seeing them first).
pub(crate) fn socket_pair() -> std::io::Result<[OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    let owned = unsafe { [owned(fds[0]), owned(fds[1])] };
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

/// A close-on-exec pipe whose ends do not block: `[read, write]`. (No `pipe2` here: the flags
/// are set after the fact, and the register's lock keeps this crate's own forks from seeing
/// the ends first.)
pub(crate) fn pipe() -> std::io::Result<[OwnedFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    let owned = unsafe { [owned(fds[0]), owned(fds[1])] };
    for fd in fds {
        // SAFETY: flag calls on descriptors we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        }
    }
    Ok(owned)
}

/// No pidfds: a child is signalled by its pid and process group, while it is unreaped (see
/// `child_handle`).
pub(crate) fn pidfd_open(_: Pid) -> Option<OwnedFd> {
    None
}

/// Never called ([`pidfd_open`] gives no pidfd).
pub(crate) fn pidfd_signal(_: &impl AsRawFd, _: i32) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// A close-on-exec kqueue, where the reaper watches its children's ends (`EVFILT_PROC`).
/// (A kqueue is not inherited by a forked child at all; close-on-exec is for the register's
/// rule.)
pub(crate) fn exit_queue() -> std::io::Result<OwnedFd> {
    // SAFETY: kqueue takes no arguments and returns a new descriptor or -1.
    let fd = unsafe { libc::kqueue() };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and belongs to nobody else.
    let owned = unsafe { owned(fd) };
    // SAFETY: a flag call on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

/// Watches child `pid` (`EVFILT_PROC` with `NOTE_EXIT`): `token` comes out of [`wait_exits`]
/// once it has ended. The event is an edge: a child that ended before the watch began gives
/// none, so that case is an error (`ESRCH`), as is a watch the kernel refuses; the caller
/// reaps such a child another way.
pub(crate) fn watch_exit(
    queue: &OwnedFd,
    pid: Pid,
    _pidfd: Option<&OwnedFd>,
    token: u64,
) -> std::io::Result<()> {
    // SAFETY: a zeroed kevent is a valid value; the fields that matter are set below.
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = pid.as_raw() as libc::uintptr_t;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD | libc::EV_ONESHOT;
    change.fflags = libc::NOTE_EXIT;
    change.udata = token as usize as *mut libc::c_void;
    // SAFETY: one valid change in, no event list out, no timeout.
    let r = unsafe {
        libc::kevent(
            queue.as_raw_fd(),
            &change,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if has_ended(pid) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Whether child `pid` has ended (a zombie, not reaped), without waiting or reaping.
fn has_ended(pid: Pid) -> bool {
    // SAFETY: a zeroed siginfo is a valid out-parameter; waitid writes only into it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let id = pid.as_raw() as libc::id_t;
        let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
        libc::waitid(libc::P_PID, id, &mut info, flags) == 0 && info.si_pid != 0
    }
}

/// Nothing to undo: a `NOTE_EXIT` watch is one-shot, and the kernel drops it when the child is
/// reaped.
pub(crate) fn unwatch_exit(_: &OwnedFd, _: Pid, _: Option<&OwnedFd>) {}

/// Blocks until at least one watched child has ended (or its watch failed); writes their
/// tokens into `tokens` and returns how many (`tokens` must not be empty). Goes on waiting when
/// a signal interrupts it.
pub(crate) fn wait_exits(queue: &OwnedFd, tokens: &mut [u64]) -> std::io::Result<usize> {
    // SAFETY: a zeroed kevent is a valid value.
    let mut events: [libc::kevent; 64] = unsafe { std::mem::zeroed() };
    let room = events.len().min(tokens.len()) as libc::c_int;
    // SAFETY: no changes in; `events` is a writable array of at least `room` kevents.
    let n = super::retrying(|| unsafe {
        libc::kevent(
            queue.as_raw_fd(),
            std::ptr::null(),
            0,
            events.as_mut_ptr(),
            room,
            std::ptr::null(),
        )
    })?;
    for (token, event) in tokens.iter_mut().zip(&events[..n]) {
        *token = event.udata as usize as u64;
    }
    Ok(n.min(tokens.len()))
}

/// Blocks until child `pid` has ended and leaves it a zombie (`waitid` with `WNOWAIT`), so its
/// pid, which is also its process group id, cannot be reused yet.
pub(crate) fn wait_without_reaping(pid: Pid) {
    // An error other than an interruption means there is nothing to wait for.
    // SAFETY: a zeroed siginfo is a valid out-parameter; waitid writes only into it.
    let _ = super::retrying(|| unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let id = pid.as_raw() as libc::id_t;
        libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT)
    });
}

/// Nothing to prepare: [`on_stack`] starts a thread of its own.
pub(crate) fn before_fork() {}

/// Runs `run` on a raw POSIX thread with a `size`-byte stack and waits for it (not a `std`
/// thread, whose start takes the standard library's thread-registry lock). Runs it on the
/// current stack if no thread can be started; `None` if the thread ended without a value (it
/// panicked past every `catch_unwind`).
pub(crate) fn on_stack<R, F: FnOnce() -> R>(size: usize, run: F) -> Option<R> {
    /// What the thread takes (`run`) and gives back (its value).
    type Slot<F, R> = (Option<F>, Option<R>);
    extern "C" fn start<R, F: FnOnce() -> R>(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Slot` below, which outlives the thread (it is joined before the
        // slot goes out of scope) and is not touched by the waiting thread meanwhile.
        let slot = unsafe { &mut *arg.cast::<Slot<F, R>>() };
        if let Some(run) = slot.0.take() {
            slot.1 = Some(run());
        }
        std::ptr::null_mut()
    }
    let mut slot: Slot<F, R> = (Some(run), None);
    // SAFETY: zeroed attribute and thread handles are valid out-parameters; the thread gets a
    // pointer to `slot`, which lives until after `pthread_join` returns.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut thread: libc::pthread_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, size);
        let arg = (&mut slot as *mut Slot<F, R>).cast::<libc::c_void>();
        let started = libc::pthread_create(&mut thread, &attr, start::<R, F>, arg) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if started {
            libc::pthread_join(thread, std::ptr::null_mut());
        }
    }
    match slot {
        (_, Some(value)) => Some(value),
        (Some(run), None) => Some(run()),
        (None, None) => None,
    }
}

/// Linux leaves a worker's page out of later forks (`MADV_DONTFORK`); macOS copies it, as
/// before (`minherit` would do, but macOS has never run here), and the child unmaps it.
pub(crate) fn keep_out_of_forks(_: usize, _: usize) -> bool {
    false
}

/// No sealed shared-memory files here (no `memfd_create`): a worker's page is an anonymous
/// shared mapping, which no process can reach as a file to truncate (there is no
/// `/proc/self/map_files/`), and the zygote is not offered on macOS.
pub(crate) fn shared_memory_file(_: usize) -> std::io::Result<OwnedFd> {
    Err(std::io::ErrorKind::Unsupported.into())
}
