//! Panics and deaths cost their own items only; the pool goes on at full size.

mod common;

use common::segfault;
use forkpool::{Death, Error, ItemError, Pool};

fn panics_on_500(x: u64) -> u64 {
    if x == 500 {
        panic!("item {x} is cursed");
    }
    x * 2
}

#[test]
fn a_panicking_item_fails_alone_and_the_same_workers_serve_the_next_call() {
    let pool = Pool::new(2).unwrap();
    let before = pool.pids();
    let outcomes: Vec<Result<u64, Error>> = pool.imap(panics_on_500, 0..1_000u64).collect();
    assert_eq!(outcomes.len(), 1_000);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(v, i as u64 * 2),
            Err(Error::Task(ItemError::Panicked {
                index,
                message,
                location,
                pid,
            })) => {
                assert_eq!(index, 500);
                assert_eq!(i, 500);
                assert_eq!(message, "item 500 is cursed");
                assert!(location.unwrap().contains("faults.rs"));
                assert!(before.contains(&pid));
            }
            Err(other) => panic!("item {i}: unexpected {other}"),
        }
    }
    // map reports the same failure as its error.
    let err = pool.map(panics_on_500, 0..1_000u64).unwrap_err();
    assert!(matches!(
        err,
        Error::Task(ItemError::Panicked { index: 500, .. })
    ));
    let mut after = pool.pids();
    let mut before = before;
    after.sort_unstable();
    before.sort_unstable();
    assert_eq!(after, before, "the panics must not have cost a worker");
    assert_eq!(
        pool.map(|x: u64| x + 1, 0..10u64).unwrap(),
        (1..11).collect::<Vec<_>>()
    );
}

fn crash_on(x: u64) -> u64 {
    if x == 137 {
        // SAFETY: raise(3) is sound to call; the worker dies of the signal, which is the point.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    if x == 642 {
        std::process::abort();
    }
    x + 1
}

#[test]
fn segfault_and_abort_fail_only_their_items_and_the_pool_recovers() {
    const CHUNKSIZE: u64 = 25;
    let pool = Pool::builder().workers(2).window(2).build().unwrap();
    let outcomes: Vec<Result<u64, Error>> = pool
        .chunksize(CHUNKSIZE as usize)
        .imap(crash_on, 0..1_000u64)
        .collect();
    assert_eq!(outcomes.len(), 1_000);
    let chunk_of = |x: u64| x / CHUNKSIZE;
    let mut seen = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let i = i as u64;
        match outcome {
            Ok(v) => assert_eq!(v, i + 1),
            Err(Error::Task(ItemError::WorkerDied { index, death, .. })) => {
                assert_eq!(index, i);
                if chunk_of(i) == chunk_of(137) {
                    assert_eq!(death, Death::Signal(libc::SIGSEGV));
                    assert_eq!(death.signal_name(), Some("SIGSEGV"));
                } else if chunk_of(i) == chunk_of(642) {
                    assert_eq!(death, Death::Signal(libc::SIGABRT));
                    assert_eq!(death.signal_name(), Some("SIGABRT"));
                } else {
                    panic!("item {i} is in neither crashing chunk but failed: {death}");
                }
                seen.push(i);
            }
            Err(other) => panic!("item {i}: unexpected {other}"),
        }
    }
    // Only the crashing items failed: their chunk-mates were run again (crash pinpointing).
    assert_eq!(seen, [137, 642]);
    // The pool is back at full size, with replacements, and runs a new map.
    assert_eq!(pool.pids().len(), 2);
    let v = pool.map(|x: u64| x * x, 0..100u64).unwrap();
    assert_eq!(v, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn error_display_names_item_worker_and_signal() {
    let pool = Pool::new(1).unwrap();
    let pid = pool.pids()[0];
    let err = pool
        .chunksize(1)
        .map(
            |x: u32| {
                if x == 3 {
                    segfault();
                }
                x
            },
            0..5u32,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("item 3: worker {pid} killed by SIGSEGV (signal 11)")
    );
}

#[test]
fn a_worker_that_exits_reports_its_exit_code() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<Result<u32, Error>> = pool
        .chunksize(1)
        .imap(
            |x: u32| {
                if x == 4 {
                    // `_exit`, not `std::process::exit`: std's clean-up takes a lock another
                    // thread of this test binary may have held at the fork (see the README's
                    // caveats).
                    // SAFETY: `_exit` ends the worker at once; nothing of it runs afterwards.
                    unsafe { libc::_exit(9) };
                }
                x
            },
            0..8u32,
        )
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Ok(v) => assert_eq!(*v, i as u32),
            Err(Error::Task(ItemError::WorkerDied {
                index: 4, death, ..
            })) => {
                assert_eq!(*death, Death::Exit(9));
            }
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    assert!(outcomes[4].is_err());
}

fn segfault_every_101st(x: u64) -> u64 {
    if x % 101 == 100 {
        segfault();
    }
    x * 2
}

#[test]
fn crashes_inside_batched_chunksize_1_refills_cost_only_their_items() {
    // At chunksize 1 a worker is refilled many chunks per message, and holds up to 32: a crash
    // must fail its own item only; the chunks queued behind it are sent again.
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<Result<u64, Error>> = pool
        .chunksize(1)
        .imap(segfault_every_101st, 0..3_000u64)
        .collect();
    assert_eq!(outcomes.len(), 3_000);
    for (x, outcome) in (0u64..).zip(&outcomes) {
        match outcome {
            Ok(v) => assert_eq!(*v, x * 2, "item {x}"),
            Err(e) => {
                assert_eq!(x % 101, 100, "item {x} failed: {e}");
                assert!(
                    matches!(e.as_task(), Some(ItemError::WorkerDied { index, .. }) if *index == x),
                    "item {x}: {e}"
                );
            }
        }
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 29);
}
