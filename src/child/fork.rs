//! The only place that calls `fork`: every child of this crate is born here and leaves through
//! `_exit`, never returning into the caller's code.
//!
//! Invariant: after the fork the child holds only its own end of its socket pair (every other
//! descriptor of this crate is closed in it) and the parent only its own end, so end-of-stream
//! means the peer is gone and no child can reach another child's socket.
//!
//! # The lock order
//!
//! One total order of every lock a thread of this crate may hold while it waits for another; a
//! thread only ever waits for a lock that comes after every lock it holds:
//!
//! 1. stdout (`std::io::stdout().lock()`), then
//! 2. stderr: both held across every fork (a child forked while another thread held one would
//!    block on its first print), and the first a program's own thread holds while it calls
//!    into a pool (`let out = stdout().lock(); for r in pool.imap(..) { writeln!(out, ..) }`);
//! 3. the zygote's start (`zygote::zygote`, which forks the zygote);
//! 4. a pool's engine (`Registry::engine`; a thread holds one engine at a time);
//! 5. short sections: the zygote's answer queue (held while the zygote answers a fork request)
//!    and its watch list, the reaper's start flag and watch list, the registry's list of
//!    background-driver threads, the list of live workers, a worker's chunk-arena writer, the frame buffers, an
//!    `as_completed`'s list of finished tasks (a leaf);
//! 6. the inbox's posted exits, then a reaper's posted flag (a death's report takes them, under
//!    the zygote's watch list);
//! 7. the descriptor register (`channel::lock_register`), last: nothing is waited for under it,
//!    and a registered descriptor may be closed under any of the above.
//!
//! So a fork, which needs stdout and stderr, takes them first, holding no lock of this crate,
//! and carries the proof [`StdioHeld`] to [`spawn`]. A thread that finds under the engine's lock
//! that a worker must be forked, without that proof, leaves the fork pending
//! (`Engine::refill_pending`, forked from the zygote at once if one runs), and a thread that can
//! fork does it where it may wait for stdio: holding no lock of this crate and not driving the
//! engine (a thread that holds stdout and waits for its own call needs someone else to drive;
//! see `engine::lock_filled` and `Registry::wait`). A thread of the program that holds stdout or
//! stderr while it waits for a call of another thread that needs a fork delays that fork until
//! it lets go (forks from the zygote need no stdio in the program).

use crate::child::channel::{self, Registered};
use crate::error::PoolError;
use forkpool_worker::child::setup::{self as child, ChildOptions};
use forkpool_worker::wire::Socket;
use nix::unistd::{ForkResult, Pid, fork, setpgid};
use std::io::{StderrLock, StdoutLock, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The stack every child runs its tasks on, whatever the stack of the thread that forked it: a
/// main thread's usual 8 MiB.
pub(crate) const CHILD_STACK: usize = 8 << 20;

/// Proof that this thread holds stdout's and stderr's locks, taken in the lock order (see the
/// module's doc): what a fork needs. Held from before a pool's engine is locked until the forks
/// are done.
pub(crate) struct StdioHeld {
    /// `None` only in a child, which lets them go right after the fork.
    locks: Option<(StdoutLock<'static>, StderrLock<'static>)>,
}

impl StdioHeld {
    /// Takes stdout's lock, then stderr's, waiting while another thread holds them. The caller
    /// holds no lock of this crate and does not drive a pool's engine (see the lock order).
    /// Both are reentrant: a thread that holds one itself gets it at once.
    pub fn take() -> StdioHeld {
        let out = std::io::stdout().lock();
        let err = std::io::stderr().lock();
        StdioHeld {
            locks: Some((out, err)),
        }
    }
}

/// Forks a child that runs `child_main` on its end of a socket pair, `socket` (and the write
/// end of its notify pipe, if it has one), and exits with the code it returns. Returns the
/// child's pid. `stdio` is held across the fork (another thread of the parent may be printing
/// at this moment).
///
/// In the child, every descriptor this crate has open except `socket` and `notify_pipe`, and every
/// progress page except the one at `page` (if any), is closed or unmapped before anything else
/// runs (see [`channel`]); in the parent, `socket` and `notify_pipe` are closed once the child has
/// them. The child is the leader of its own process group.
pub(crate) fn spawn(
    stdio: &mut StdioHeld,
    options: ChildOptions,
    socket: Registered<Socket>,
    notify_pipe: Option<Registered<OwnedFd>>,
    page: Option<usize>,
    child_main: impl FnOnce(Socket, Option<OwnedFd>) -> i32,
) -> Result<Pid, PoolError> {
    child::before_fork();
    crate::sys::before_fork();
    let parent = std::process::id();
    // Stdout and stderr are held across the fork (taken by the caller, first in the lock order),
    // as glibc holds malloc's locks: a child forked while another thread held one of them would
    // block forever on its first print. Held by this thread, they are free in the child once
    // it drops its copies of the guards.
    if let Some((out, _)) = &mut stdio.locks {
        // A partial line in stdout's buffer would be copied into the child and printed by it
        // too.
        let _ = out.flush();
    }
    // Held across the fork: the child sees exactly the descriptors open at that moment.
    let mut register = channel::lock_register();
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
    match forked {
        Ok(ForkResult::Child) => {
            drop(stdio.locks.take());
            let kept = [
                Some(socket.as_raw_fd()),
                notify_pipe.as_ref().map(|d| d.as_raw_fd()),
            ];
            register.keep_only(&kept.into_iter().flatten().collect::<Vec<_>>(), page);
            drop(register);
            let socket = socket.into_inner();
            let notify_pipe = notify_pipe.map(Registered::into_inner);
            let run = move || {
                catch_unwind(AssertUnwindSafe(|| {
                    child::prepare(options, parent);
                    child_main(socket, notify_pipe)
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
            drop(notify_pipe);
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
