//! The only place that calls `fork`: every child of this crate is born here and leaves through
//! `_exit`, never returning into the caller's code.
//!
//! Invariant: after the fork each side drops the part that belongs to the other, so the child
//! holds only its channel ends and the parent only its own (end-of-stream then means the peer
//! is gone).

use crate::error::PoolError;
use forkpool_worker::child::{self, ChildOptions};
use nix::unistd::{ForkResult, Pid, fork, setpgid};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Forks a child that runs `child_main(child_part)` and exits with the code it returns.
///
/// Returns the child's pid and `parent_part`. The child drops `parent_part` before it runs;
/// the parent drops `child_part` before it returns. The child is the leader of its own process
/// group.
pub(crate) fn spawn<P, C>(
    options: ChildOptions,
    parent_part: P,
    child_part: C,
    child_main: impl FnOnce(C) -> i32,
) -> Result<(Pid, P), PoolError> {
    child::before_fork();
    crate::channel::settle_before_fork();
    let parent = std::process::id();
    // Hold stdout and stderr across the fork, as glibc holds malloc's locks: another thread of
    // the parent may be printing at this moment, and a child forked while it held one of these
    // locks would block forever on its first print. Held by this thread, they are free in the
    // child once it drops its copies of the guards. (They are reentrant, so a caller that holds
    // one itself does not deadlock here.)
    let stdio = (std::io::stdout().lock(), std::io::stderr().lock());
    // SAFETY: `fork` is sound to call; what must hold is that the child, a copy of one thread
    // of a possibly multi-threaded process, does not wait on a lock another thread held at the
    // moment of the fork, and never returns into code that assumes it is the parent. The child
    // branch below runs only the worker crate's set-up and loop (which take no such lock: stdio
    // locks are held by this thread, see above, and the panic hook was installed before) and
    // the caller's `child_main`, and always ends in `_exit`.
    let forked = unsafe { fork() };
    drop(stdio);
    match forked {
        Ok(ForkResult::Child) => {
            drop(parent_part);
            let code = catch_unwind(AssertUnwindSafe(|| {
                child::prepare(options, parent);
                child_main(child_part)
            }))
            .unwrap_or(child::EXIT_CHILD_PANICKED);
            // SAFETY: `_exit` ends the process at once without running the parent's atexit
            // handlers or flushing its stdio buffers, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(child_part);
            // Also done by the child; doing it here too closes the race with an early killpg.
            let _ = setpgid(child, child);
            Ok((child, parent_part))
        }
        Err(errno) => Err(PoolError::Fork(errno.into())),
    }
}
