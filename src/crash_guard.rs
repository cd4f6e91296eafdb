//! The crash-loop guard: notices workers dying faster than a limit with no item finishing in
//! between, so a call whose every item kills its worker ends instead of forking forever.
//!
//! Invariant: the guard counts only deaths since the last sign of progress: a reply from any
//! worker (even one carrying panics), or a dead worker that had finished at least one item.
//! Either proves workers can make progress and clears the count.

use crate::error::PoolError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many causes a [`PoolError::CrashLoop`] quotes.
const CAUSES_KEPT: usize = 5;

/// The most worker deaths tolerated within a span of time (billiard's `max_restarts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    /// Deaths allowed within `within`; one more ends the call with [`PoolError::CrashLoop`].
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
}

impl CrashGuard {
    pub fn new(limit: RestartLimit) -> CrashGuard {
        CrashGuard {
            limit,
            deaths: VecDeque::new(),
            causes: VecDeque::new(),
        }
    }

    /// A worker replied: workers can make progress.
    pub fn progress(&mut self) {
        self.deaths.clear();
        self.causes.clear();
    }

    /// A worker died of `cause`; the crash-loop error if that was one death too many.
    pub fn death(&mut self, cause: String) -> Option<PoolError> {
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
        self.progress();
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_the_limit_and_progress_resets_it() {
        let mut guard = CrashGuard::new(RestartLimit {
            deaths: 2,
            within: Duration::from_secs(60),
        });
        assert!(guard.death("a".into()).is_none());
        assert!(guard.death("b".into()).is_none());
        guard.progress();
        assert!(guard.death("c".into()).is_none());
        assert!(guard.death("d".into()).is_none());
        match guard.death("e".into()) {
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
}
