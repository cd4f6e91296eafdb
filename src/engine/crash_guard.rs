//! The crash-loop guard: notices workers dying faster than a limit with no item finishing in
//! between, so a call whose every item kills its worker ends instead of forking forever.
//!
//! Invariant: the guard counts only deaths since the last sign of progress. Progress is a reply
//! from any worker (even one carrying panics), a dead worker that had finished at least one
//! item, or, once a reply has shown that the code can finish items ([`CrashGuard::finished`]
//! since the last [`CrashGuard::fresh`] or trip), a death that settled the item it killed
//! alone (the item that ran is known and failed with its own cause). Each such death ends one
//! item for good, so a run of them is a call going through its input, not a loop. Deaths
//! that settle nothing count: a worker killed before it began an item (an initializer that
//! kills every replacement, a frame that kills the reader), a chunk split because which item
//! killed it is unknown, a worker that died holding nothing; so do settled deaths while no
//! item has finished (code that crashes on every item).

use crate::error::PoolError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many causes a [`PoolError::CrashLoop`] quotes.
const CAUSES_KEPT: usize = 5;

/// The most worker deaths tolerated within a span of time with no progress in between
/// (billiard's `max_restarts`).
///
/// What counts: a worker's death, unless the worker is one the pool retired (recycled, shut
/// down) holding nothing of a live call, or one it stopped because the call of its running
/// item had ended. What clears the count (progress): any worker's reply to a chunk (even of
/// items that panicked), the death of a worker that had finished an item, and, after such a
/// reply, a death whose running item is known and failed alone with its own cause (its chunk
/// had that one item, or its progress page named the item). So items that each crash alone
/// never trip it while other items finish; an initializer that kills every replacement, code
/// that crashes on every item with no item finishing, and workers killed repeatedly with
/// nothing running do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    /// Deaths allowed within `within`; one more ends the calls with work at the workers with
    /// [`PoolError::CrashLoop`].
    pub deaths: usize,
    /// The span of time the deaths are counted over.
    pub within: Duration,
}

impl Default for RestartLimit {
    /// 32 deaths within 10 seconds, with no item finishing in between.
    fn default() -> Self {
        RestartLimit {
            deaths: 32,
            within: Duration::from_secs(10),
        }
    }
}

/// Deaths since the last sign of progress.
#[derive(Debug)]
pub(crate) struct CrashGuard {
    limit: RestartLimit,
    deaths: VecDeque<Instant>,
    causes: VecDeque<String>,
    /// A worker replied since the last fresh start or trip: the code can finish items.
    proven: bool,
}

/// What a worker's death settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Nothing for good: no item ran, or which one killed it is unknown.
    Nothing,
    /// The item it ran is known and fails alone with its own cause.
    ItsItem,
}

impl CrashGuard {
    pub fn new(limit: RestartLimit) -> CrashGuard {
        CrashGuard {
            limit,
            deaths: VecDeque::new(),
            causes: VecDeque::new(),
            proven: false,
        }
    }

    /// A worker replied: workers can make progress, and the code can finish items.
    pub fn finished(&mut self) {
        self.clear();
        self.proven = true;
    }

    /// Workers make progress (a dead worker had finished items, or one that broke the
    /// protocol got its running chunk blamed): clears the count.
    pub fn progress(&mut self) {
        self.clear();
    }

    /// A fresh start (a call begins with no other running): earlier deaths and replies say
    /// nothing about its items.
    pub fn fresh(&mut self) {
        self.clear();
        self.proven = false;
    }

    fn clear(&mut self) {
        self.deaths.clear();
        self.causes.clear();
    }

    /// A worker died of `cause`, having settled `settled`; the crash-loop error if that was
    /// one death too many. A death that settled its item, once the code has finished items,
    /// is progress.
    pub fn death(&mut self, cause: String, settled: Settled) -> Option<PoolError> {
        if settled == Settled::ItsItem && self.proven {
            self.clear();
            return None;
        }
        let now = Instant::now();
        self.deaths.push_back(now);
        while self
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.limit.within)
        {
            self.deaths.pop_front();
        }
        self.causes.push_back(cause);
        if self.causes.len() > CAUSES_KEPT {
            self.causes.pop_front();
        }
        if self.deaths.len() <= self.limit.deaths {
            return None;
        }
        let error = PoolError::CrashLoop {
            deaths: self.deaths.len(),
            within: self.limit.within,
            last_causes: self.causes.iter().cloned().collect(),
        };
        self.fresh();
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard_of(deaths: usize) -> CrashGuard {
        CrashGuard::new(RestartLimit {
            deaths,
            within: Duration::from_secs(60),
        })
    }

    #[test]
    fn trips_after_the_limit_and_progress_resets_it() {
        let mut guard = guard_of(2);
        assert!(guard.death("a".into(), Settled::Nothing).is_none());
        assert!(guard.death("b".into(), Settled::Nothing).is_none());
        guard.progress();
        assert!(guard.death("c".into(), Settled::Nothing).is_none());
        assert!(guard.death("d".into(), Settled::Nothing).is_none());
        match guard.death("e".into(), Settled::Nothing) {
            Some(PoolError::CrashLoop {
                deaths,
                last_causes,
                ..
            }) => {
                assert_eq!(deaths, 3);
                assert_eq!(last_causes, ["c", "d", "e"]);
            }
            other => panic!("expected a crash loop, got {other:?}"),
        }
    }

    #[test]
    fn deaths_that_each_settle_their_item_never_trip_once_an_item_finished() {
        let mut guard = guard_of(2);
        guard.finished();
        for i in 0..1000 {
            assert!(guard.death(format!("{i}"), Settled::ItsItem).is_none());
        }
        // They cleared the count: two unsettled deaths are still within the limit.
        assert!(guard.death("x".into(), Settled::Nothing).is_none());
        assert!(guard.death("y".into(), Settled::Nothing).is_none());
        assert!(guard.death("z".into(), Settled::Nothing).is_some());
    }

    #[test]
    fn settled_deaths_trip_while_no_item_has_finished() {
        // Code that crashes on every item: each death settles its item, but nothing ever
        // finishes.
        let mut guard = guard_of(2);
        assert!(guard.death("a".into(), Settled::ItsItem).is_none());
        assert!(guard.death("b".into(), Settled::ItsItem).is_none());
        assert!(guard.death("c".into(), Settled::ItsItem).is_some());
        // A trip, and a fresh start, forget that items finished.
        guard.finished();
        guard.fresh();
        assert!(guard.death("d".into(), Settled::ItsItem).is_none());
        assert!(guard.death("e".into(), Settled::ItsItem).is_none());
        assert!(guard.death("f".into(), Settled::ItsItem).is_some());
        assert!(guard.death("g".into(), Settled::ItsItem).is_none());
        assert!(guard.death("h".into(), Settled::ItsItem).is_none());
        assert!(guard.death("i".into(), Settled::ItsItem).is_some());
    }

    #[test]
    fn deaths_that_settle_nothing_trip_even_after_items_finished() {
        // An initializer that kills every replacement, workers killed with nothing running.
        let mut guard = guard_of(3);
        guard.finished();
        for cause in ["a", "b", "c"] {
            assert!(guard.death(cause.into(), Settled::Nothing).is_none());
        }
        assert!(guard.death("d".into(), Settled::Nothing).is_some());
    }
}
