//! Sockets between the parent and its children, and the register of every socket this crate
//! has open, so that a forked child closes all of them but its own.
//!
//! Each child gets one socket pair (datagrams that keep their boundaries: `SOCK_SEQPACKET`):
//! the parent sends tasks and reads replies on its end, the child the other way round.
//! Nothing a child can reach is shared with another child, so the parent knows who sent a
//! frame by the socket it came on, never by what the frame says.
//!
//! Invariants:
//! - Every descriptor this crate opens enters the register under the register's lock in the
//!   same critical section that opens it, and leaves it under the lock in the section that
//!   closes it. `fork::spawn` holds the lock across `fork`, so a child sees exactly the
//!   descriptors that are open, never a number already reused by someone else.
//! - A child forked by `fork::spawn` closes every registered descriptor except its own, and
//!   unmaps every registered progress page except its own: a task cannot write to a sibling's
//!   socket or counters, read its parent's replies, or wake another pool.
//! - A registered value dropped in another process than the one that opened it (a copy in a
//!   forked child) closes nothing there.
//! - All of them are close-on-exec: a program the parent or a task `exec`s inherits none.

use crate::child::owner::Owner;
use crate::error::PoolError;
use forkpool_worker::progress::SharedRegion;
use forkpool_worker::wire::Socket;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

/// What this crate has open in this process that a child must not keep.
struct Entries {
    /// Open descriptors.
    fds: Vec<RawFd>,
    /// Addresses of mapped progress pages (each `SharedRegion::mapped_len()` bytes).
    pages: Vec<usize>,
}

static REGISTER: Mutex<Entries> = Mutex::new(Entries {
    fds: Vec::new(),
    pages: Vec::new(),
});

/// The send buffer asked for (the kernel may grant less; the fragment follows what it grants).
const SEND_BUFFER: libc::c_int = 512 * 1024;

/// The register, locked: what `fork::spawn` holds across a fork.
pub(crate) struct Register(MutexGuard<'static, Entries>);

/// Locks the register (waiting for another thread's open, close or fork to finish).
pub(crate) fn lock_register() -> Register {
    Register(REGISTER.lock().unwrap_or_else(|p| p.into_inner()))
}

impl Register {
    /// In a freshly forked child: closes every registered descriptor except `keep`, unmaps
    /// every registered page except `keep_page`, and leaves only those registered. Makes only
    /// `close` and `munmap` calls and edits the lists in place.
    pub fn keep_only(&mut self, keep: &[RawFd], keep_page: Option<usize>) {
        let entries = &mut *self.0;
        for &fd in &entries.fds {
            if !keep.contains(&fd) {
                // SAFETY: `fd` was open in the parent at the fork (the register is locked), so
                // this process holds its copy; nothing in the child uses it (the objects that
                // own it are the parent's, and a registered value closes nothing in a child).
                unsafe { libc::close(fd) };
            }
        }
        entries.fds.retain(|fd| keep.contains(fd));
        for &page in &entries.pages {
            if Some(page) != keep_page {
                // SAFETY: the page was mapped in the parent at the fork, with this length; the
                // objects that own it are the parent's and are never used in the child.
                unsafe { libc::munmap(page as *mut libc::c_void, SharedRegion::mapped_len()) };
            }
        }
        entries.pages.retain(|&page| Some(page) == keep_page);
    }
}

#[cfg(test)]
impl Register {
    /// Whether `fd` is registered.
    pub fn holds(&self, fd: RawFd) -> bool {
        self.0.fds.contains(&fd)
    }
}

/// A descriptor (or a type holding one) that is in the register while it is open.
#[derive(Debug)]
pub(crate) struct Registered<T: AsRawFd> {
    inner: ManuallyDrop<T>,
    /// The process that opened it.
    owner: Owner,
}

impl<T: AsRawFd> Registered<T> {
    /// Registers `inner`; the caller holds the register's lock since opening it.
    fn new(register: &mut Register, inner: T) -> Registered<T> {
        register.0.fds.push(inner.as_raw_fd());
        Registered {
            inner: ManuallyDrop::new(inner),
            owner: Owner::here(),
        }
    }

    /// In a forked child, for a descriptor it keeps: stops tracking it here (the child's
    /// register was trimmed to it by `keep_only`); the value closes its descriptor on drop as
    /// usual.
    pub fn into_inner(mut self) -> T {
        // SAFETY: `inner` is taken once, and `self` is forgotten right after, so it is never
        // dropped a second time.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        std::mem::forget(self);
        inner
    }
}

impl<T: AsRawFd> Deref for Registered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsRawFd> Drop for Registered<T> {
    fn drop(&mut self) {
        if !self.owner.is_here() {
            // A copy in a forked child: the number was closed at the fork and may name
            // something else by now.
            return;
        }
        let mut register = lock_register();
        let fd = self.inner.as_raw_fd();
        register.0.fds.retain(|&f| f != fd);
        // SAFETY: dropped once, here, while the register is locked: no fork sees the number
        // registered after it is closed.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

/// The two ends of a parent–child socket pair.
pub(crate) struct Pair {
    pub parent: Registered<Socket>,
    pub child: Registered<Socket>,
}

/// Makes a socket pair for a new child.
pub(crate) fn pair() -> Result<Pair, PoolError> {
    let mut register = lock_register();
    let [a, b] = crate::sys::socket_pair().map_err(PoolError::Channel)?;
    let fragment = fragment_for(&a).min(fragment_for(&b));
    Ok(Pair {
        parent: Registered::new(&mut register, Socket::new(a, fragment)),
        child: Registered::new(&mut register, Socket::new(b, fragment)),
    })
}

/// The most frame bytes one datagram on `fd` can carry: half its send buffer (what the kernel
/// grants after we ask for [`SEND_BUFFER`]), in whole pages, at most [`MAX_FRAGMENT`](forkpool_worker::wire::MAX_FRAGMENT).
fn fragment_for(fd: &OwnedFd) -> usize {
    let fd = fd.as_raw_fd();
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_SNDBUF takes a c_int; failure leaves the default in place.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER as *const libc::c_int).cast(),
            size,
        )
    };
    let mut granted: libc::c_int = 0;
    let mut len = size;
    // SAFETY: SO_SNDBUF writes a c_int into `granted`; `len` says how big it is.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    let granted = if ok { granted.max(0) as usize } else { 0 };
    forkpool_worker::wire::fragment_for(granted)
}

/// A pipe whose read end wakes a waiting caller when written to.
pub(crate) struct WakePipe {
    pub read: Registered<OwnedFd>,
    pub write: Registered<OwnedFd>,
}

/// Makes a registered, non-blocking, close-on-exec pipe.
pub(crate) fn wake_pipe() -> Result<WakePipe, PoolError> {
    let mut register = lock_register();
    let [read, write] = crate::sys::pipe().map_err(PoolError::Channel)?;
    Ok(WakePipe {
        read: Registered::new(&mut register, read),
        write: Registered::new(&mut register, write),
    })
}

/// A worker's progress page, registered so that other children unmap it at their fork.
#[derive(Debug)]
pub(crate) struct RegisteredRegion {
    page: ManuallyDrop<SharedRegion>,
    owner: Owner,
}

/// Maps a progress page for a new worker forked from this process: in a sealed shared-memory
/// file where the platform has them (Linux), else (macOS) an anonymous shared mapping.
///
/// The parent reads this memory, and a shared mapping cut short under a reader kills it with
/// `SIGBUS`. An anonymous shared mapping is a file too on Linux: a task running as root opens
/// it through `/proc/self/map_files/` and may truncate it. The file's size is sealed, so that
/// is refused. The file is closed here (the mapping keeps its memory): the child shares the
/// page through the fork, and no descriptor is left for other children to close. macOS has no
/// `/proc/self/map_files/`: its anonymous mapping cannot be reached as a file.
pub(crate) fn shared_region() -> Result<RegisteredRegion, PoolError> {
    let mut register = lock_register();
    let page = match crate::sys::shared_memory_file(SharedRegion::mapped_len()) {
        // Open only while the register is locked: no fork sees it.
        Ok(file) => SharedRegion::map_file(&file),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => SharedRegion::new(),
        Err(e) => Err(e),
    };
    let page = page.map_err(PoolError::SharedMemory)?;
    Ok(RegisteredRegion::new(&mut register, page))
}

impl RegisteredRegion {
    /// Registers `page`; the caller holds the register's lock since mapping it.
    fn new(register: &mut Register, page: SharedRegion) -> RegisteredRegion {
        register.0.pages.push(page.address());
        RegisteredRegion {
            page: ManuallyDrop::new(page),
            owner: Owner::here(),
        }
    }
}

impl Deref for RegisteredRegion {
    type Target = SharedRegion;
    fn deref(&self) -> &SharedRegion {
        &self.page
    }
}

impl Drop for RegisteredRegion {
    fn drop(&mut self) {
        if !self.owner.is_here() {
            return; // a copy in a forked child: unmapped at the fork
        }
        let mut register = lock_register();
        let address = self.page.address();
        register.0.pages.retain(|&p| p != address);
        // SAFETY: dropped once, here, while the register is locked.
        unsafe { ManuallyDrop::drop(&mut self.page) };
    }
}

/// A registered pidfd for child `pid`, where the platform has them.
pub(crate) fn pidfd(pid: nix::unistd::Pid) -> Option<Registered<OwnedFd>> {
    let mut register = lock_register();
    let fd = crate::sys::pidfd_open(pid)?;
    Some(Registered::new(&mut register, fd))
}

/// Opens a descriptor (or a type holding one) with `open` and registers it in the same
/// critical section (the reaper's event queue, a file). `open` must not wait: the register is
/// locked meanwhile.
pub(crate) fn open_registered<T: AsRawFd>(
    open: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<Registered<T>> {
    let mut register = lock_register();
    let fd = open()?;
    Ok(Registered::new(&mut register, fd))
}

/// Receives descriptors with `receive` (a `recvmsg` that carries `SCM_RIGHTS`, with
/// `MSG_CMSG_CLOEXEC` where it exists) and registers them in the same critical section, so no
/// fork sees them unregistered. `receive` must not wait: the register is locked meanwhile.
pub(crate) fn receive_registered<R>(
    receive: impl FnOnce() -> std::io::Result<(R, Vec<OwnedFd>)>,
) -> std::io::Result<(R, Vec<Registered<OwnedFd>>)> {
    let mut register = lock_register();
    let (received, fds) = receive()?;
    let fds = fds
        .into_iter()
        .map(|fd| Registered::new(&mut register, fd))
        .collect();
    Ok((received, fds))
}

impl Registered<OwnedFd> {
    /// The same registered descriptor as a socket carrying at most `fragment` frame bytes per
    /// datagram (in the zygote, the child's end of a socket pair it received).
    pub fn into_socket(self, fragment: usize) -> Registered<Socket> {
        let owner = self.owner;
        // Still registered: the number stays in the register, now held by the socket.
        let fd = self.into_inner();
        Registered {
            inner: ManuallyDrop::new(Socket::new(fd, fragment)),
            owner,
        }
    }
}

/// Maps a progress page for a new worker in a sealed shared-memory file, for a worker that
/// another process (the zygote) forks: the page and the file, which travels to that process.
pub(crate) fn shared_region_in_file() -> Result<(RegisteredRegion, Registered<OwnedFd>), PoolError>
{
    let mut register = lock_register();
    let file = crate::sys::shared_memory_file(SharedRegion::mapped_len())
        .map_err(PoolError::SharedMemory)?;
    let file = Registered::new(&mut register, file);
    let page = SharedRegion::map_file(&*file).map_err(PoolError::SharedMemory)?;
    Ok((RegisteredRegion::new(&mut register, page), file))
}

/// Maps the progress page held by `file` (in the zygote, the file the program sent).
pub(crate) fn shared_region_of_file(file: &OwnedFd) -> Result<RegisteredRegion, PoolError> {
    let mut register = lock_register();
    let page = SharedRegion::map_file(file).map_err(PoolError::SharedMemory)?;
    Ok(RegisteredRegion::new(&mut register, page))
}
