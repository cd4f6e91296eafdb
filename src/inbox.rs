//! The caller's one wait for all of its children's frames: one reply channel they all share.
//!
//! Every child of a pool (and its waiter thread) sends on a clone of one sender; the calling
//! thread reads the one receiver itself, so a reply costs one wake-up (the caller's) and one
//! `recvmsg`. (Earlier, a reader thread per worker forwarded replies through a queue: two
//! wake-ups per reply, the largest cost at chunksize 1. ipc-channel's `IpcReceiverSet` was no
//! way out: it costs seven system calls per message.)
//!
//! Invariants:
//! - Frames of one child come out in the order it sent them; its `Exited` sentinel (posted by
//!   its [`Waiter`](crate::watch::Waiter) after reaping it) comes after all of them. Each frame
//!   starts with its sender's id.
//! - The channel never reports end-of-stream: the inbox holds a sender itself. A receive error
//!   is a message lost to a child that died while sending it (ipc-channel sends a big message
//!   in fragments); the child's `Exited` still follows.

use crate::error::PoolError;
use forkpool_worker::protocol::{self, Frame, ReplySender};
use ipc_channel::TryRecvError;
use ipc_channel::ipc::{self, IpcReceiver};
use std::time::{Duration, Instant};

/// Receive errors in a row after which the channel is taken for broken.
const MAX_ERRORS_IN_A_ROW: u32 = 64;

/// A frame from child `child` (a reply, or the `Exited` sentinel).
pub(crate) struct Event {
    /// Which child sent it (the caller's id for it, not its pid).
    pub child: u64,
    /// The frame, as `forkpool_worker::protocol::Message` reads it.
    pub frame: Vec<u8>,
}

/// The shared reply channel of one pool (or one `ReturnProcess`).
pub(crate) struct Inbox {
    replies: IpcReceiver<Frame>,
    sender: ReplySender,
}

impl Inbox {
    /// A new channel with no child on it yet.
    pub fn new() -> Result<Inbox, PoolError> {
        let (sender, replies) = ipc::channel::<Frame>().map_err(PoolError::Channel)?;
        Ok(Inbox { replies, sender })
    }

    /// A sender for a new child (or its waiter).
    pub fn sender(&self) -> ReplySender {
        self.sender.clone()
    }

    /// The next frame of any child: waits for one until `deadline` (`None`: without a limit).
    /// `Ok(None)` when the deadline passed first.
    pub fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, PoolError> {
        let mut errors = 0;
        loop {
            let received = match deadline {
                None => self.replies.recv().map_err(|e| e.to_string()),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return Ok(None);
                    }
                    // ipc-channel waits whole milliseconds, rounded down: round up instead, so
                    // a wait never ends early and spins.
                    let wait = (at - now).as_micros().div_ceil(1000) as u64;
                    match self.replies.try_recv_timeout(Duration::from_millis(wait)) {
                        Ok(frame) => Ok(frame),
                        Err(TryRecvError::Empty) => continue,
                        Err(TryRecvError::IpcError(e)) => Err(e.to_string()),
                    }
                }
            };
            let problem = match received {
                Ok(Frame(frame)) => match protocol::sender(&frame) {
                    Some(child) => return Ok(Some(Event { child, frame })),
                    None => "a frame without a sender".to_string(),
                },
                Err(message) => message,
            };
            errors += 1;
            if errors >= MAX_ERRORS_IN_A_ROW {
                return Err(PoolError::Channel(std::io::Error::other(problem)));
            }
        }
    }
}
