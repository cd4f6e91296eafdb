//! The caller's one wait for all of its children's frames: one reply channel they all share.
//!
//! Every child of a pool (and its waiter thread) sends on a clone of one sender; the calling
//! thread reads the one receiver itself, so a reply costs one wake-up (the caller's) and one
//! `recvmsg`. While big frames come, a relay thread reads instead (see [`Inbox`]). (Earlier, a
//! reader thread per worker forwarded every reply through a queue: two wake-ups per reply, the
//! largest cost at chunksize 1. ipc-channel's `IpcReceiverSet` was no way out: it costs seven
//! system calls per message.)
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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Receive errors in a row after which the channel is taken for broken.
const MAX_ERRORS_IN_A_ROW: u32 = 64;
/// A frame this big switches the inbox to relayed reading...
const RELAY_FROM_BYTES: usize = 64 * 1024;
/// ...and this many smaller frames in a row switch it back to direct reading.
const DIRECT_AFTER_SMALL_FRAMES: u32 = 64;
/// The sender id of the frame that tells the relay thread to stop (no child has it).
const STOP_RELAY: u64 = u64::MAX;

/// A frame from child `child` (a reply, or the `Exited` sentinel).
pub(crate) struct Event {
    /// Which child sent it (the caller's id for it, not its pid).
    pub child: u64,
    /// The frame, as `forkpool_worker::protocol::Message` reads it.
    pub frame: Vec<u8>,
}

/// One receive: a frame, or what went wrong.
type Received = Result<Frame, String>;

/// Who reads the channel.
enum Reader {
    /// The calling thread, in [`Inbox::next`].
    Direct(IpcReceiver<Frame>),
    /// A relay thread, which forwards each frame through `frames`; `stopping` once the stop
    /// frame is posted.
    Relayed {
        frames: mpsc::Receiver<Received>,
        thread: JoinHandle<Option<IpcReceiver<Frame>>>,
        stopping: bool,
    },
}

/// The shared reply channel of one pool (or one `ReturnProcess`).
///
/// Small frames are read by the calling thread itself. While big frames come (echoing
/// megabyte buffers), a relay thread reads instead: receiving a big message costs a fresh
/// buffer and two copies, and the relay does that while the caller decodes the frame before.
pub(crate) struct Inbox {
    /// `None` only while switching.
    reader: Option<Reader>,
    sender: ReplySender,
    small_in_a_row: u32,
}

impl Inbox {
    /// A new channel with no child on it yet.
    pub fn new() -> Result<Inbox, PoolError> {
        let (sender, replies) = ipc::channel::<Frame>().map_err(PoolError::Channel)?;
        Ok(Inbox {
            reader: Some(Reader::Direct(replies)),
            sender,
            small_in_a_row: 0,
        })
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
            let received = match self.receive(deadline)? {
                Some(received) => received,
                None => return Ok(None),
            };
            let problem = match received {
                Ok(Frame(frame)) => match protocol::sender(&frame) {
                    Some(STOP_RELAY) => {
                        self.end_relay()?;
                        continue;
                    }
                    Some(child) => {
                        self.note_size(frame.len());
                        return Ok(Some(Event { child, frame }));
                    }
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

    /// One receive from whoever reads; `None` when the deadline passed first.
    fn receive(&mut self, deadline: Option<Instant>) -> Result<Option<Received>, PoolError> {
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                return Ok(None);
            }
            match self.reader.as_ref() {
                Some(Reader::Direct(replies)) => match deadline {
                    None => return Ok(Some(replies.recv().map_err(|e| e.to_string()))),
                    Some(at) => {
                        // ipc-channel waits whole milliseconds, rounded down: round up, so a
                        // wait never ends early and spins.
                        let wait = (at - now).as_micros().div_ceil(1000) as u64;
                        match replies.try_recv_timeout(Duration::from_millis(wait)) {
                            Ok(frame) => return Ok(Some(Ok(frame))),
                            Err(TryRecvError::Empty) => continue,
                            Err(TryRecvError::IpcError(e)) => return Ok(Some(Err(e.to_string()))),
                        }
                    }
                },
                Some(Reader::Relayed { frames, .. }) => {
                    let got = match deadline {
                        None => frames.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(at) => frames.recv_timeout(at - now),
                    };
                    match got {
                        Ok(received) => return Ok(Some(received)),
                        Err(RecvTimeoutError::Timeout) => return Ok(None),
                        // The relay gave up (errors in a row): read directly again.
                        Err(RecvTimeoutError::Disconnected) => self.end_relay()?,
                    }
                }
                None => return Err(lost()),
            }
        }
    }

    /// Switches to relayed reading after a big frame, and back after many small ones.
    fn note_size(&mut self, len: usize) {
        if len < RELAY_FROM_BYTES {
            self.small_in_a_row = self.small_in_a_row.saturating_add(1);
            if self.small_in_a_row >= DIRECT_AFTER_SMALL_FRAMES {
                if let Some(Reader::Relayed { stopping, .. }) = &mut self.reader {
                    if !*stopping {
                        *stopping = self.sender.send(stop_frame()).is_ok();
                    }
                }
            }
            return;
        }
        self.small_in_a_row = 0;
        if matches!(self.reader, Some(Reader::Direct(_))) {
            self.start_relay();
        }
    }

    /// Hands the receiver to a new relay thread (keeps reading directly if none can start).
    fn start_relay(&mut self) {
        let (give, given) = mpsc::channel::<IpcReceiver<Frame>>();
        let (forward, frames) = mpsc::channel::<Received>();
        let spawned = std::thread::Builder::new()
            .name("forkpool-relay".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let replies = given.recv().ok()?;
                let mut errors = 0;
                loop {
                    let received = replies.recv().map_err(|e| e.to_string());
                    errors = if received.is_err() { errors + 1 } else { 0 };
                    let stop = matches!(&received, Ok(Frame(f)) if protocol::sender(f) == Some(STOP_RELAY));
                    if forward.send(received).is_err() || stop || errors >= MAX_ERRORS_IN_A_ROW {
                        return Some(replies);
                    }
                }
            });
        let Ok(thread) = spawned else {
            return;
        };
        let Some(Reader::Direct(replies)) = self.reader.take() else {
            return;
        };
        match give.send(replies) {
            Ok(()) => {
                self.reader = Some(Reader::Relayed {
                    frames,
                    thread,
                    stopping: false,
                })
            }
            // The thread is gone before taking it: keep reading directly.
            Err(mpsc::SendError(replies)) => self.reader = Some(Reader::Direct(replies)),
        }
    }

    /// Takes the receiver back from the relay thread, which has stopped or is stopping.
    fn end_relay(&mut self) -> Result<(), PoolError> {
        match self.reader.take() {
            Some(Reader::Relayed { thread, .. }) => match thread.join() {
                Ok(Some(replies)) => {
                    self.reader = Some(Reader::Direct(replies));
                    self.small_in_a_row = 0;
                    Ok(())
                }
                _ => Err(lost()),
            },
            other => {
                self.reader = other;
                Ok(())
            }
        }
    }
}

impl Drop for Inbox {
    /// Stops the relay thread, if one runs.
    fn drop(&mut self) {
        if let Some(Reader::Relayed {
            thread, stopping, ..
        }) = self.reader.take()
        {
            if stopping || self.sender.send(stop_frame()).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// The frame that stops the relay thread.
fn stop_frame() -> Frame {
    Frame(STOP_RELAY.to_le_bytes().to_vec())
}

fn lost() -> PoolError {
    PoolError::Channel(std::io::Error::other(
        "the reply channel's relay thread failed",
    ))
}
