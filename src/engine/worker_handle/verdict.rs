//! After a worker's death: what its running chunk needs (sent again, one item blamed, or
//! every item suspect), read from its progress page and from why the parent stopped it.

use super::{StopReason, WorkerHandle};
use crate::error::Death;
use crate::stats::saturating_nanos;
use forkpool_worker::child::setup::EXIT_BAD_FRAME;
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
        let stopped = self.stopping.map(|s| {
            let overdue = match s.reason {
                StopReason::Item { .. } => {
                    let started = snap.since_nanos.max(self.timed_since);
                    progress::now_nanos().saturating_sub(started) >= saturating_nanos(s.after)
                }
                _ => false,
            };
            let ticket_running =
                matches!(s.reason, StopReason::Item { ticket } if ticket == snap.begun);
            (s.reason, s.after, ticket_running || overdue)
        });
        judge(Facts {
            count: front.count,
            begun,
            running: snap.running(),
            stopped,
            death,
            memory_limit,
        })
    }
}

/// What the parent knows of a dead worker's front chunk, its own records and what its page
/// said (which the worker, and any task it ran, could write).
#[derive(Debug, Clone, Copy)]
struct Facts {
    /// Items in the front chunk.
    count: u32,
    /// Items of it the page says have begun (0 if the page says the chunk never started).
    begun: u64,
    /// The page says an item runs.
    running: bool,
    /// Why the parent stopped it and the limit that passed, and, for an item past its timeout,
    /// whether the running item is the one it was stopped for or has run past the limit too.
    stopped: Option<(StopReason, Duration, bool)>,
    death: Death,
    memory_limit: Option<u64>,
}

/// The verdict on a dead worker's front chunk. A worker the parent stopped for a timeout
/// (an item past it, a stall, its chunk past the parent's own bound) fails what it fails with
/// [`Cause::TimedOut`], whatever signal ended it: the parent sent it. The page only says which
/// item to blame, and is not believed when it says more items began than the chunk has.
fn judge(facts: Facts) -> Verdict {
    let Facts {
        count,
        begun,
        running,
        stopped,
        death,
        memory_limit,
    } = facts;
    let culprit = |offset: u64, cause| Verdict::Culprit {
        offset: offset as u32,
        cause,
    };
    let timed_out = stopped.and_then(|(reason, after, _)| match reason {
        StopReason::Item { .. } | StopReason::Stalled | StopReason::Overran => {
            Some(Cause::TimedOut(after))
        }
        StopReason::Dropped | StopReason::Init => None,
    });
    if begun > u64::from(count) {
        return Verdict::Unknown(timed_out.unwrap_or(Cause::Died));
    }
    match stopped {
        Some((StopReason::Item { .. }, after, item_to_blame)) => {
            if begun > 0 && running && item_to_blame {
                // The item it was stopped for, or one that began after it and has run past
                // the limit too by now (a tiny limit).
                culprit(begun - 1, Cause::TimedOut(after))
            } else {
                // Stopped for an item that finished just before the signal: this chunk is
                // innocent this time (twice, and it is the chunk's doing: a tiny limit).
                Verdict::Blameless(Cause::TimedOut(after))
            }
        }
        Some((StopReason::Stalled, after, _)) => {
            if begun > 0 && running {
                culprit(begun - 1, Cause::TimedOut(after))
            } else if begun == 0 {
                // It never began the chunk (stopped from outside, or too slow to start on a
                // loaded machine): no item of it is to blame this time (twice, and it is).
                Verdict::Blameless(Cause::TimedOut(after))
            } else if begun < u64::from(count) {
                // Stuck between two items: the next one is the one that waited too long.
                culprit(begun, Cause::TimedOut(after))
            } else {
                Verdict::Unknown(Cause::TimedOut(after))
            }
        }
        Some((StopReason::Overran, after, _)) => {
            if begun == 0 {
                // By its page it never began the chunk: as for a stall (twice, and the chunk
                // is to blame).
                Verdict::Blameless(Cause::TimedOut(after))
            } else {
                // Honest counters stop an item past its timeout, or a stalled worker, long
                // before this bound: these lied. Its items run again one by one, each under
                // its own bound, and the one that overruns alone fails.
                Verdict::Unknown(Cause::TimedOut(after))
            }
        }
        Some((StopReason::Dropped | StopReason::Init, _, _)) => Verdict::Requeue,
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
            } else if !running {
                Verdict::Unknown(Cause::Died)
            } else {
                culprit(begun - 1, cause)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(200);

    fn facts(begun: u64, running: bool, stopped: Option<StopReason>) -> Facts {
        Facts {
            count: 4,
            begun,
            running,
            stopped: stopped.map(|reason| (reason, LIMIT, true)),
            death: Death::Signal(libc::SIGTERM),
            memory_limit: None,
        }
    }

    #[test]
    fn a_worker_stopped_for_a_timeout_times_out_whatever_its_page_says() {
        let timeouts = [
            StopReason::Item { ticket: 3 },
            StopReason::Stalled,
            StopReason::Overran,
        ];
        for reason in timeouts {
            for begun in 0..=9 {
                for running in [false, true] {
                    let verdict = judge(facts(begun, running, Some(reason)));
                    let cause = match &verdict {
                        Verdict::Blameless(cause) | Verdict::Unknown(cause) => cause,
                        Verdict::Culprit { cause, .. } => cause,
                        Verdict::Requeue => panic!("{reason:?}, {begun} begun: requeued"),
                    };
                    assert_eq!(cause, &Cause::TimedOut(LIMIT), "{reason:?}, {begun} begun");
                }
            }
        }
    }

    #[test]
    fn more_items_begun_than_the_chunk_holds_blames_none_of_them() {
        let stalled = judge(facts(5, true, Some(StopReason::Stalled)));
        assert_eq!(stalled, Verdict::Unknown(Cause::TimedOut(LIMIT)));
        let item = judge(facts(7, true, Some(StopReason::Item { ticket: 7 })));
        assert_eq!(item, Verdict::Unknown(Cause::TimedOut(LIMIT)));
        assert_eq!(judge(facts(5, true, None)), Verdict::Unknown(Cause::Died));
    }

    #[test]
    fn a_chunk_past_the_parents_bound_is_split_unless_it_never_began() {
        for running in [false, true] {
            for begun in 1..=4 {
                let verdict = judge(facts(begun, running, Some(StopReason::Overran)));
                assert_eq!(verdict, Verdict::Unknown(Cause::TimedOut(LIMIT)));
            }
            let verdict = judge(facts(0, running, Some(StopReason::Overran)));
            assert_eq!(verdict, Verdict::Blameless(Cause::TimedOut(LIMIT)));
        }
    }

    #[test]
    fn an_item_past_its_timeout_is_blamed_by_the_page() {
        let verdict = judge(facts(2, true, Some(StopReason::Item { ticket: 2 })));
        assert_eq!(
            verdict,
            Verdict::Culprit {
                offset: 1,
                cause: Cause::TimedOut(LIMIT)
            }
        );
        let mut finished = facts(2, false, Some(StopReason::Item { ticket: 2 }));
        finished.stopped = Some((StopReason::Item { ticket: 2 }, LIMIT, false));
        assert_eq!(judge(finished), Verdict::Blameless(Cause::TimedOut(LIMIT)));
    }

    #[test]
    fn a_death_of_its_own_blames_the_running_item_with_its_death() {
        assert_eq!(
            judge(facts(3, true, None)),
            Verdict::Culprit {
                offset: 2,
                cause: Cause::Died
            }
        );
        assert_eq!(
            judge(facts(0, false, None)),
            Verdict::Blameless(Cause::Died)
        );
        assert_eq!(
            judge(facts(2, true, Some(StopReason::Dropped))),
            Verdict::Requeue
        );
    }
}
