//! The crash-loop guard ends calls whose code kills every worker, and only those: items that
//! each crash alone while the others finish never trip it, an item that crashed keeps its own
//! cause when it does trip, and an initializer that kills every replacement still trips it.

mod common;

use common::{segfault, within};
use forkpool::{Death, ItemError, Pool};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// Segfaults on even items, returns odd ones.
fn segfault_on_even(x: u32) -> u32 {
    if x % 2 == 0 {
        segfault();
    }
    x
}

/// Checks that odd items came back and even ones failed alone with their worker's SIGSEGV.
fn assert_odd_ok_even_segfaulted(outcomes: &[Result<u32, forkpool::Error>], round: usize) {
    for (x, outcome) in (0u32..).zip(outcomes) {
        match outcome {
            Ok(value) => assert!(
                x % 2 == 1 && *value == x,
                "round {round}: item {x}: Ok({value})"
            ),
            Err(e) => assert!(
                x % 2 == 0
                    && matches!(e.as_task(), Some(ItemError::WorkerDied { index, death: Death::Signal(libc::SIGSEGV), .. })
                        if *index == u64::from(x)),
                "round {round}: item {x}: {e}"
            ),
        }
    }
}

#[test]
fn items_that_each_crash_alone_never_trip_the_guard_while_others_finish() {
    within(DEADLINE, || {
        // A guard that allows 5 deaths: 15 crashing items, each alone in its chunk, are far
        // more deaths than that, but each of them is settled (it fails with its own cause).
        let pool = Pool::builder()
            .workers(2)
            .max_restarts(5, Duration::from_secs(60))
            .build()
            .unwrap();
        for round in 0..20 {
            let outcomes: Vec<_> = pool.chunksize(1).imap(segfault_on_even, 0..30u32).collect();
            assert_eq!(outcomes.len(), 30, "round {round}");
            assert_odd_ok_even_segfaulted(&outcomes, round);
        }
    });
}

#[test]
fn the_issue_case_two_hundred_alternating_items_on_a_default_pool_all_keep_their_cause() {
    within(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        for round in 0..3 {
            let outcomes: Vec<_> = pool
                .chunksize(1)
                .imap(segfault_on_even, 0..200u32)
                .collect();
            assert_eq!(outcomes.len(), 200, "round {round}");
            assert_odd_ok_even_segfaulted(&outcomes, round);
        }
    });
}

/// Bit `x` is set once item `x` began in a worker (a page shared with every worker).
static BEGUN: OnceLock<&'static AtomicU64> = OnceLock::new();

/// Records that item `x` began, then segfaults.
fn record_and_segfault(x: u32) -> u32 {
    BEGUN.get().unwrap().fetch_or(1 << x, Ordering::SeqCst);
    segfault();
    0
}

/// Checks one crash-loop round: every item that began (its bit in `begun`) has `WorkerDied`
/// with SIGSEGV, every other `PoolFailed` naming the crash loop, and the guard tripped.
fn assert_crashed_items_keep_their_cause(outcomes: &[Result<u32, forkpool::Error>], begun: u64) {
    for (x, outcome) in (0u64..).zip(outcomes) {
        let e = outcome.as_ref().unwrap_err();
        let crashed = begun & (1 << x) != 0;
        match e.as_task() {
            Some(ItemError::WorkerDied { index, death, .. }) if crashed => {
                assert_eq!((*index, *death), (x, Death::Signal(libc::SIGSEGV)), "{e}");
            }
            Some(ItemError::PoolFailed { index, cause }) if !crashed => {
                assert_eq!(*index, x, "{e}");
                assert!(cause.starts_with("crash loop"), "{e}");
            }
            _ => panic!("item {x} (began: {crashed}): {e}"),
        }
    }
    assert!(begun.count_ones() < 40, "the guard never tripped");
}

#[test]
fn when_the_guard_trips_every_item_that_crashed_keeps_its_own_cause() {
    let begun = *BEGUN.get_or_init(common::shared_counter);
    within(DEADLINE, move || {
        let pool = Pool::builder()
            .workers(2)
            .max_restarts(3, Duration::from_secs(60))
            .build()
            .unwrap();
        for _ in 0..20 {
            begun.store(0, Ordering::SeqCst);
            let outcomes: Vec<_> = pool
                .chunksize(1)
                .imap(record_and_segfault, 0..40u32)
                .collect();
            assert_eq!(outcomes.len(), 40);
            assert_crashed_items_keep_their_cause(&outcomes, begun.load(Ordering::SeqCst));
        }
    });
}

/// Set in the parent once its pool is built: workers forked after that (replacements)
/// segfault in their initializer.
static REPLACEMENTS_CRASH: AtomicBool = AtomicBool::new(false);

fn segfault_if_replacement() {
    if REPLACEMENTS_CRASH.load(Ordering::SeqCst) {
        segfault();
    }
}

fn segfault_at_zero(x: u32) -> u32 {
    if x == 0 {
        segfault();
    }
    x
}

#[test]
fn an_initializer_that_kills_every_replacement_still_trips_the_guard() {
    let outcomes = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(1)
            .init(segfault_if_replacement)
            .max_restarts(3, Duration::from_secs(60))
            .build()
            .unwrap();
        REPLACEMENTS_CRASH.store(true, Ordering::SeqCst);
        pool.chunksize(1)
            .imap(segfault_at_zero, 0..10u32)
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 10);
    let e = outcomes[0].as_ref().unwrap_err();
    assert!(
        matches!(e.as_task(), Some(ItemError::WorkerDied { index: 0, .. })),
        "{e}"
    );
    for (x, outcome) in (0u64..).zip(&outcomes).skip(1) {
        let e = outcome.as_ref().unwrap_err();
        assert!(
            matches!(e.as_task(), Some(ItemError::PoolFailed { index, cause })
                if *index == x && cause.starts_with("crash loop")),
            "{e}"
        );
    }
}
