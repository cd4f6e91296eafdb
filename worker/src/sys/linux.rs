//! Linux (glibc and musl): the parent-death signal, `RLIMIT_AS`, glibc's malloc tuning,
//! real-time signals, `MSG_NOSIGNAL`, stack growth with `stacker`, and `dl_iterate_phdr`.

use super::{Segment, kill_own_group};
use std::sync::atomic::{AtomicI32, Ordering};

/// `send` without `SIGPIPE` when the peer is gone (the error is returned instead).
pub(crate) const NO_SIGPIPE: libc::c_int = libc::MSG_NOSIGNAL;

/// One past the highest signal number, real-time signals included.
pub(crate) fn signal_count() -> libc::c_int {
    libc::SIGRTMAX() + 1
}

/// Makes glibc's malloc keep memory it frees instead of returning it to the kernel at once.
///
/// A worker receives and decodes every message into fresh buffers; with glibc's defaults a
/// buffer over 128 KiB is a fresh `mmap` each time, so every 1 MiB item costs 256 page faults
/// twice (profiled with `perf`: page faults and page clearing are most of a worker's time
/// without this). With it, 1 MiB items in, length out ran at 2.0 GB/s against 1.44 (best of
/// 20, a scratch program; the same workload is row (e) in of `cargo run --release --example
/// compare -- --only e_in --no-python`). A worker keeps at most 64 MiB of freed memory (not
/// measured against other values). Only in workers: the parent is the caller's process and
/// keeps its own settings.
#[cfg(target_env = "gnu")]
pub(crate) fn keep_freed_memory() {
    // SAFETY: mallopt only changes malloc's tuning; this process has one thread and glibc
    // reset malloc's locks in the child after fork.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Another C library than glibc: its malloc keeps its own settings.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn keep_freed_memory() {}

/// Caps the address space at `bytes` (`RLIMIT_AS`): an allocation past it fails.
pub(crate) fn limit_memory(bytes: u64) {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes);
}

/// The pid of the parent this child watches (0: none).
static PARENT: AtomicI32 = AtomicI32::new(0);

/// The signal the kernel sends a child when the thread that forked it ends (`PR_SET_PDEATHSIG`).
/// A real-time signal no task is likely to use.
fn parent_death_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Runs when the kernel reports that the forking thread ended. That thread may have ended while
/// the parent process lives on (a pool built on a short-lived thread): then `getppid` still
/// names the parent and nothing happens. If the parent process is gone, the child and every
/// process of its group (grandchildren started by a task) are killed at once.
extern "C" fn on_parent_death(_: libc::c_int) {
    // SAFETY: `getppid` is async-signal-safe and touches no memory.
    if unsafe { libc::getppid() } != PARENT.load(Ordering::Relaxed) {
        kill_own_group();
    }
}

/// Arranges for this child to die with its parent: the kernel signals the child when the
/// thread that forked it ends (`PR_SET_PDEATHSIG`), and the handler checks `getppid`. A worker
/// also exits when its task channel reports end-of-stream.
pub(crate) fn die_with_parent(parent: u32) {
    PARENT.store(parent as i32, Ordering::Relaxed);
    let signal = parent_death_signal();
    // SAFETY: a zeroed sigaction is valid; the handler only calls async-signal-safe functions;
    // prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory effects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
    }
    // The parent may have died between the fork and the prctl: then no signal will come.
    on_parent_death(0);
}

/// The size of each new stack segment [`with_stack`] allocates.
const GROW_BY: usize = 1024 * 1024;

/// Runs `f`, on a fresh heap-allocated stack segment of [`GROW_BY`] bytes when less than
/// `red_zone` bytes of this one are left (`stacker::maybe_grow`). Always `Some`.
pub(crate) fn with_stack<R>(red_zone: usize, f: impl FnOnce() -> R) -> Option<R> {
    Some(stacker::maybe_grow(red_zone, GROW_BY, f))
}

/// The loader's (loads, unloads) counters: the first `dl_iterate_phdr` callback reads them and
/// stops.
#[cfg(target_pointer_width = "64")]
pub(crate) fn loader_version() -> Option<(u64, u64)> {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // The counters are present only if the loader's struct is long enough to hold them.
        let needed = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs)
            + std::mem::size_of::<libc::c_ulonglong>();
        if size >= needed {
            // SAFETY: the loader passes a valid `info` of `size` bytes for the duration of
            // the callback, and `data` is the `Option` `loader_version` lent it.
            unsafe {
                let found = &mut *data.cast::<Option<(u64, u64)>>();
                *found = Some(((*info).dlpi_adds, (*info).dlpi_subs));
            }
        }
        1 // stop after the first object
    }
    let mut found: Option<(u64, u64)> = None;
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects and only writes
    // through `data`, which points to `found`, alive for the whole call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut found).cast()) };
    found
}

/// The executable `PT_LOAD` segments of every loaded object (`dl_iterate_phdr`), each object
/// known by `identity(load address, file name)`.
#[cfg(target_pointer_width = "64")]
pub(crate) fn code_segments(identity: fn(u64, &[u8]) -> u64) -> Vec<Segment> {
    use std::ffi::{CStr, c_int, c_void};
    /// What `each` is lent: where to put the segments, and how to name an object.
    struct Found {
        segments: Vec<Segment>,
        identity: fn(u64, &[u8]) -> u64,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `info` whose `dlpi_phdr` points to `dlpi_phnum`
        // program headers and whose `dlpi_name` is null or a C string, all valid for the
        // duration of the callback; `data` is the `Found` `code_segments` lent it.
        unsafe {
            let found = &mut *data.cast::<Found>();
            let info = &*info;
            let name = if info.dlpi_name.is_null() {
                &[][..]
            } else {
                CStr::from_ptr(info.dlpi_name).to_bytes()
            };
            let base: u64 = info.dlpi_addr;
            let object = (found.identity)(base, name);
            let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
            };
            for header in headers {
                if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                    let start = base.wrapping_add(header.p_vaddr);
                    found.segments.push(Segment {
                        start,
                        end: start.saturating_add(header.p_memsz),
                        identity: object,
                    });
                }
            }
        }
        0 // go on
    }
    let mut found = Found {
        segments: Vec::new(),
        identity,
    };
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects and only writes
    // through `data`, which points to `found`, alive for the whole call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut found).cast()) };
    found.segments
}

/// 32-bit Linux: no loader counters are read (see [`code_segments`]).
#[cfg(not(target_pointer_width = "64"))]
pub(crate) fn loader_version() -> Option<(u64, u64)> {
    None
}

/// 32-bit Linux: no code is listed, so every address is refused (`Pool` calls fail with
/// `CodeNotLoaded`; `FnPool` sends no address).
#[cfg(not(target_pointer_width = "64"))]
pub(crate) fn code_segments(_: fn(u64, &[u8]) -> u64) -> Vec<Segment> {
    Vec::new()
}

/// Bytes sent on socket `fd` that its peer has not read yet (`SIOCOUTQ`: a Unix socket's sent
/// datagrams count against the sender until the receiver reads them).
pub(crate) fn unread_by_peer(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (Linux defines it as TIOCOUTQ) writes one int through the pointer,
    // which is live and writable.
    let done = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut bytes) };
    (done == 0).then(|| usize::try_from(bytes).unwrap_or(0))
}

/// This process's threads, as `/proc/self/task` counts them: the link count of that directory
/// is 2 and one per thread, and `fstat` reads it in one system call.
#[derive(Debug)]
pub(crate) struct Threads(std::os::fd::OwnedFd);

impl Threads {
    /// Opens `/proc/self/task` of this process (`None` without `/proc`).
    pub(crate) fn open() -> Option<Threads> {
        let path = c"/proc/self/task";
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: opens a NUL-terminated path; the descriptor returned is new and ours.
        let fd = unsafe { libc::open(path.as_ptr(), flags) };
        // SAFETY: `fd` is a descriptor just opened and owned by nobody else.
        (fd >= 0).then(|| Threads(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// The directory's link count now: 2 and one per thread of this process.
    pub(crate) fn count(&self) -> Option<u64> {
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        // SAFETY: fstat on an open descriptor, writing into a live stat.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_nlink as u64)
    }
}

/// Makes this process the reaper of what its descendants leave behind
/// (`PR_SET_CHILD_SUBREAPER`): a grandchild whose parent ended becomes this process's child,
/// visible to `waitid`, instead of `init`'s.
pub(crate) fn adopt_orphans() {
    // SAFETY: prctl with an integer argument changes only this process's attribute.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}
