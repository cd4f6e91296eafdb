//! After a worker's death: what its running chunk needs (sent again, one item blamed, or
//! every item suspect), read from its progress page and from why the parent stopped it.

use super::{StopReason, WorkerHandle};
use crate::error::Death;
use crate::stats::saturating_nanos;
use forkpool_worker::child::EXIT_BAD_FRAME;
use forkpool_worker::progress;
use std::time::Duration;

/// What a dead worker's running chunk needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No item of it had begun, or the parent stopped the worker for a reason that was not an
    /// item of it: send it again as it is.
    Requeue,
    /// No item of it is to blame this time: the worker died on its own before it began any item
    /// of it (while receiving its frame, or setting up the chunk), or was stopped for an item
    /// that finished just before the signal. Send it again, but a part this happens to twice is
    /// itself to blame (its frame may be what kills workers; a tiny timeout may catch its items
    /// only between them): then it is [`Verdict::Unknown`] with this cause. The engine turns
    /// this into one of the two; the scheduler never sees it.
    Blameless(Cause),
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

impl WorkerHandle {
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
        if !self.ready {
            return Verdict::Requeue; // its initializer never returned: no item ran
        }
        let snap = self.progress.get().snapshot();
        let begun = if snap.chunks <= self.replied_chunks {
            0 // it never started the front chunk
        } else {
            snap.begun.saturating_sub(snap.chunk_base)
        };
        if begun > u64::from(front.count) {
            return Verdict::Unknown(Cause::Died);
        }
        let culprit = |offset: u64, cause| Verdict::Culprit {
            offset: offset as u32,
            cause,
        };
        match self.stopping.map(|s| (s.reason, s.after)) {
            Some((StopReason::Item { ticket }, after)) => {
                let started = snap.since_nanos.max(self.timed_since);
                let overdue =
                    progress::now_nanos().saturating_sub(started) >= saturating_nanos(after);
                if begun > 0 && snap.running() && (ticket == snap.begun || overdue) {
                    // The item it was stopped for, or one that began after it and has run past
                    // the limit too by now (a tiny limit).
                    culprit(begun - 1, Cause::TimedOut(after))
                } else {
                    // Stopped for an item that finished just before the signal: this chunk is
                    // innocent this time (twice, and it is the chunk's doing: a tiny limit).
                    Verdict::Blameless(Cause::TimedOut(after))
                }
            }
            Some((StopReason::Stalled, after)) => {
                if begun > 0 && snap.running() {
                    culprit(begun - 1, Cause::TimedOut(after))
                } else if begun == 0 {
                    // It never began the chunk (stopped from outside, or too slow to start on a
                    // loaded machine): no item of it is to blame this time (twice, and it is).
                    Verdict::Blameless(Cause::TimedOut(after))
                } else if begun < u64::from(front.count) {
                    // Stuck between two items: the next one is the one that waited too long.
                    culprit(begun, Cause::TimedOut(after))
                } else {
                    Verdict::Unknown(Cause::TimedOut(after))
                }
            }
            Some((StopReason::Dropped | StopReason::Init, _)) => Verdict::Requeue,
            None => {
                let out_of_memory = match (memory_limit, death) {
                    (Some(limit), Death::Signal(libc::SIGABRT)) => Some(limit),
                    // A frame it could not allocate under the limit makes it exit this way.
                    (Some(limit), Death::Exit(EXIT_BAD_FRAME)) if begun == 0 => Some(limit),
                    _ => None,
                };
                let cause = out_of_memory.map_or(Cause::Died, Cause::OutOfMemory);
                if begun == 0 {
                    Verdict::Blameless(cause)
                } else if !snap.running() {
                    Verdict::Unknown(Cause::Died)
                } else {
                    culprit(begun - 1, cause)
                }
            }
        }
    }
}
