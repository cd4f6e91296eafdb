//! Watching one child: a reader thread forwards everything it sends, a waiter thread reaps it.
//!
//! Invariant: for every child, its watcher delivers each frame the child sent, in order, then
//! exactly one `Exited` frame, then nothing. The waiter injects `Exited` through the parent's own
//! clone of the child's sender after `waitpid` returns, so it queues behind every frame the child
//! wrote before it died. Death is noticed even when another process (a grandchild, or a worker
//! of another pool forked meanwhile) still holds a copy of the channel and end-of-stream would
//! never come.

use crate::error::PoolError;
use forkpool_worker::protocol::{Message, exited_frame};
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender};
use nix::unistd::Pid;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

/// A frame from child `child` (a reply, or the `Exited` sentinel).
pub(crate) struct Event {
    /// Which child sent it (the pool's id for the worker, not its pid).
    pub child: u64,
    /// The frame, as `forkpool_worker::protocol::Message` reads it.
    pub frame: Vec<u8>,
}

/// The watcher threads of one child; joined on drop.
pub(crate) struct Watcher {
    threads: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching child `pid` (known to the caller as `child`), forwarding to `events`.
    pub fn start(
        child: u64,
        pid: Pid,
        replies: IpcBytesReceiver,
        sentinel: IpcBytesSender,
        events: Sender<Event>,
    ) -> Result<Watcher, PoolError> {
        let (status_tx, status_rx) = mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name(format!("forkpool-wait-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let frame = exited_frame(crate::sys::wait_for_exit(pid));
                let _ = status_tx.send(frame);
                let _ = sentinel.send(&frame);
            })
            .map_err(PoolError::Channel)?;
        let reader = std::thread::Builder::new()
            .name(format!("forkpool-read-{pid}"))
            .spawn(move || {
                loop {
                    let frame = match replies.recv() {
                        Ok(frame) => frame,
                        // Cannot happen while the waiter holds the sentinel sender; if it does, the
                        // waiter's status still arrives here.
                        Err(_) => match status_rx.recv() {
                            Ok(frame) => frame.to_vec(),
                            Err(_) => return,
                        },
                    };
                    let last = matches!(Message::parse(&frame), Some(Message::Exited(_)));
                    if events.send(Event { child, frame }).is_err() || last {
                        return;
                    }
                }
            });
        let reader = match reader {
            Ok(handle) => handle,
            Err(e) => {
                // The waiter still ends when the child does; the caller kills the child.
                crate::sys::kill_group(pid);
                let _ = waiter.join();
                return Err(PoolError::Channel(e));
            }
        };
        Ok(Watcher {
            threads: vec![waiter, reader],
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
