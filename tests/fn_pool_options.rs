//! Every option documented for `Pool` works on an `FnPool` (built with `PoolBuilder::build_fn`),
//! each against real forked workers holding a capturing closure; and `FnPool::fold` /
//! `FnPool::map_reduce` equal their serial versions.

mod common;

use common::{is_reaped, segfault};
use forkpool::{Death, Error, FnPool, ItemError, Pool, PoolError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What each closure captures: proof that the closure itself, not a fn pointer, runs.
const OFFSET: u64 = 1000;

#[test]
fn pool_timeout_stops_a_slow_item_and_replaces_its_worker() {
    let offset = OFFSET;
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(300))
        .build_fn(move |s: u64| {
            std::thread::sleep(Duration::from_millis(s));
            s + offset
        })
        .unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap([0u64, 60_000, 5]).collect();
    assert_eq!(*outcomes[0].as_ref().unwrap(), OFFSET);
    assert_eq!(*outcomes[2].as_ref().unwrap(), 5 + OFFSET);
    assert!(
        matches!(
            outcomes[1].as_ref().unwrap_err().as_task(),
            Some(ItemError::TimedOut { index: 1, after, .. }) if *after == Duration::from_millis(300)
        ),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(pool.pids().len(), 2);
    // A call's own timeout overrides the pool's.
    let long = pool.timeout(Duration::from_secs(30)).map([400u64]).unwrap();
    assert_eq!(long, [400 + OFFSET]);
}

#[test]
fn a_zero_timeout_or_window_is_an_error_not_a_pool() {
    let build = |b: forkpool::PoolBuilder| b.build_fn(|x: u8| x).map(|_| ());
    assert!(matches!(
        build(Pool::builder().timeout(Duration::ZERO)),
        Err(PoolError::InvalidTimeout { .. })
    ));
    assert!(matches!(
        build(Pool::builder().window(0)),
        Err(PoolError::InvalidWindow { window: 0 })
    ));
    assert!(matches!(
        build(Pool::builder().workers(0)),
        Err(PoolError::NoWorkers { workers: 0 })
    ));
}

static INIT_MARK: AtomicU32 = AtomicU32::new(0);

fn mark() {
    INIT_MARK.store(41, Ordering::SeqCst);
}

#[test]
fn init_runs_in_every_worker_including_replacements() {
    let extra = 1;
    let pool = Pool::builder()
        .workers(2)
        .init(mark)
        .max_items_per_worker(3)
        .build_fn(move |x: u32| INIT_MARK.load(Ordering::SeqCst) + x + extra)
        .unwrap();
    assert_eq!(
        INIT_MARK.load(Ordering::SeqCst),
        0,
        "init ran in the parent"
    );
    assert_eq!(pool.map([0u32; 20]).unwrap(), [42u32; 20]);
}

#[test]
fn a_hanging_init_fails_the_build_after_init_timeout() {
    let err = Pool::builder()
        .workers(1)
        .init(|| std::thread::sleep(Duration::from_secs(60)))
        .init_timeout(Duration::from_millis(300))
        .build_fn(|x: u8| x)
        .unwrap_err();
    assert!(matches!(err, PoolError::Init { .. }), "{err}");
}

#[test]
fn max_tasks_per_worker_recycles_workers_without_losing_or_reordering() {
    let scale = 2;
    let pool = Pool::builder()
        .workers(2)
        .max_items_per_worker(10)
        .build_fn(move |x: u64| (x * scale, std::process::id()))
        .unwrap();
    let results = pool.map(0..100u64).unwrap();
    let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..100u64).map(|x| x * 2).collect::<Vec<_>>());
    let pids: HashSet<u32> = results.iter().map(|(_, p)| *p).collect();
    assert!(pids.len() >= 10, "only {} distinct workers", pids.len());
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn memory_limit_fails_the_item_that_blows_it_and_the_pool_goes_on() {
    let page = 4096;
    common::mark_test_process();
    let pool = Pool::builder()
        .workers(2)
        .memory_limit(256 << 20)
        .build_fn(move |mib: usize| {
            if mib >= 256 {
                // The allocation fails and aborts this worker; std says so on stderr.
                common::quiet_stderr();
            }
            let mut v = vec![0u8; mib << 20];
            for i in (0..v.len()).step_by(page) {
                v[i] = 1;
            }
            v.iter().step_by(page).filter(|b| **b == 1).count()
        })
        .unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap([1usize, 1024, 8]).collect();
    assert_eq!(*outcomes[0].as_ref().unwrap(), 256);
    assert_eq!(*outcomes[2].as_ref().unwrap(), 8 * 256);
    let err = outcomes[1].as_ref().unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::OutOfMemory { index: 1, limit, .. }) if *limit == 256 << 20),
        "{err}"
    );
}

#[test]
fn pinpointing_is_on_by_default_and_can_be_turned_off() {
    let bad = 137;
    let crash_on_bad = move |x: u64| {
        if x == bad {
            segfault();
        }
        x + 1
    };
    let pinpointing = FnPool::new(2, crash_on_bad).unwrap();
    let outcomes: Vec<_> = pinpointing.chunksize(50).imap(0..300u64).collect();
    for (i, r) in outcomes.iter().enumerate() {
        match i {
            137 => assert_eq!(r.as_ref().unwrap_err().as_task().unwrap().index(), 137),
            _ => assert_eq!(*r.as_ref().unwrap(), i as u64 + 1),
        }
    }
    let whole_chunk = Pool::builder()
        .workers(2)
        .pinpoint_crashes(false)
        .build_fn(crash_on_bad)
        .unwrap();
    let outcomes: Vec<_> = whole_chunk.chunksize(50).imap(0..300u64).collect();
    for (i, r) in outcomes.iter().enumerate() {
        if (100..150).contains(&i) {
            let e = r.as_ref().unwrap_err().as_task().unwrap().clone();
            assert_eq!(e.index(), i as u64);
            assert!(matches!(
                e,
                ItemError::WorkerDied {
                    death: Death::Signal(libc::SIGSEGV),
                    ..
                }
            ));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64 + 1);
        }
    }
}

#[test]
fn max_restarts_ends_a_crash_loop_and_the_pool_stays_usable() {
    let crashing = 1;
    let pool = Pool::builder()
        .workers(2)
        .max_restarts(3, Duration::from_secs(60))
        .build_fn(move |x: u64| {
            if x >= crashing {
                segfault();
            }
            x
        })
        .unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap(1..1000u64).collect();
    assert_eq!(outcomes.len(), 999);
    let errors: Vec<&ItemError> = outcomes
        .iter()
        .map(|r| r.as_ref().unwrap_err().as_task().unwrap())
        .collect();
    let looped = errors
        .iter()
        .filter(
            |e| matches!(e, ItemError::PoolFailed { cause, .. } if cause.starts_with("crash loop")),
        )
        .count();
    let died = errors
        .iter()
        .filter(|e| matches!(e, ItemError::WorkerDied { .. }))
        .count();
    assert_eq!(looped + died, 999);
    assert!(
        (1..=10).contains(&died),
        "{died} items died before the guard"
    );
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(pool.map([0u64]).unwrap(), [0]);
}

#[test]
fn show_panics_and_window_are_accepted_and_results_unchanged() {
    let label = "x";
    let pool = Pool::builder()
        .workers(2)
        .window(3)
        .show_panics(false)
        .build_fn(move |x: u32| format!("{label}{x}"))
        .unwrap();
    assert_eq!(pool.workers(), 2);
    let expected: Vec<String> = (0..50u32).map(|x| format!("x{x}")).collect();
    assert_eq!(pool.chunksize(1).map(0..50u32).unwrap(), expected);
}

#[test]
fn close_join_and_terminate() {
    let offset = OFFSET;
    let pool = FnPool::new(2, move |x: u64| x + offset).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::NotClosed)));
    let pids = pool.pids();
    assert_eq!(pool.map([1u64]).unwrap(), [1 + OFFSET]);
    pool.close();
    assert!(matches!(
        pool.map([1u64]),
        Err(Error::Pool(PoolError::Closed))
    ));
    assert!(matches!(pool.apply(1), Err(Error::Pool(PoolError::Closed))));
    pool.join().unwrap();
    assert!(pool.pids().is_empty());
    assert!(pids.iter().all(|p| is_reaped(*p)));

    let pool = FnPool::new(2, move |x: u64| x + offset).unwrap();
    let pids = pool.pids();
    pool.terminate();
    assert!(pool.pids().is_empty());
    assert!(pids.iter().all(|p| is_reaped(*p)));
    assert!(matches!(
        pool.map([1u64]),
        Err(Error::Pool(PoolError::Closed))
    ));
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn push(mut acc: Vec<u64>, x: u64) -> Vec<u64> {
    acc.push(x);
    acc
}

fn concat(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.extend(b);
    a
}

#[test]
fn fn_pool_fold_and_map_reduce_equal_their_serial_versions() {
    let table: Vec<u64> = (0..500).map(|i| (i * 7919) % 1000).collect();
    let pool = FnPool::new(2, |i: usize| table[i]).unwrap();
    for chunksize in [1, 7, 64, 1000] {
        let folded = pool
            .chunksize(chunksize)
            .fold(push, Vec::new(), concat, 0..table.len())
            .unwrap();
        assert_eq!(folded, table, "chunksize {chunksize}");
        let total = pool
            .chunksize(chunksize)
            .map_reduce(add, 0..table.len())
            .unwrap();
        assert_eq!(total, Some(table.iter().sum()));
    }
    assert_eq!(pool.map_reduce(add, Vec::new()).unwrap(), None);
    assert_eq!(pool.fold(push, vec![7], concat, Vec::new()).unwrap(), [7]);
    // A crash in the closure fails the reduction with that item's index.
    let crashing = FnPool::new(2, |x: u64| {
        if x == 33 {
            segfault();
        }
        x
    })
    .unwrap();
    let error = crashing.chunksize(8).map_reduce(add, 0..64u64).unwrap_err();
    assert!(
        matches!(
            error.as_task(),
            Some(ItemError::WorkerDied { index: 33, .. })
        ),
        "{error}"
    );
    assert_eq!(crashing.map_reduce(add, 0..33u64).unwrap(), Some(528));
}
