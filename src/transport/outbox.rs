//! Sending frames to one worker: small ones from the caller's thread, the rest through a send thread
//! thread, so the caller never waits in a send.
//!
//! The caller reads replies itself (see [`inbox`](crate::transport::inbox)), so it must never block in a
//! send that needs its worker to read first: the worker may itself be blocked sending a big
//! reply that needs the caller to read first (the classic two-way deadlock; invariant 4 of the
//! design, `docs/design.md`).
//!
//! What sits in the worker's socket is at most what the worker has not answered yet, so a frame
//! goes out from the caller's thread when it and the unanswered frames before it stay within
//! [`INLINE_BYTES`] and [`INLINE_FRAMES`] (well inside the 208 KiB socket buffer of a Linux
//! default), it fits in one datagram, and the send thread holds nothing. Even then the send does not
//! wait: if the socket has no room after all, the frame goes to the send thread. Anything else goes
//! to the worker's send thread (started on first need), which sends in order and may block as
//! long as the worker takes to read.
//!
//! Small frames staged between two flushes travel as one batch message (at chunksize 1 the
//! scheduler refills a worker four chunks at a time: one `sendmsg` and one wake-up for four).
//!
//! A big frame (at least [`ARENA_MIN`] bytes) is copied into the worker's chunk arena, when it
//! has room, and only a notice naming its span and the check of its bytes travels on the socket
//! (see [`arena`](forkpool_worker::arena)): no system call carries it, and the notice is small.
//! The worker copies the span out and compares the checks before it reads a byte of it (a task
//! can write its worker's arena). The caller's thread copies it, unless the send thread holds
//! frames given to it before (then the send thread copies it, in order).
//!
//! Invariants:
//! - Frames reach the worker in the order they were given to [`Outbox::stage`] or
//!   [`Outbox::send`]: a message is sent in place only when the send thread has sent everything
//!   given to it before.
//! - Task spans are written into the arena in the order their notices reach the worker: a frame
//!   is copied in place only when the send thread has sent everything given to it before.

use crate::child::channel::{Registered, RegisteredRegion};
use forkpool_worker::arena::{self, ARENA_MIN};
use forkpool_worker::protocol;
use forkpool_worker::wire::Socket;
use nix::unistd::Pid;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

/// A frame that may be handed to the send thread without copying; the scheduler keeps its own
/// reference to resend it if the worker dies.
pub(crate) type SharedFrame = Arc<Vec<u8>>;

/// The most bytes of unanswered frames (the new one included) for an in-place send. (Not
/// measured against other values: it rests on the socket's send buffer, 208 KiB by Linux's
/// default, which it stays well inside; an in-place send that finds no room goes to the
/// send thread anyway.)
pub(crate) const INLINE_BYTES: usize = 64 * 1024;
/// The most unanswered frames (the new one included) for an in-place send: a full window of
/// small chunks (they travel batched, a few datagrams for all of them), so it equals the
/// largest window of small chunks. (Measured together with that window of 128 and the rings'
/// 50 µs watch: 100,000 submitted trivial tasks, 2.1 -> 1.55 µs each, alternating builds with
/// a scratch program; the same workload is row (l) of `cargo run --release -p forkpool-bench
/// --example compare -- --only l --no-python --repeat 3`.)
pub(crate) const INLINE_FRAMES: usize = 128;

/// Frames at most this big are staged for a batch; bigger ones go alone (no copy). Batches
/// switched off (this at 0), each row the median of 6 runs alternating with main: row (b) ran
/// 4.05× slower, (l) 2.32×, (a) 1.18×, (e) and (j) 0.90-1.07×, with `cargo run --release
/// -p forkpool-bench --example compare -- --only a,b,c,e,j,l,n,p --no-python --repeat 2`. The size
/// itself is not measured against other values.
const BATCH_FRAME_MAX: usize = 4 * 1024;

/// What a worker holds unanswered before a send.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Backlog {
    pub frames: usize,
    pub bytes: usize,
}

/// The parent's sending side of one worker's task channel.
pub(crate) struct Outbox {
    socket: Arc<Registered<Socket>>,
    pid: Pid,
    /// The worker's chunk arena, which takes big frames.
    arena: Option<ChunkArena>,
    send_thread: Option<SendThread>,
    /// Frames given to `stage` and not yet flushed, and their bytes.
    staged: Vec<SharedFrame>,
    staged_bytes: usize,
}

/// A thread that sends frames to one worker in order; it ends when its queue is dropped and
/// emptied. It is not joined: a send to a worker whose socket a stopped grandchild still holds
/// could block until that grandchild dies.
struct SendThread {
    queue: Sender<Outgoing>,
    /// Outgoing frames given to it and not yet sent.
    pending: Arc<AtomicUsize>,
}

/// What the send thread is given to send.
enum Outgoing {
    /// A message, sent as it is.
    Message(SharedFrame),
    /// A big frame: copied into the chunk arena, with a notice sent for it, if the arena has
    /// room then; else sent as it is.
    Big(SharedFrame),
}

/// A worker's chunk arena as the parent writes it: its shared page and the parent's count of
/// it, used by the caller's thread or the send thread (one at a time: whoever sends in order).
#[derive(Clone)]
struct ChunkArena {
    page: Arc<RegisteredRegion>,
    writer: Arc<Mutex<arena::Writer>>,
}

impl ChunkArena {
    /// Copies a big `frame` into the arena, if it has room now; returns the notice to send in
    /// its place.
    fn copy_in(&self, frame: &[u8]) -> Option<SharedFrame> {
        if frame.len() < ARENA_MIN {
            return None;
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (span, check) = self.page.chunk_arena().write(&mut writer, frame)?;
        Some(Arc::new(
            protocol::in_arena_frame(span, check.value()).to_vec(),
        ))
    }
}

impl Outbox {
    /// The outbox of worker `pid`, whose socket (the parent's end) is `socket`, and whose
    /// shared page, if it has one, is `page`.
    pub fn new(
        socket: Arc<Registered<Socket>>,
        pid: Pid,
        page: Option<Arc<RegisteredRegion>>,
    ) -> Outbox {
        Outbox {
            socket,
            pid,
            arena: page.map(|page| ChunkArena {
                page,
                writer: Arc::new(Mutex::new(arena::Writer::default())),
            }),
            send_thread: None,
            staged: Vec::new(),
            staged_bytes: 0,
        }
    }

    /// Queues `frame` to go with the next [`flush`](Outbox::flush) (a big frame flushes what
    /// is staged and goes at once). `backlog` is what the worker holds unanswered, staged
    /// frames included.
    pub fn stage(&mut self, frame: &SharedFrame, backlog: Backlog) {
        if frame.len() > BATCH_FRAME_MAX {
            self.send(frame, backlog);
            return;
        }
        self.staged.push(Arc::clone(frame));
        self.staged_bytes += frame.len();
    }

    /// Whether frames wait for [`flush`](Outbox::flush).
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Sends what is staged, as one message. `backlog` is what the worker holds unanswered,
    /// staged frames included.
    pub fn flush(&mut self, backlog: Backlog) {
        let before = Backlog {
            frames: backlog.frames.saturating_sub(self.staged.len()),
            bytes: backlog.bytes.saturating_sub(self.staged_bytes),
        };
        self.staged_bytes = 0;
        match self.staged.len() {
            0 => {}
            1 => {
                let frame = self.staged.pop().unwrap_or_default();
                self.send_now(&frame, before);
            }
            _ => {
                let mut batch = Vec::new();
                for frame in self.staged.drain(..) {
                    protocol::push_to_batch(&mut batch, &frame);
                }
                self.send_now(&Arc::new(batch), before);
            }
        }
    }

    /// Sends `frame` to the worker (after anything staged), which holds `backlog` unanswered
    /// before it.
    pub fn send(&mut self, frame: &SharedFrame, backlog: Backlog) {
        self.flush(backlog);
        self.send_now(frame, backlog);
    }

    /// Sends one message: a big one through the chunk arena if it has room, the rest in place or
    /// through the send thread. A failed send is not reported: it means the worker is dying, and
    /// its death is reported by its reaper.
    ///
    /// An arena frame is copied by whoever sends its notice: in place only while the send thread
    /// holds nothing, so spans are written in the order their notices reach the worker (it
    /// releases everything up to the end of the span it read; a span written out of order would
    /// be released before it was read).
    fn send_now(&mut self, frame: &SharedFrame, backlog: Backlog) {
        let send_thread_idle = self.send_thread_idle();
        let arena_frame = self.arena.is_some() && frame.len() >= ARENA_MIN;
        if arena_frame && !send_thread_idle {
            self.hand_to_send_thread(Outgoing::Big(Arc::clone(frame)));
            return;
        }
        if let Some(notice) = self.arena.as_ref().and_then(|arena| arena.copy_in(frame)) {
            // A notice is tiny: it goes in place unless the socket is full.
            self.deliver(&notice, true);
            return;
        }
        let fits = backlog.frames < INLINE_FRAMES && backlog.bytes + frame.len() <= INLINE_BYTES;
        self.deliver(frame, fits);
    }

    /// Whether the send thread has sent everything given to it (or there is none).
    fn send_thread_idle(&self) -> bool {
        self.send_thread
            .as_ref()
            .is_none_or(|c| c.pending.load(Ordering::Acquire) == 0)
    }

    /// Sends one message, in place if `fits` and nothing waits for the send thread, else through
    /// the send thread.
    fn deliver(&mut self, frame: &SharedFrame, fits: bool) {
        if fits && self.send_thread_idle() {
            match self.socket.try_send_whole(frame) {
                Ok(false) => {} // no room after all: the send thread waits for it
                // Sent; or failed because the worker is dying (its death is reported).
                Ok(true) | Err(_) => return,
            }
        }
        self.hand_to_send_thread(Outgoing::Message(Arc::clone(frame)));
    }

    /// Gives `outgoing` to the send thread (started on first need), which sends it after everything
    /// given to it before.
    fn hand_to_send_thread(&mut self, outgoing: Outgoing) {
        if self.send_thread.is_none() {
            self.send_thread = self.start_send_thread();
        }
        let outgoing = match &self.send_thread {
            Some(send_thread) => {
                send_thread.pending.fetch_add(1, Ordering::AcqRel);
                match send_thread.queue.send(outgoing) {
                    Ok(()) => return,
                    Err(mpsc::SendError(outgoing)) => {
                        send_thread.pending.fetch_sub(1, Ordering::AcqRel);
                        outgoing
                    }
                }
            }
            None => outgoing,
        };
        // No send thread: send in place (blocking) as the last resort.
        send_outgoing(&self.socket, self.arena.as_ref(), outgoing);
    }

    fn start_send_thread(&self) -> Option<SendThread> {
        let (queue, outgoing) = mpsc::channel::<Outgoing>();
        let pending = Arc::new(AtomicUsize::new(0));
        let socket = Arc::clone(&self.socket);
        let arena = self.arena.clone();
        let sent = Arc::clone(&pending);
        std::thread::Builder::new()
            .name(format!("forkpool-send-{}", self.pid))
            .stack_size(64 * 1024)
            .spawn(move || {
                for outgoing in outgoing {
                    // The outgoing frame is dropped before it is counted sent, so the scheduler can
                    // reuse its buffer.
                    send_outgoing(&socket, arena.as_ref(), outgoing);
                    sent.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .ok()?;
        Some(SendThread { queue, pending })
    }
}

/// Sends `outgoing` on `socket`, blocking until the worker has room; a big frame through `arena`
/// if it has room. A failed send is not reported (see [`Outbox::send`]).
fn send_outgoing(socket: &Socket, arena: Option<&ChunkArena>, outgoing: Outgoing) {
    let frame = match outgoing {
        Outgoing::Big(frame) => match arena.and_then(|arena| arena.copy_in(&frame)) {
            Some(notice) => notice,
            None => frame,
        },
        Outgoing::Message(frame) => frame,
    };
    let _ = socket.send_frame(&frame);
}
