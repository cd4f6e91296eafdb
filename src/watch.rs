//! Watching one child for its death: a waiter thread reaps it and posts the `Exited` sentinel.
//!
//! Invariant: for every child, the reply channel carries each frame the child sent, in order,
//! then exactly one `Exited` frame naming it. The waiter posts `Exited` on the same channel
//! after `waitpid` returns, so it queues behind every frame the child wrote before it died.
//! Death is noticed even when another process (a grandchild, or a worker of another pool forked
//! meanwhile) still holds a copy of the channel and end-of-stream would never come. The
//! caller's [`Inbox`](crate::inbox::Inbox) reads the channel.

use crate::error::PoolError;
use forkpool_worker::protocol::{Frame, ReplySender, exited_frame};
use nix::unistd::Pid;
use std::thread::JoinHandle;

/// The waiter thread of one child; joined on drop (it ends when the child has been reaped).
pub(crate) struct Waiter {
    thread: Option<JoinHandle<()>>,
}

impl Waiter {
    /// Starts waiting for child `pid` (the caller's child `child`); on its death, posts its
    /// `Exited` frame through `sentinel`.
    pub fn start(pid: Pid, child: u64, sentinel: ReplySender) -> Result<Waiter, PoolError> {
        let thread = std::thread::Builder::new()
            .name(format!("forkpool-wait-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let frame = exited_frame(child, crate::sys::wait_for_exit(pid));
                let _ = sentinel.send(Frame(frame));
            })
            .map_err(PoolError::Thread)?;
        Ok(Waiter {
            thread: Some(thread),
        })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
