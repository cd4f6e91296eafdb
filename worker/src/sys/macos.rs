//! macOS: a `kqueue` watch on the parent's exit, local datagram sockets (`SO_NOSIGPIPE` set by
//! the parent), no enforced memory cap, a fixed stack that is checked rather than grown, and
//! dyld's image list.
//!
//! Type-checked for `x86_64-apple-darwin` and `aarch64-apple-darwin`, never run here (see the
//! README's Platforms section).

use super::{Segment, kill_own_group};
use std::ffi::{CStr, c_char, c_void};
use std::time::Duration;

/// macOS has no `MSG_NOSIGNAL`: the parent sets `SO_NOSIGPIPE` on both ends instead.
pub(crate) const NO_SIGPIPE: libc::c_int = 0;

/// One past the highest signal number (`NSIG`: macOS has no real-time signals).
pub(crate) fn signal_count() -> libc::c_int {
    32
}

/// macOS's malloc keeps its own settings.
pub(crate) fn keep_freed_memory() {}

/// Nothing: macOS accepts `RLIMIT_AS` but does not enforce it, so the parent refuses a pool
/// with a memory limit (`PoolError::Unsupported`) before forking.
pub(crate) fn limit_memory(_bytes: u64) {}

/// How often the watcher looks at `getppid` when it has no `kqueue` to wait on.
const POLL_PARENT: Duration = Duration::from_millis(100);

/// Arranges for this child, and its process group, to be killed when the process `parent`
/// ends: a `kqueue` with an `EVFILT_PROC`/`NOTE_EXIT` filter on `parent`, waited on by a small
/// watcher thread. The filter is registered here, before this returns; then `getppid` is
/// checked, so a parent that died before the registration (whose exit the filter will never
/// see) is noticed too. Without a `kqueue` the watcher polls `getppid` instead. A worker also
/// exits when its task channel reports end-of-stream.
pub(crate) fn die_with_parent(parent: u32) {
    let watch = ExitWatch::register(parent);
    if parent_gone(parent) {
        kill_own_group();
    }
    // The watcher starts with every signal blocked: signals sent to the worker are the task
    // thread's to handle.
    let signals = super::block_all_signals();
    let _ = std::thread::Builder::new()
        .name("forkpool-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let exited = watch.is_some_and(|watch| watch.wait());
            while !exited && !parent_gone(parent) {
                std::thread::sleep(POLL_PARENT);
            }
            kill_own_group();
        });
    super::restore_signals(&signals);
}

/// Whether this child's parent is no longer `parent` (it ended: the child was re-parented).
fn parent_gone(parent: u32) -> bool {
    // SAFETY: `getppid` takes no argument and cannot fail.
    let now = unsafe { libc::getppid() };
    now != parent as libc::pid_t
}

/// A `kqueue` holding one `EVFILT_PROC`/`NOTE_EXIT` filter on the parent.
struct ExitWatch {
    kq: std::os::fd::OwnedFd,
}

impl ExitWatch {
    /// Registers the filter; `None` if there is no `kqueue` or the parent cannot be watched
    /// (it is already gone: `ESRCH`).
    fn register(parent: u32) -> Option<ExitWatch> {
        use std::os::fd::FromRawFd;
        // SAFETY: kqueue takes no argument and returns a new descriptor or -1.
        let kq = unsafe { libc::kqueue() };
        if kq < 0 {
            return None;
        }
        // SAFETY: the descriptor was just created and belongs to nobody else; FD_CLOEXEC keeps
        // it from a program a task `exec`s.
        let kq = unsafe {
            libc::fcntl(kq, libc::F_SETFD, libc::FD_CLOEXEC);
            std::os::fd::OwnedFd::from_raw_fd(kq)
        };
        let watch = ExitWatch { kq };
        let change = libc::kevent {
            ident: parent as libc::uintptr_t,
            filter: libc::EVFILT_PROC,
            flags: libc::EV_ADD | libc::EV_ONESHOT,
            fflags: libc::NOTE_EXIT,
            data: 0,
            udata: std::ptr::null_mut(),
        };
        // SAFETY: one valid change, no event list, no timeout: kevent only reads `change`.
        let r = unsafe {
            libc::kevent(
                watch.raw(),
                &change,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        (r == 0).then_some(watch)
    }

    fn raw(&self) -> libc::c_int {
        use std::os::fd::AsRawFd;
        self.kq.as_raw_fd()
    }

    /// Blocks until the parent's exit is reported (`true`), or until the `kqueue` fails
    /// (`false`: the caller then watches `getppid` itself). Retries when a signal interrupts
    /// the wait.
    fn wait(&self) -> bool {
        loop {
            // SAFETY: a zeroed kevent is a valid out-parameter (its pointer field is null).
            let mut event: libc::kevent = unsafe { std::mem::zeroed() };
            // SAFETY: no changes, room for one event, no timeout.
            let n = unsafe {
                libc::kevent(
                    self.raw(),
                    std::ptr::null(),
                    0,
                    &mut event,
                    1,
                    std::ptr::null(),
                )
            };
            if n > 0 {
                let (filter, fflags) = (event.filter, event.fflags);
                return filter == libc::EVFILT_PROC && fflags & libc::NOTE_EXIT != 0;
            }
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }
}

/// Runs `f` if at least `red_zone` bytes of stack are left, else returns `None`. (`stacker`
/// needs the target's C toolchain to build, so it is used on Linux only; here a value too deep
/// for the calling thread's stack is an error rather than an overflow.)
pub(crate) fn with_stack<R>(red_zone: usize, f: impl FnOnce() -> R) -> Option<R> {
    if stack_left().is_some_and(|left| left < red_zone) {
        return None;
    }
    Some(f())
}

/// Bytes of stack left below the current frame.
fn stack_left() -> Option<usize> {
    let here = 0u8;
    let here = &here as *const u8 as usize;
    // SAFETY: both calls only read the calling thread's stack bounds.
    let (top, size) = unsafe {
        let me = libc::pthread_self();
        (
            libc::pthread_get_stackaddr_np(me) as usize,
            libc::pthread_get_stacksize_np(me),
        )
    };
    let bottom = top.checked_sub(size)?;
    here.checked_sub(bottom)
}

// dyld's image list, from libSystem (which every program links). Declared here: libc's
// declarations are deprecated in favour of the `mach2` crate, a dependency for three functions.
unsafe extern "C" {
    fn _dyld_image_count() -> u32;
    fn _dyld_get_image_header(image_index: u32) -> *const c_void;
    fn _dyld_get_image_name(image_index: u32) -> *const c_char;
}

/// dyld has no load/unload counters: every refresh takes a new snapshot.
pub(crate) fn loader_version() -> Option<(u64, u64)> {
    None
}

/// One range per image, each known by `identity(header address, file name)`: an address
/// belongs to the image with the greatest header address at or below it, up to the next
/// image's header.
pub(crate) fn code_segments(identity: fn(u64, &[u8]) -> u64) -> Vec<Segment> {
    // SAFETY: `_dyld_image_count` only reads dyld's image list.
    let count = unsafe { _dyld_image_count() };
    let mut images: Vec<(u64, u64)> = Vec::with_capacity(count as usize);
    for index in 0..count {
        // SAFETY: `index` is below the count; dyld returns null for an image unloaded
        // meanwhile, and otherwise a header and a C string that live while the image does.
        let (header, name) =
            unsafe { (_dyld_get_image_header(index), _dyld_get_image_name(index)) };
        if header.is_null() {
            continue;
        }
        let name = if name.is_null() {
            &[][..]
        } else {
            // SAFETY: a non-null image name is a C string (see above).
            unsafe { CStr::from_ptr(name) }.to_bytes()
        };
        let base = header as usize as u64;
        images.push((base, identity(base, name)));
    }
    images.sort_unstable();
    let ends = images.iter().skip(1).map(|&(base, _)| base);
    let ends = ends.chain(std::iter::once(u64::MAX));
    images
        .iter()
        .zip(ends)
        .map(|(&(start, identity), end)| Segment {
            start,
            end,
            identity,
        })
        .collect()
}

/// Whether a peer has read what was sent: macOS has no `SIOCOUTQ` for Unix sockets (a sent
/// datagram moves to the receiver's buffer at once), so it cannot tell; no reply ring is used.
pub(crate) fn unread_by_peer(_fd: std::os::fd::RawFd) -> Option<usize> {
    None
}

/// This process's threads, as the kernel's task information counts them (`proc_pidinfo`).
#[derive(Debug)]
pub(crate) struct Threads;

impl Threads {
    /// Always there on macOS.
    pub(crate) fn open() -> Option<Threads> {
        Some(Threads)
    }

    /// The number of threads of this process now (its parent watcher among them).
    pub(crate) fn count(&self) -> Option<u64> {
        // SAFETY: a zeroed proc_taskinfo is a valid out-parameter.
        let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
        // SAFETY: getpid cannot fail; proc_pidinfo writes at most `size` bytes into `info`.
        let got = unsafe {
            libc::proc_pidinfo(
                libc::getpid(),
                libc::PROC_PIDTASKINFO,
                0,
                (&mut info as *mut libc::proc_taskinfo).cast(),
                size,
            )
        };
        (got == size).then(|| u64::try_from(info.pti_threadnum).unwrap_or(0))
    }
}

/// Nothing: macOS has no subreaper; what a child leaves behind goes to `launchd`.
pub(crate) fn adopt_orphans() {}
