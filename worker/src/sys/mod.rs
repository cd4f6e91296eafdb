//! The child side's platform layer: every call that differs between Linux and macOS, behind one
//! interface that `linux.rs` and `macos.rs` each implement in full.
//!
//! The interface (each platform file defines all of it, with these signatures):
//! - `NO_SIGPIPE: c_int`: the `send` flag that turns `SIGPIPE` into an error (0 where the
//!   parent sets `SO_NOSIGPIPE` on the socket instead);
//! - `signal_count() -> c_int`: one past the highest signal number;
//! - `keep_freed_memory()`: malloc tuning for workers (or nothing);
//! - `limit_memory(bytes: u64)`: caps the address space where the platform enforces a cap;
//! - `die_with_parent(parent: u32)`: arranges for this child, and its process group, to be
//!   killed when the process `parent` ends;
//! - `with_stack(red_zone: usize, f) -> Option<R>`: runs `f` with at least `red_zone` bytes of
//!   stack, or returns `None` where the stack cannot grow and too little is left;
//! - `loader_version() -> Option<(u64, u64)>` and `code_segments(identity) -> Vec<Segment>`: the
//!   loader's (loads, unloads) counters and the executable code mapped now (see
//!   [`crate::proto::code_map`]); both take the loader's lock, so nothing calls them in a forked
//!   child (glibc does not reset that lock in a fork child);
//! - `unread_by_peer(fd) -> Option<usize>`: bytes this end sent on a socket that its peer has
//!   not read yet, where the platform can tell (`None` elsewhere: then no reply ring is used,
//!   see [`crate::shared::reply_ring::AVAILABLE`]);
//! - `Threads::open() -> Option<Threads>` and `Threads::count(&self) -> Option<u64>`: a figure
//!   that moves with the number of threads of this process (and only with it), read with one
//!   system call;
//! - `adopt_orphans()`: makes the processes this one's children leave behind its children
//!   where the platform can (so a double fork stays visible to `waitid`), or nothing.
//!
//! Everything else in this crate is plain POSIX and calls these without `cfg`. Other platforms
//! do not build: forkpool runs on Linux and macOS only.
//!
//! Invariant: what runs in a freshly forked child ([`die_with_parent`], [`limit_memory`],
//! [`keep_freed_memory`], [`signal_count`]) takes no lock another thread of the parent may have
//! held at the fork (starting a thread allocates, which the C library makes safe after `fork`).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("forkpool-worker runs on Linux and macOS only");

pub(crate) use os::{
    NO_SIGPIPE, Threads, adopt_orphans, code_segments, die_with_parent, keep_freed_memory,
    limit_memory, loader_version, signal_count, unread_by_peer, with_stack,
};

/// An executable address range of one loaded object, as the platform's loader lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The first address of the range.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// The identity of the object holding it.
    pub identity: u64,
}

/// Kills this child's process group if it leads one (it always should: see
/// [`crate::child::setup::prepare`]), else only itself: what a child does when its parent is gone.
/// Async-signal-safe.
fn kill_own_group() {
    // SAFETY: `getpid`, `getpgrp` and `kill` are async-signal-safe and touch no memory.
    unsafe {
        let me = libc::getpid();
        libc::kill(if libc::getpgrp() == me { 0 } else { me }, libc::SIGKILL);
    }
}

/// Blocks every signal in the calling thread; returns the mask it had, for
/// [`restore_signals`]. The parent holds every signal across `fork` (a signal sent meanwhile
/// waits until the child has reset the program's handlers), and a helper thread that must never
/// run a handler starts with them blocked.
///
/// ```
/// let old = forkpool_worker::child::setup::block_all_signals();
/// forkpool_worker::child::setup::restore_signals(&old);
/// ```
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: zeroed sigsets are valid out-parameters; this changes only this thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

/// Gives the calling thread back the mask [`block_all_signals`] returned.
///
/// ```
/// let old = forkpool_worker::child::setup::block_all_signals();
/// forkpool_worker::child::setup::restore_signals(&old);
/// ```
pub fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask this thread had; this changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}
