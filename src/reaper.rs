//! Reaping one child: a reaper thread waits for its death and posts it to the inbox.
//!
//! Invariant: every child's death is posted exactly once, after `waitpid` has reaped it, to the
//! [`Inbox`](crate::inbox::Inbox) that reads its socket; the inbox reads what the child left in
//! its socket before it reports the death. Death is noticed even when another process (a
//! grandchild a task started) still holds a copy of the socket and end-of-stream would never
//! come.

use crate::error::PoolError;
use crate::inbox::Exits;
use nix::unistd::Pid;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The reaper thread of one child; joined on drop (it ends when the child has been reaped).
pub(crate) struct Reaper {
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts waiting for child `pid` (the inbox's child `child`); on its death, posts it to
    /// `exits`.
    pub fn start(pid: Pid, child: u64, exits: Arc<Exits>) -> Result<Reaper, PoolError> {
        let thread = std::thread::Builder::new()
            .name(format!("forkpool-reap-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                exits.post(child, crate::sys::wait_for_exit(pid));
            })
            .map_err(PoolError::Thread)?;
        Ok(Reaper {
            thread: Some(thread),
        })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
