//! The only place that calls `fork`: every child of this crate is born here and leaves through
//! `_exit`, never returning into the caller's code.
//!
//! Invariant: after the fork the child holds only its own end of its socket pair (every other
//! descriptor of this crate is closed in it) and the parent only its own end, so end-of-stream
//! means the peer is gone and no child can reach another child's socket.

use crate::channel::{self, Registered};
use crate::error::PoolError;
use forkpool_worker::child::{self, ChildOptions};
use forkpool_worker::wire::Socket;
use nix::unistd::{ForkResult, Pid, fork, setpgid};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The stack every child runs its tasks on, whatever the stack of the thread that forked it: a
/// main thread's usual 8 MiB.
pub(crate) const CHILD_STACK: usize = 8 << 20;

/// Forks a child that runs `child_main` on its end of a socket pair, `socket` (and the write
/// end of its doorbell pipe, if it has one), and exits with the code it returns. Returns the
/// child's pid.
///
/// In the child, every descriptor this crate has open except `socket` and `doorbell`, and every
/// progress page except the one at `page` (if any), is closed or unmapped before anything else
/// runs (see [`channel`]); in the parent, `socket` and `doorbell` are closed once the child has
/// them. The child is the leader of its own process group.
pub(crate) fn spawn(
    options: ChildOptions,
    socket: Registered<Socket>,
    doorbell: Option<Registered<OwnedFd>>,
    page: Option<usize>,
    child_main: impl FnOnce(Socket, Option<OwnedFd>) -> i32,
) -> Result<Pid, PoolError> {
    child::before_fork();
    let parent = std::process::id();
    // Held across the fork: the child sees exactly the descriptors open at that moment.
    let mut register = channel::lock_register();
    // Hold stdout and stderr across the fork, as glibc holds malloc's locks: another thread of
    // the parent may be printing at this moment, and a child forked while it held one of these
    // locks would block forever on its first print. Held by this thread, they are free in the
    // child once it drops its copies of the guards. (They are reentrant, so a caller that holds
    // one itself does not deadlock here.)
    let mut stdio = (std::io::stdout().lock(), std::io::stderr().lock());
    // A partial line in stdout's buffer would be copied into the child and printed by it too.
    let _ = stdio.0.flush();
    // Every signal waits while the child has the program's handlers: it resets them first
    // thing, then unblocks (`child::prepare`). The parent's mask is restored right after.
    let signals = child::block_all_signals();
    // SAFETY: `fork` is sound to call; what must hold is that the child, a copy of one thread
    // of a possibly multi-threaded process, does not wait on a lock another thread held at the
    // moment of the fork, and never returns into code that assumes it is the parent. The child
    // branch below runs only the worker crate's set-up and loop (which take no such lock: stdio
    // locks and the register's are held by this thread, see above, and the panic hook was
    // installed before) and the caller's `child_main`, and always ends in `_exit`.
    let forked = unsafe { fork() };
    drop(stdio);
    match forked {
        Ok(ForkResult::Child) => {
            let kept = [
                Some(socket.as_raw_fd()),
                doorbell.as_ref().map(|d| d.as_raw_fd()),
            ];
            register.keep_only(&kept.into_iter().flatten().collect::<Vec<_>>(), page);
            drop(register);
            let socket = socket.into_inner();
            let doorbell = doorbell.map(Registered::into_inner);
            let run = move || {
                catch_unwind(AssertUnwindSafe(|| {
                    child::prepare(options, parent);
                    child_main(socket, doorbell)
                }))
                .unwrap_or(child::EXIT_CHILD_PANICKED)
            };
            let code = on_child_stack(run);
            // What the child printed and did not flush yet: `_exit` would lose it.
            let _ = std::io::stdout().flush();
            // SAFETY: `_exit` ends the process at once without running the parent's atexit
            // handlers (its stdio buffers were flushed before the fork, the child's just now).
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            child::restore_signals(&signals);
            drop(register);
            drop(socket);
            drop(doorbell);
            // Also done by the child; doing it here too closes the race with an early killpg.
            let _ = setpgid(child, child);
            Ok(child)
        }
        Err(errno) => {
            child::restore_signals(&signals);
            drop(register);
            Err(PoolError::Fork(errno.into()))
        }
    }
}

/// In a freshly forked child: runs `run` on a [`CHILD_STACK`] stack (the thread that forked may
/// have had a small stack; a replacement worker forked from a 256 KiB thread must not run tasks
/// on 256 KiB), without starting a `std` thread: that takes the standard library's
/// thread-registry lock, which another thread of the parent may have held at the fork (seen
/// here: a worker hung in `set_current_info` forever). See `sys::on_stack` for how each platform
/// does it.
fn on_child_stack(run: impl FnOnce() -> i32) -> i32 {
    crate::sys::on_stack(CHILD_STACK, run).unwrap_or(child::EXIT_CHILD_PANICKED)
}
