//! An input whose `next` panics: the panic surfaces in input order, after the outcome of every
//! item pulled before it (CPython's `test_imap_handle_iterable_exception`, ported), and the
//! pool stays whole and usable. (An input that is asked again after its panic, and goes on,
//! is `tests/reentrant.rs`.)

mod common;

use forkpool::Pool;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Rounds each test runs.
const ROUNDS: u64 = 5;

/// Items `0..end`; `next` panics at `panic_at` and is finished after it, as a Python
/// generator that raised.
struct RaisesAt {
    next: u64,
    end: u64,
    panic_at: u64,
    finished: bool,
}

impl RaisesAt {
    fn new(end: u64, panic_at: u64) -> RaisesAt {
        RaisesAt {
            next: 0,
            end,
            panic_at,
            finished: false,
        }
    }
}

impl Iterator for RaisesAt {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.finished || self.next >= self.end {
            return None;
        }
        let x = self.next;
        self.next += 1;
        if x == self.panic_at {
            self.finished = true;
            panic!("the input panics at {x}");
        }
        Some(x)
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

/// The message of a panic payload.
fn message(payload: &(dyn Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(message), _) => message.to_string(),
        (None, Some(message)) => message.clone(),
        (None, None) => "a panic with a non-string payload".into(),
    }
}

/// The pool answers a call and kept its workers.
fn assert_usable(pool: &Pool, pids: &[u32]) {
    assert_eq!(
        pool.map(double, 0..20u64).unwrap(),
        (0..20).map(double).collect::<Vec<_>>()
    );
    let mut now = pool.pids();
    now.sort_unstable();
    assert_eq!(now, pids, "the workers were replaced");
}

fn sorted_pids(pool: &Pool) -> Vec<u32> {
    let mut pids = pool.pids();
    pids.sort_unstable();
    pids
}

#[test]
fn imap_yields_every_outcome_before_its_inputs_panic_then_the_panic() {
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(2).unwrap();
        let pids = sorted_pids(&pool);
        for round in 0..ROUNDS {
            for chunksize in [Some(1), None] {
                let input = RaisesAt::new(10, 3);
                let mut outcomes = match chunksize {
                    Some(n) => pool.chunksize(n).imap(double, input),
                    None => pool.imap(double, input),
                };
                for x in 0..3u64 {
                    let outcome = catch_unwind(AssertUnwindSafe(|| outcomes.next()))
                        .unwrap_or_else(|p| {
                            panic!(
                                "chunksize {chunksize:?}, round {round}: next() for item {x} \
                                 panicked ({}) before yielding it",
                                message(&*p)
                            )
                        });
                    assert_eq!(outcome.unwrap().unwrap(), x * 2, "chunksize {chunksize:?}");
                }
                let panic = catch_unwind(AssertUnwindSafe(|| outcomes.next()))
                    .expect_err("the input's panic at item 3 comes after items 0-2");
                assert_eq!(message(&*panic), "the input panics at 3");
                // The input is finished after its panic: so is the call.
                let after = catch_unwind(AssertUnwindSafe(|| outcomes.next()));
                assert!(matches!(after, Ok(None)), "chunksize {chunksize:?}");
                drop(outcomes);
                assert_usable(&pool, &pids);
            }
        }
    });
}

#[test]
fn imap_unordered_yields_every_outcome_before_its_inputs_panic_then_the_panic() {
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(2).unwrap();
        let pids = sorted_pids(&pool);
        for _ in 0..ROUNDS {
            for chunksize in [Some(1), None] {
                let input = RaisesAt::new(10, 3);
                let mut outcomes = match chunksize {
                    Some(n) => pool.chunksize(n).imap_unordered(double, input),
                    None => pool.imap_unordered(double, input),
                };
                let mut got = Vec::new();
                let panic = loop {
                    match catch_unwind(AssertUnwindSafe(|| outcomes.next())) {
                        Ok(Some(outcome)) => got.push(outcome.unwrap()),
                        Ok(None) => panic!("the call ended without the input's panic"),
                        Err(panic) => break panic,
                    }
                };
                assert_eq!(message(&*panic), "the input panics at 3");
                got.sort_unstable();
                assert_eq!(got, [0, 2, 4], "chunksize {chunksize:?}");
                assert!(outcomes.next().is_none());
                drop(outcomes);
                assert_usable(&pool, &pids);
            }
        }
    });
}

/// Bit `x` is set when item `x` ran in a worker: shared with the workers forked after it is set.
static RAN: OnceLock<&'static AtomicU64> = OnceLock::new();

fn mark(x: u64) -> u64 {
    RAN.get().unwrap().fetch_or(1 << x, Ordering::SeqCst);
    x * 2
}

#[test]
fn map_resumes_its_inputs_panic_after_every_earlier_item_ran() {
    common::within(Duration::from_secs(60), || {
        let ran = *RAN.get_or_init(common::shared_counter);
        let pool = Pool::new(2).unwrap();
        let pids = sorted_pids(&pool);
        for _ in 0..ROUNDS {
            for chunksize in [Some(1), None] {
                ran.store(0, Ordering::SeqCst);
                let input = RaisesAt::new(10, 3);
                let panic = catch_unwind(AssertUnwindSafe(|| match chunksize {
                    Some(n) => pool.chunksize(n).map(mark, input),
                    None => pool.map(mark, input),
                }))
                .expect_err("map resumes the input's panic");
                assert_eq!(message(&*panic), "the input panics at 3");
                assert_eq!(
                    ran.load(Ordering::SeqCst),
                    0b111,
                    "chunksize {chunksize:?}: items 0-2 ran before the panic, no other item ran"
                );
                assert_usable(&pool, &pids);
            }
        }
    });
}

#[test]
fn dropping_an_imap_before_its_inputs_panic_is_reached_leaves_the_pool_usable() {
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(2).unwrap();
        for _ in 0..ROUNDS {
            // The panic is caught at the first pull (items 0-2 go out); the consumer takes
            // one outcome and drops the iterator with the panic kept and never resumed.
            let mut outcomes = pool.chunksize(1).imap(double, RaisesAt::new(10, 3));
            let first = catch_unwind(AssertUnwindSafe(|| outcomes.next()))
                .expect("item 0's outcome comes before the input's panic");
            assert_eq!(first.unwrap().unwrap(), 0);
            drop(outcomes);
            assert_eq!(
                pool.map(double, 0..20u64).unwrap(),
                (0..20).map(double).collect::<Vec<_>>()
            );
        }
    });
}

#[cfg(feature = "async")]
#[test]
fn an_awaited_imap_yields_every_outcome_before_its_inputs_panic_then_the_panic() {
    use futures::StreamExt;
    use futures::executor::block_on;
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(2).unwrap();
        let pids = sorted_pids(&pool);
        for _ in 0..ROUNDS {
            let mut outcomes = pool.chunksize(1).imap(double, RaisesAt::new(10, 3));
            for x in 0..3u64 {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    block_on(StreamExt::next(&mut outcomes))
                }))
                .expect("no panic before item 3's place");
                assert_eq!(outcome.unwrap().unwrap(), x * 2);
            }
            let panic = catch_unwind(AssertUnwindSafe(|| {
                block_on(StreamExt::next(&mut outcomes))
            }))
            .expect_err("the input's panic at item 3 comes after items 0-2");
            assert_eq!(message(&*panic), "the input panics at 3");
            drop(outcomes);
            assert_usable(&pool, &pids);
        }
    });
}
