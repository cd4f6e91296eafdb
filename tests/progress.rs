//! Progress per call: a callback sink ticks exactly once per item, failed and crashed items
//! included, in order of completion, with the total when the input states its length; and the
//! lazy calls' `size_hint` is exact for such inputs.

use forkpool::{Error, ItemError, Pool, Progress};
use std::sync::{Arc, Mutex};

/// Records every report a call makes.
fn recorder() -> (
    Arc<Mutex<Vec<Progress>>>,
    impl Fn(Progress) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |p| sink.lock().unwrap().push(p))
}

/// Panics on `x % 10 == 7`, aborts its worker on `x == 13`, else doubles.
fn sometimes_fails(x: u64) -> u64 {
    if x % 10 == 7 {
        panic!("item {x} refuses");
    }
    if x == 13 {
        std::process::abort();
    }
    x * 2
}

fn check_ticks(seen: &[Progress], n: u64, total: Option<u64>) {
    assert_eq!(seen.len() as u64, n, "one tick per item");
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(p.done, i as u64 + 1, "counted one by one");
        assert_eq!(p.total, total);
    }
}

#[test]
fn every_item_ticks_once_failed_and_crashed_ones_included() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 3, 16] {
        let (seen, sink) = recorder();
        let outcomes: Vec<Result<u64, Error>> = pool
            .chunksize(chunksize)
            .on_progress(sink)
            .imap(sometimes_fails, 0..100u64)
            .collect();
        assert_eq!(outcomes.len(), 100);
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(v) => assert_eq!(*v, x * 2),
                Err(Error::Task(ItemError::Panicked { index, .. })) => assert_eq!(*index % 10, 7),
                Err(Error::Task(ItemError::WorkerDied { index, .. })) => assert_eq!(*index, 13),
                other => panic!("item {x} at chunksize {chunksize}: {other:?}"),
            }
        }
        check_ticks(&seen.lock().unwrap(), 100, Some(100));
    }
}

#[test]
fn unordered_and_unknown_length_calls_tick_once_per_item() {
    let pool = Pool::new(2).unwrap();
    let (seen, sink) = recorder();
    let done: Vec<u64> = pool
        .on_progress(sink)
        .imap_unordered(|x: u64| x + 1, (0..250u64).filter(|_| true))
        .map(Result::unwrap)
        .collect();
    assert_eq!(done.len(), 250);
    check_ticks(&seen.lock().unwrap(), 250, None);
    let (seen, sink) = recorder();
    let v = pool
        .on_progress(sink)
        .starmap(|a: u64, b: u64| a * b, (0..40u64).map(|x| (x, x)))
        .unwrap();
    assert_eq!(v[39], 39 * 39);
    check_ticks(&seen.lock().unwrap(), 40, Some(40));
}

#[test]
fn a_dropped_call_reports_nothing_more() {
    let pool = Pool::new(2).unwrap();
    let (seen, sink) = recorder();
    let mut lazy = pool
        .chunksize(1)
        .on_progress(sink)
        .imap(|x: u64| x, 0..1_000_000u64);
    for _ in 0..5 {
        lazy.next().unwrap().unwrap();
    }
    drop(lazy);
    let ticked = seen.lock().unwrap().len();
    assert!(ticked >= 5, "{ticked}");
    // The pool runs on (any reply of the dropped call that arrives now is discarded).
    assert_eq!(pool.map(|x: u64| x, 0..10_000u64).unwrap().len(), 10_000);
    assert_eq!(seen.lock().unwrap().len(), ticked, "no tick after the drop");
}

#[test]
fn lazy_calls_state_exactly_how_many_outcomes_are_left() {
    let pool = Pool::new(2).unwrap();
    let mut lazy = pool.imap(|x: u64| x, 0..100u64);
    assert_eq!(lazy.size_hint(), (100, Some(100)));
    for _ in 0..10 {
        lazy.next().unwrap().unwrap();
    }
    assert_eq!(lazy.size_hint(), (90, Some(90)));
    assert_eq!(lazy.by_ref().count(), 90);
    assert_eq!(lazy.size_hint(), (0, Some(0)));

    let unordered = pool.imap_unordered(|x: u64| x, vec![1u64, 2, 3]);
    assert_eq!(unordered.size_hint(), (3, Some(3)));
    assert_eq!(unordered.count(), 3);

    let unknown = pool.imap(|x: u64| x, (0..10u64).filter(|_| true));
    assert_eq!(unknown.size_hint().1, None);
    assert_eq!(unknown.count(), 10);

    // A misuse yields its one error, and says so.
    let misused = pool.chunksize(0).imap(|x: u64| x, 0..10u64);
    assert_eq!(misused.size_hint(), (1, Some(1)));
    let outcomes: Vec<_> = misused.collect();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].is_err());
}

#[test]
fn an_fn_pool_reports_as_a_pool_does() {
    let limit = 7u64; // captured: FnPool workers hold the closure
    let pool = forkpool::FnPool::new(2, move |x: u64| {
        assert!(x != limit, "item {x} is the limit");
        x + 1
    })
    .unwrap();
    let (seen, sink) = recorder();
    let outcomes: Vec<_> = pool.on_progress(sink).imap(0..30u64).collect();
    assert_eq!(outcomes.len(), 30);
    assert!(outcomes[7].is_err() && outcomes.iter().filter(|o| o.is_err()).count() == 1);
    check_ticks(&seen.lock().unwrap(), 30, Some(30));
    let (seen, sink) = recorder();
    assert_eq!(pool.on_progress(sink).map(10..20u64).unwrap()[0], 11);
    check_ticks(&seen.lock().unwrap(), 10, Some(10));
}
