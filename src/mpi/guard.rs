//! A node's crash-loop guard over the chunks of one call.
//!
//! A node runs each chunk as a call of its local pool, and a pool's own guard starts afresh with
//! every call: chunks smaller than the limit would never trip it, and a node whose every item
//! kills its worker would fork forever. This guard counts the deaths the outcomes report across
//! the chunks of one cluster call, cleared by any outcome that is not a death, with the limit
//! of [`ClusterBuilder::max_restarts`](crate::mpi::ClusterBuilder::max_restarts).

use crate::{ItemError, PoolError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many causes a crash loop quotes (as a pool's own guard does).
const CAUSES_KEPT: usize = 5;

/// Deaths since the last item that did not kill its worker, in the current call.
pub(crate) struct Guard {
    deaths: usize,
    within: Duration,
    call: u64,
    times: VecDeque<Instant>,
    causes: VecDeque<String>,
}

impl Guard {
    pub fn new(deaths: usize, within: Duration) -> Self {
        Guard {
            deaths,
            within,
            call: 0,
            times: VecDeque::new(),
            causes: VecDeque::new(),
        }
    }

    /// Counts one outcome of `call`: the crash loop, if it was one death too many.
    pub fn outcome(&mut self, call: u64, failure: Option<&ItemError>) -> Option<PoolError> {
        if call != self.call {
            self.call = call;
            self.clear();
        }
        let cause = match failure {
            Some(ItemError::WorkerDied { pid, death, .. }) => format!("worker {pid} {death}"),
            Some(ItemError::OutOfMemory { pid, .. }) => format!("worker {pid} ran out of memory"),
            Some(ItemError::TimedOut { pid, after, .. }) => {
                format!("worker {pid} timed out after {after:?}")
            }
            _ => {
                self.clear();
                return None;
            }
        };
        let now = Instant::now();
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.within)
        {
            self.times.pop_front();
        }
        self.causes.push_back(cause);
        if self.causes.len() > CAUSES_KEPT {
            self.causes.pop_front();
        }
        if self.times.len() <= self.deaths {
            return None;
        }
        let error = PoolError::CrashLoop {
            deaths: self.times.len(),
            within: self.within,
            last_causes: self.causes.iter().cloned().collect(),
        };
        self.clear();
        Some(error)
    }

    fn clear(&mut self) {
        self.times.clear();
        self.causes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Death;

    fn died(pid: u32) -> ItemError {
        ItemError::WorkerDied {
            index: 0,
            pid,
            death: Death::Signal(6),
        }
    }

    #[test]
    fn trips_past_the_limit_across_chunks_and_resets_on_progress_and_new_calls() {
        let mut guard = Guard::new(2, Duration::from_secs(60));
        assert!(guard.outcome(1, Some(&died(10))).is_none());
        assert!(guard.outcome(1, Some(&died(11))).is_none());
        assert!(guard.outcome(1, None).is_none()); // an item finished
        assert!(guard.outcome(1, Some(&died(12))).is_none());
        assert!(guard.outcome(1, Some(&died(13))).is_none());
        assert!(guard.outcome(2, Some(&died(14))).is_none()); // a new call starts afresh
        assert!(guard.outcome(2, Some(&died(15))).is_none());
        match guard.outcome(2, Some(&died(16))) {
            Some(PoolError::CrashLoop {
                deaths,
                last_causes,
                ..
            }) => {
                assert_eq!(deaths, 3);
                assert_eq!(last_causes[2], "worker 16 killed by SIGABRT (signal 6)");
            }
            other => panic!("expected a crash loop, got {other:?}"),
        }
    }
}
