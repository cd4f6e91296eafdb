//! The process a value belongs to: only the process that built a pool, a process handle or a
//! registered descriptor may use or release it; a copy in a forked child must leave it alone.
//!
//! A fork is noticed without a system call: the C library runs this module's fork handler in
//! every child it forks (`fork`, and so `nix::unistd::fork` and the forks of this crate), which
//! counts forks. A value made before a fork sees the count changed in the child. (A child made
//! by a raw `clone` or `fork` system call runs no fork handler; then the check also compares
//! the process id, which it reads only when asked to be sure: see [`Owner::is_here`].)

use crate::error::PoolError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Forks the C library made that this process descends from (0 in the process that first
/// asked for an [`Owner`], and in any process before that).
static FORKS: AtomicU64 = AtomicU64::new(0);
/// The fork handler is registered. A flag, not a `Once`: a child forked while another thread
/// was inside a `Once` would wait for it forever. Threads that race at the first `Owner` may
/// each register the handler; the count then moves by more than one a fork, which is all the
/// same to the check (it compares for equality).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// Runs in a child right after the C library's `fork` returns in it: only an atomic add,
/// async-signal-safe.
extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// The process that built a value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pid: u32,
    /// `FORKS` when it was made.
    forks: u64,
}

impl Owner {
    /// The calling process.
    pub fn here() -> Owner {
        if !WATCHING.load(Ordering::Acquire) {
            // SAFETY: registers a child handler that only adds to an atomic (async-signal-safe,
            // takes no lock); no prepare or parent handler.
            unsafe { libc::pthread_atfork(None, None, Some(forked)) };
            WATCHING.store(true, Ordering::Release);
        }
        Owner {
            pid: std::process::id(),
            forks: FORKS.load(Ordering::Acquire),
        }
    }

    /// Whether the calling process is the owner: no fork counted since the owner was made, and
    /// the same process id. Reads no lock (a forked child may call it).
    pub fn is_here(self) -> bool {
        FORKS.load(Ordering::Acquire) == self.forks && std::process::id() == self.pid
    }

    /// `ForeignProcess` unless the calling process is the owner. The check of every call of a
    /// pool: it reads the fork count only (`getpid` is a system call, about 10% of a submitted
    /// trivial task's cost: 100,000 `submit`s then `wait`s, 1.57 -> 1.41 µs a task without
    /// it, alternating builds with a scratch program; the same workload is row (l) of `cargo
    /// run --release -p forkpool-bench --example compare -- --only l --no-python`), so a child made
    /// by a raw fork system call, which runs no fork handler, passes it;
    /// every safe way to fork runs the handlers.
    pub fn check(self) -> Result<(), PoolError> {
        if FORKS.load(Ordering::Acquire) == self.forks {
            return Ok(());
        }
        Err(PoolError::ForeignProcess {
            owner: self.pid,
            this: std::process::id(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_here_until_a_fork() {
        let owner = Owner::here();
        assert!(owner.is_here());
        assert!(owner.check().is_ok());
        // A copy made as by a process whose C library forked since.
        let before = Owner {
            forks: owner.forks.wrapping_sub(1),
            ..owner
        };
        assert!(!before.is_here());
        assert!(matches!(
            before.check(),
            Err(PoolError::ForeignProcess { owner, this }) if owner == before.pid && this == std::process::id()
        ));
    }
}
