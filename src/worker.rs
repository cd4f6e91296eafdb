//! One worker as the parent sees it: its outbox, its progress page, the chunks it holds, and
//! whether it is being stopped; when to stop it, and after its death, which item to blame.
//!
//! Invariants:
//! - `in_flight` holds every chunk sent to the worker and not yet answered, oldest first; the
//!   worker answers in that order.
//! - A worker is stopped at most once: `stopping` is set when `SIGTERM` goes to its group, and
//!   `SIGKILL` follows after [`TERM_GRACE`] unless it has died.

use crate::channel::RegisteredPage;
use crate::error::Death;
use crate::outbox::{Backlog, Outbox};
use crate::watch::Waiter;
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a worker stopped with `SIGTERM` has before `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_millis(100);
/// How long an item of a dropped call may keep running once the next call has started, before
/// its worker is stopped and replaced. (The rest of its chunk is skipped at once.)
const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// How soon to look again at a worker that is between items of a dropped call.
const RECHECK: Duration = Duration::from_millis(10);

/// A chunk sent to a worker and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub call: u64,
    pub chunk: u64,
    pub count: u32,
    /// Bytes sent for it (its frame, and the context frame sent just before it, if any).
    pub bytes: usize,
}

/// Why and since when the parent is stopping a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    /// The item (the worker's `begun` count) that ran past `after`; 0 when no item is to
    /// blame (an item of a dropped call).
    ticket: u64,
    after: Duration,
    /// When `SIGKILL` follows the `SIGTERM` already sent (`None`: sent).
    kill_at: Option<Instant>,
}

/// What a dead worker's running chunk needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No item of it had begun, or the parent stopped the worker for a reason that was not an
    /// item of it: send it again as it is.
    Requeue,
    /// The item at `offset` (within the chunk) was running: it gets `cause`, the others of the
    /// chunk are innocent.
    Culprit { offset: u32, cause: Cause },
    /// Which item, if any, is to blame is unknown (the worker died between items, or broke
    /// the protocol): items that fail get `cause`.
    Unknown(Cause),
}

/// What an item that was running when its worker ended gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The worker died.
    Died,
    /// The parent stopped it after the item ran for this long.
    TimedOut(Duration),
    /// An allocation failed under the memory limit (bytes).
    OutOfMemory(u64),
    /// The parent killed the worker for sending what it may not (what, in words).
    Protocol(String),
}

/// A live worker.
pub(crate) struct Worker {
    /// The engine's id for it (pids can be reused; ids are not).
    pub id: u64,
    pub pid: Pid,
    pub outbox: Outbox,
    pub in_flight: VecDeque<Sent>,
    /// The call whose `map_with` context this worker holds (0: none).
    pub context_call: u64,
    /// The worker's item counters, shared with it.
    pub progress: RegisteredPage,
    /// Chunks it answered.
    pub replied_chunks: u64,
    /// Items sent to it (for `max_tasks`).
    pub dispatched_items: u64,
    /// Start times before this moment (`progress::now_nanos`) are not of the current call.
    pub timed_since: u64,
    /// It reported `Ready` (or the pool has no initializer).
    pub ready: bool,
    /// What its initializer panicked with.
    pub init_failure: Option<String>,
    pub stopping: Option<Stopping>,
    /// Being refilled: it takes chunks until its window is full (see `Engine::has_room`).
    pub refilling: bool,
    /// What it sent that it may not: the parent killed it for that.
    pub offense: Option<String>,
    /// Dropped last: joining the waiter waits for the worker's death.
    pub _waiter: Waiter,
}

impl Worker {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// What it holds unanswered.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            frames: self.in_flight.len(),
            bytes: self.in_flight.iter().map(|s| s.bytes).sum(),
        }
    }

    /// Looks at the worker at `now()` (an `Instant` and the same moment on the progress clock,
    /// read only when the worker has something to watch, so an untimed call reads no clock):
    /// stops it (`SIGTERM` to its group) if its item ran past `timeout`, or if an item of a
    /// dropped call (older than `current_call`) still runs [`CANCEL_GRACE`] after the current
    /// call began; kills it (`SIGKILL`) when a stop's grace is over. Returns when to look again.
    pub fn watch(
        &mut self,
        timeout: Option<Duration>,
        current_call: u64,
        now: impl Fn() -> (Instant, u64),
    ) -> Option<Instant> {
        if let Some(stopping) = &mut self.stopping {
            let at = stopping.kill_at?;
            let (now, _) = now();
            if now < at {
                return Some(at);
            }
            crate::sys::kill_group(self.pid);
            stopping.kill_at = None;
            return None;
        }
        let front = self.in_flight.front()?;
        let dropped = front.call < current_call;
        let limit = if dropped { CANCEL_GRACE } else { timeout? };
        let (now, now_nanos) = now();
        let snap = self.progress.get().snapshot();
        if !snap.running() {
            // Between items: the next one begins no earlier than now.
            return Some(now + if dropped { RECHECK } else { limit });
        }
        let since = if dropped {
            self.timed_since
        } else {
            snap.since_nanos.max(self.timed_since)
        };
        let due = since.saturating_add(limit.as_nanos() as u64);
        if now_nanos < due {
            return Some(now + Duration::from_nanos(due - now_nanos));
        }
        crate::sys::terminate_group(self.pid);
        self.stopping = Some(Stopping {
            ticket: if dropped { 0 } else { snap.begun },
            after: limit,
            kill_at: Some(now + TERM_GRACE),
        });
        Some(now + TERM_GRACE)
    }

    /// After the worker died of `death`: what the chunk it was running (the front of its
    /// queue) needs, read from its progress page. A `SIGABRT` under a `memory_limit` is taken
    /// for a failed allocation.
    ///
    /// A worker killed for breaking the protocol is not believed about anything, its progress
    /// page included: its running chunk's items are run again one by one elsewhere (see
    /// [`Verdict::Unknown`]), so the item that made it misbehave fails alone, with
    /// [`Cause::Protocol`], once it misbehaves again as a chunk of one.
    pub fn verdict(&self, death: Death, memory_limit: Option<u64>) -> Verdict {
        let Some(front) = self.in_flight.front() else {
            return Verdict::Requeue;
        };
        if let Some(what) = &self.offense {
            return Verdict::Unknown(Cause::Protocol(what.clone()));
        }
        let snap = self.progress.get().snapshot();
        if snap.chunks <= self.replied_chunks {
            return Verdict::Requeue; // it never started the front chunk
        }
        let begun = snap.begun.saturating_sub(snap.chunk_base);
        if begun == 0 {
            return Verdict::Requeue;
        }
        if begun > u64::from(front.count) {
            return Verdict::Unknown(Cause::Died);
        }
        if !snap.running() {
            return match self.stopping {
                Some(_) => Verdict::Requeue,
                None => Verdict::Unknown(Cause::Died),
            };
        }
        let offset = (begun - 1) as u32;
        let cause = match self.stopping {
            Some(stopping) if stopping.ticket == snap.begun => Cause::TimedOut(stopping.after),
            // Stopped for an item that finished just before the signal: this one is innocent.
            Some(_) => return Verdict::Requeue,
            None => match (memory_limit, death) {
                (Some(limit), Death::Signal(libc::SIGABRT)) => Cause::OutOfMemory(limit),
                _ => Cause::Died,
            },
        };
        Verdict::Culprit { offset, cause }
    }
}
