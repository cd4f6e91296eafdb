//! After a worker's death: what its running chunk needs (sent again, one item blamed, or
//! every item suspect), read from its progress page and from why the parent stopped it.

use super::{StopReason, WorkerHandle};
use crate::error::Death;
use crate::stats::saturating_nanos;
use forkpool_worker::child::setup::EXIT_BAD_FRAME;
use forkpool_worker::progress::{self, Snapshot};
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
    Blameless(FailCause),
    /// The item at `offset` (within the chunk) was running: it gets `cause`, the others of the
    /// chunk are innocent.
    Culprit { offset: u32, cause: FailCause },
    /// Which item, if any, is to blame is unknown (the worker died between items, or broke
    /// the protocol): items that fail get `cause`.
    Unknown(FailCause),
}

/// What an item that was running when its worker ended gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailCause {
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
    /// queue) needs, read from its progress page (see [`verdict_of`]). A `SIGABRT` under a
    /// `memory_limit` is taken for a failed allocation.
    pub fn verdict(&self, death: Death, memory_limit: Option<u64>) -> Verdict {
        let record = Record {
            front_count: self.in_flight.front().map(|front| front.count),
            offense: self.offense.as_deref(),
            ready: self.ready,
            replied_chunks: self.replied_chunks,
            stopping: self.stopping.map(|s| (s.reason, s.after)),
            timed_since: self.timed_since,
        };
        verdict_of(
            record,
            || self.progress.get().snapshot(),
            progress::now_nanos,
            death,
            memory_limit,
        )
    }
}

/// What the parent itself recorded of a dead worker (none of it written by the worker).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    /// Items in its front chunk (`None`: it held none).
    pub front_count: Option<u32>,
    /// What it sent that it may not, if the parent killed it for that.
    pub offense: Option<&'a str>,
    /// It reported that its initializer returned.
    pub ready: bool,
    /// Chunks it answered.
    pub replied_chunks: u64,
    /// Why the parent was stopping it, and the limit that passed.
    pub stopping: Option<(StopReason, Duration)>,
    /// Start times before this moment were not recorded on its page.
    pub timed_since: u64,
}

/// The verdict on the front chunk of a dead worker of which the parent recorded `record`,
/// whose progress page reads `snapshot()` (read once, only if the page is believed) at
/// `now_nanos()` (read only for a worker stopped for an item past its timeout).
///
/// A worker killed for breaking the protocol is not believed about anything, its progress
/// page included: its running chunk's items are run again one by one elsewhere (see
/// [`Verdict::Unknown`]), so the item that made it misbehave fails alone, with
/// [`FailCause::Protocol`], once it misbehaves again as a chunk of one.
pub(crate) fn verdict_of(
    record: Record<'_>,
    snapshot: impl FnOnce() -> Snapshot,
    now_nanos: impl FnOnce() -> u64,
    death: Death,
    memory_limit: Option<u64>,
) -> Verdict {
    let Some(count) = record.front_count else {
        return Verdict::Requeue;
    };
    if let Some(what) = record.offense {
        return Verdict::Unknown(FailCause::Protocol(what.to_string()));
    }
    if !record.ready {
        return Verdict::Requeue; // its initializer never returned: no item ran
    }
    let snap = snapshot();
    let begun = if snap.chunks <= record.replied_chunks {
        0 // it never started the front chunk
    } else {
        snap.begun.saturating_sub(snap.chunk_base)
    };
    let stopped = record.stopping.map(|(reason, after)| {
        let overdue = match reason {
            StopReason::Item { .. } => {
                let started = snap.since_nanos.max(record.timed_since);
                now_nanos().saturating_sub(started) >= saturating_nanos(after)
            }
            _ => false,
        };
        let ticket_running = matches!(reason, StopReason::Item { ticket } if ticket == snap.begun);
        (reason, after, ticket_running || overdue)
    });
    judge(Facts {
        count,
        begun,
        running: snap.running(),
        stopped,
        death,
        memory_limit,
    })
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
/// [`FailCause::TimedOut`], whatever signal ended it: the parent sent it. The page only says which
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
            Some(FailCause::TimedOut(after))
        }
        StopReason::Dropped | StopReason::Init => None,
    });
    if begun > u64::from(count) {
        return Verdict::Unknown(timed_out.unwrap_or(FailCause::Died));
    }
    match stopped {
        Some((StopReason::Item { .. }, after, item_to_blame)) => {
            if begun > 0 && running && item_to_blame {
                // The item it was stopped for, or one that began after it and has run past
                // the limit too by now (a tiny limit).
                culprit(begun - 1, FailCause::TimedOut(after))
            } else {
                // Stopped for an item that finished just before the signal: this chunk is
                // innocent this time (twice, and it is the chunk's doing: a tiny limit).
                Verdict::Blameless(FailCause::TimedOut(after))
            }
        }
        Some((StopReason::Stalled, after, _)) => {
            if begun > 0 && running {
                culprit(begun - 1, FailCause::TimedOut(after))
            } else if begun == 0 {
                // It never began the chunk (stopped from outside, or too slow to start on a
                // loaded machine): no item of it is to blame this time (twice, and it is).
                Verdict::Blameless(FailCause::TimedOut(after))
            } else if begun < u64::from(count) {
                // Stuck between two items: the next one is the one that waited too long.
                culprit(begun, FailCause::TimedOut(after))
            } else {
                Verdict::Unknown(FailCause::TimedOut(after))
            }
        }
        Some((StopReason::Overran, after, _)) => {
            if begun == 0 {
                // By its page it never began the chunk: as for a stall (twice, and the chunk
                // is to blame).
                Verdict::Blameless(FailCause::TimedOut(after))
            } else {
                // Honest counters stop an item past its timeout, or a stalled worker, long
                // before this bound: these lied. Its items run again one by one, each under
                // its own bound, and the one that overruns alone fails.
                Verdict::Unknown(FailCause::TimedOut(after))
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
            let cause = out_of_memory.map_or(FailCause::Died, FailCause::OutOfMemory);
            if begun == 0 {
                Verdict::Blameless(cause)
            } else if !running {
                Verdict::Unknown(FailCause::Died)
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
                    assert_eq!(
                        cause,
                        &FailCause::TimedOut(LIMIT),
                        "{reason:?}, {begun} begun"
                    );
                }
            }
        }
    }

    #[test]
    fn more_items_begun_than_the_chunk_holds_blames_none_of_them() {
        let stalled = judge(facts(5, true, Some(StopReason::Stalled)));
        assert_eq!(stalled, Verdict::Unknown(FailCause::TimedOut(LIMIT)));
        let item = judge(facts(7, true, Some(StopReason::Item { ticket: 7 })));
        assert_eq!(item, Verdict::Unknown(FailCause::TimedOut(LIMIT)));
        assert_eq!(
            judge(facts(5, true, None)),
            Verdict::Unknown(FailCause::Died)
        );
    }

    #[test]
    fn a_chunk_past_the_parents_bound_is_split_unless_it_never_began() {
        for running in [false, true] {
            for begun in 1..=4 {
                let verdict = judge(facts(begun, running, Some(StopReason::Overran)));
                assert_eq!(verdict, Verdict::Unknown(FailCause::TimedOut(LIMIT)));
            }
            let verdict = judge(facts(0, running, Some(StopReason::Overran)));
            assert_eq!(verdict, Verdict::Blameless(FailCause::TimedOut(LIMIT)));
        }
    }

    #[test]
    fn an_item_past_its_timeout_is_blamed_by_the_page() {
        let verdict = judge(facts(2, true, Some(StopReason::Item { ticket: 2 })));
        assert_eq!(
            verdict,
            Verdict::Culprit {
                offset: 1,
                cause: FailCause::TimedOut(LIMIT)
            }
        );
        let mut finished = facts(2, false, Some(StopReason::Item { ticket: 2 }));
        finished.stopped = Some((StopReason::Item { ticket: 2 }, LIMIT, false));
        assert_eq!(
            judge(finished),
            Verdict::Blameless(FailCause::TimedOut(LIMIT))
        );
    }

    #[test]
    fn a_death_of_its_own_blames_the_running_item_with_its_death() {
        assert_eq!(
            judge(facts(3, true, None)),
            Verdict::Culprit {
                offset: 2,
                cause: FailCause::Died
            }
        );
        assert_eq!(
            judge(facts(0, false, None)),
            Verdict::Blameless(FailCause::Died)
        );
        assert_eq!(
            judge(facts(2, true, Some(StopReason::Dropped))),
            Verdict::Requeue
        );
    }

    /// A worker that answered 2 chunks and had begun 10 items before its front chunk of 4.
    fn record() -> Record<'static> {
        Record {
            front_count: Some(4),
            offense: None,
            ready: true,
            replied_chunks: 2,
            stopping: None,
            timed_since: 0,
        }
    }

    /// Its page: `chunks` started, `begun` and `ended` items since the front chunk's base (10).
    fn page(chunks: u64, begun: u64, ended: u64) -> Snapshot {
        Snapshot {
            chunks,
            chunk_base: 10,
            begun: 10 + begun,
            ended: 10 + ended,
            since_nanos: 1_000,
        }
    }

    fn culprit(offset: u32, cause: FailCause) -> Verdict {
        Verdict::Culprit { offset, cause }
    }

    const SEGV: Death = Death::Signal(libc::SIGSEGV);
    const ABRT: Death = Death::Signal(libc::SIGABRT);

    #[test]
    fn the_page_blames_the_running_item_of_the_front_chunk_and_nothing_when_it_lies() {
        let oom = Some(1 << 20);
        // (what it says on its page, its death, memory limit, the verdict)
        let cases = [
            // The item at offset 2 runs (begun 3, ended 2): it is to blame.
            (page(3, 3, 2), SEGV, None, culprit(2, FailCause::Died)),
            (page(3, 1, 0), SEGV, None, culprit(0, FailCause::Died)),
            (page(3, 4, 3), SEGV, None, culprit(3, FailCause::Died)),
            // A failed allocation under the memory limit.
            (
                page(3, 2, 1),
                ABRT,
                oom,
                culprit(1, FailCause::OutOfMemory(1 << 20)),
            ),
            (page(3, 2, 1), ABRT, None, culprit(1, FailCause::Died)),
            // Between two items: none is known to be the one.
            (page(3, 2, 2), SEGV, None, Verdict::Unknown(FailCause::Died)),
            // Its page counts no chunk past those it answered: it never started the front one,
            // whatever its item counters say.
            (
                page(2, 3, 2),
                SEGV,
                None,
                Verdict::Blameless(FailCause::Died),
            ),
            (
                page(1, 9, 0),
                SEGV,
                None,
                Verdict::Blameless(FailCause::Died),
            ),
            // Started the chunk, no item begun yet.
            (
                page(3, 0, 0),
                SEGV,
                None,
                Verdict::Blameless(FailCause::Died),
            ),
            // A frame it could not allocate under the limit, before any item.
            (
                page(3, 0, 0),
                Death::Exit(EXIT_BAD_FRAME),
                oom,
                Verdict::Blameless(FailCause::OutOfMemory(1 << 20)),
            ),
            (
                page(3, 1, 0),
                Death::Exit(EXIT_BAD_FRAME),
                oom,
                culprit(0, FailCause::Died),
            ),
            // Lying counters: more begun than the chunk holds, or more ended than begun.
            (page(3, 5, 4), SEGV, None, Verdict::Unknown(FailCause::Died)),
            (
                page(3, 1_000, 0),
                SEGV,
                None,
                Verdict::Unknown(FailCause::Died),
            ),
            (page(3, 2, 3), SEGV, None, Verdict::Unknown(FailCause::Died)),
            (
                page(3, 2, u64::MAX - 10),
                SEGV,
                None,
                Verdict::Unknown(FailCause::Died),
            ),
            // Begun below the chunk's base: nothing of it began.
            (
                Snapshot {
                    chunk_base: 50,
                    ..page(3, 2, 1)
                },
                SEGV,
                None,
                Verdict::Blameless(FailCause::Died),
            ),
        ];
        for (at, (snap, death, limit, expected)) in cases.into_iter().enumerate() {
            let verdict = verdict_of(record(), || snap, || panic!("no clock"), death, limit);
            assert_eq!(verdict, expected, "case {at}: {snap:?}, {death:?}");
        }
    }

    #[test]
    fn a_worker_stopped_for_an_item_blames_it_only_while_that_item_or_an_overdue_one_runs() {
        let stopped = |ticket| Record {
            stopping: Some((StopReason::Item { ticket }, LIMIT)),
            ..record()
        };
        let limit = saturating_nanos(LIMIT);
        let started = page(3, 3, 2).since_nanos;
        // (the ticket it was stopped for, its page, now, the verdict)
        let cases = [
            // The item it was stopped for (begun 13 in all) still runs.
            (
                13,
                page(3, 3, 2),
                started,
                culprit(2, FailCause::TimedOut(LIMIT)),
            ),
            // That item ended before the signal, the next one runs within its limit.
            (
                12,
                page(3, 3, 2),
                started,
                Verdict::Blameless(FailCause::TimedOut(LIMIT)),
            ),
            (
                12,
                page(3, 3, 2),
                started + limit - 1,
                Verdict::Blameless(FailCause::TimedOut(LIMIT)),
            ),
            // ... or has run past it too by now (a tiny limit).
            (
                12,
                page(3, 3, 2),
                started + limit,
                culprit(2, FailCause::TimedOut(LIMIT)),
            ),
            // Between items: the item it was stopped for ended.
            (
                13,
                page(3, 3, 3),
                started + limit,
                Verdict::Blameless(FailCause::TimedOut(LIMIT)),
            ),
            // Lying counters: more begun than the chunk holds.
            (
                15,
                page(3, 5, 4),
                started,
                Verdict::Unknown(FailCause::TimedOut(LIMIT)),
            ),
        ];
        for (at, (ticket, snap, now, expected)) in cases.into_iter().enumerate() {
            let verdict = verdict_of(stopped(ticket), || snap, || now, SEGV, None);
            assert_eq!(
                verdict, expected,
                "case {at}: ticket {ticket}, {snap:?}, now {now}"
            );
        }
        // Start times before `timed_since` were not recorded: the item is timed from then.
        let late = Record {
            timed_since: started + limit,
            ..stopped(12)
        };
        let verdict = verdict_of(late, || page(3, 3, 2), || started + limit, SEGV, None);
        assert_eq!(verdict, Verdict::Blameless(FailCause::TimedOut(LIMIT)));
    }

    #[test]
    fn a_protocol_breaker_or_a_worker_before_its_initializer_returned_is_not_read() {
        let unread = || -> Snapshot { panic!("its page was read") };
        let offended = Record {
            offense: Some("a reply out of turn"),
            stopping: Some((StopReason::Stalled, LIMIT)),
            ..record()
        };
        assert_eq!(
            verdict_of(offended, unread, || 0, SEGV, None),
            Verdict::Unknown(FailCause::Protocol("a reply out of turn".into()))
        );
        let starting = Record {
            ready: false,
            ..record()
        };
        assert_eq!(
            verdict_of(starting, unread, || 0, SEGV, None),
            Verdict::Requeue
        );
        let idle = Record {
            front_count: None,
            offense: Some("a frame it may not send"),
            ..record()
        };
        assert_eq!(verdict_of(idle, unread, || 0, SEGV, None), Verdict::Requeue);
    }

    #[test]
    fn a_worker_stopped_for_its_call_or_its_initializer_has_its_chunk_sent_again_unless_it_lies() {
        for reason in [StopReason::Dropped, StopReason::Init] {
            let stopped = Record {
                stopping: Some((reason, LIMIT)),
                ..record()
            };
            for snap in [page(3, 3, 2), page(3, 0, 0), page(3, 2, 7), page(2, 3, 2)] {
                let verdict = verdict_of(stopped, || snap, || panic!("no clock"), SEGV, None);
                assert_eq!(verdict, Verdict::Requeue, "{reason:?}, {snap:?}");
            }
            // More begun than the chunk holds: none of its items is believed.
            let verdict = verdict_of(stopped, || page(3, 9, 1), || 0, SEGV, None);
            assert_eq!(verdict, Verdict::Unknown(FailCause::Died), "{reason:?}");
        }
    }
}
