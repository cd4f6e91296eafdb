//! Many callers, one pool (issue 12): concurrent calls from many threads, calls inside an open
//! iterator, tasks (`submit`, `apply`, `cancel`, `pid`, `as_completed`), and failures charged
//! only to the calls whose items caused them.

mod common;

use common::{is_reaped, segfault};
use forkpool::{Error, ItemError, Pool, Task, as_completed};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn nap_then_pid(x: u64) -> (u32, u64) {
    std::thread::sleep(Duration::from_millis(2));
    (std::process::id(), x)
}

#[test]
fn eight_threads_of_one_item_calls_get_their_own_outcomes_on_both_workers() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                for i in 0..200u64 {
                    let x = t * 1000 + i;
                    let (pid, got) = pool.map(nap_then_pid, [x]).unwrap()[0];
                    assert_eq!(got, x, "thread {t} got another call's outcome");
                    pids.push(pid);
                }
                pids
            })
        })
        .collect();
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    for thread in threads {
        for pid in thread.join().unwrap() {
            *per_worker.entry(pid).or_default() += 1;
        }
    }
    assert_eq!(per_worker.values().sum::<usize>(), 1600);
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    for (pid, n) in &per_worker {
        assert!(
            *n >= 640,
            "worker {pid} ran only {n} of 1600 items: {per_worker:?}"
        );
    }
}

fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

fn quick(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x + 1
}

#[test]
fn an_open_unconsumed_imap_does_not_hold_up_another_threads_map() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let mut held = pool.imap(slow, 0..1_000_000u64);
    assert_eq!(held.next().unwrap().unwrap(), 0);
    // `held` stays open and unconsumed while another thread maps.
    let other = Arc::clone(&pool);
    let took = std::thread::spawn(move || {
        let start = Instant::now();
        let v = other.map(quick, 0..10u64).unwrap();
        assert_eq!(v, (1..11).collect::<Vec<_>>());
        start.elapsed()
    })
    .join()
    .unwrap();
    // Generous: the figure (a few tens of ms) is in the benchmark.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The held iterator still yields every item in order.
    let next: Vec<u64> = held.by_ref().take(3).map(|r| r.unwrap()).collect();
    assert_eq!(next, [1, 2, 3]);
}

#[test]
fn apply_answers_while_another_thread_maps_a_million_items() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let mapper = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let v = pool.map(|x: u64| x ^ 1, 0..1_000_000u64).unwrap();
            assert!(v.iter().enumerate().all(|(i, &x)| x == (i as u64) ^ 1));
        })
    };
    let mut slowest = Duration::ZERO;
    for i in 0..20u64 {
        let start = Instant::now();
        assert_eq!(pool.apply(|x: u64| x * 3, i).unwrap(), i * 3);
        slowest = slowest.max(start.elapsed());
    }
    mapper.join().unwrap();
    assert!(
        slowest < Duration::from_millis(500),
        "slowest apply {slowest:?}"
    );
}

fn torture(x: u64) -> u64 {
    match x % 50 {
        7 => segfault(),
        13 => panic!("item {x} panics"),
        29 => std::thread::sleep(Duration::from_secs(60)),
        _ => {}
    }
    x * 2
}

#[test]
fn four_threads_of_crashing_panicking_and_hanging_maps_each_get_exactly_their_own_failures() {
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for round in 0..2u64 {
                    // Each thread's items are its own range, so an outcome of another call
                    // would show as a wrong value or index.
                    let base = (t * 10 + round) * 100;
                    let outcomes: Vec<_> =
                        pool.chunksize(3).imap(torture, base..base + 100).collect();
                    assert_eq!(outcomes.len(), 100);
                    for (i, outcome) in outcomes.into_iter().enumerate() {
                        let x = base + i as u64;
                        match (x % 50, outcome) {
                            (7, Err(Error::Task(ItemError::WorkerDied { index, .. })))
                            | (13, Err(Error::Task(ItemError::Panicked { index, .. })))
                            | (29, Err(Error::Task(ItemError::TimedOut { index, .. }))) => {
                                assert_eq!(index, i as u64, "thread {t}: item {x}")
                            }
                            (_, Ok(v)) => assert_eq!(v, x * 2, "thread {t}: item {x}"),
                            (_, other) => panic!("thread {t}: item {x}: {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(pool.pids().len(), 2);
}

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

#[test]
fn cancel_stops_a_running_task_and_replaces_its_worker_and_other_calls_go_on() {
    let pool = Pool::new(2).unwrap();
    let mut task = pool.submit(sleep_secs, 60);
    let pid = loop {
        if let Some(pid) = task.pid() {
            break pid;
        }
        std::thread::yield_now();
    };
    let other = pool.submit(|x: u64| x + 1, 41);
    let start = Instant::now();
    assert!(task.cancel());
    let error = task.wait().unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(error.as_task(), Some(ItemError::Cancelled { index: 0 })),
        "{error}"
    );
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    assert_eq!(other.wait().unwrap(), 42);
    // The stopped worker is gone and replaced (its death is read by whoever waits on the
    // pool next: each call here drives it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.pids().contains(&pid) && Instant::now() < deadline {
        assert_eq!(pool.map(|x: u8| x, 0..4u8).unwrap(), [0, 1, 2, 3]);
    }
    assert!(!pool.pids().contains(&pid));
    assert_eq!(pool.pids().len(), 2);
    assert!(is_reaped(pid));
}

fn mark(path: String) -> bool {
    std::fs::write(&path, b"ran").is_ok()
}

#[test]
fn a_cancelled_queued_task_never_runs() {
    let dir = std::env::temp_dir().join(format!("forkpool-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("queued-ran");
    let _ = std::fs::remove_file(&marker);
    let pool = Pool::new(1).unwrap();
    let busy = pool.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 300);
    let mut queued = pool.submit(mark, marker.to_string_lossy().into_owned());
    assert!(queued.cancel());
    assert!(matches!(
        queued.wait().unwrap_err().as_task(),
        Some(ItemError::Cancelled { .. })
    ));
    busy.wait().unwrap();
    // The worker has run everything it was given by now: a later item proves it is free.
    assert_eq!(pool.apply(|x: u8| x, 7).unwrap(), 7);
    assert!(!marker.exists(), "the cancelled task ran");
    let _ = std::fs::remove_dir_all(&dir);
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn tasks_come_out_of_as_completed_in_the_order_they_finish() {
    let pool = Pool::new(3).unwrap();
    let tasks: Vec<Task<'_, u64>> = [600u64, 20, 300].map(|ms| pool.submit(nap, ms)).into();
    let order: Vec<u64> = as_completed(tasks).map(|t| t.wait().unwrap()).collect();
    assert_eq!(order, [20, 300, 600]);
}

#[test]
fn a_call_inside_an_open_imap_and_tasks_from_threads_all_finish() {
    let pool = Pool::new(2).unwrap();
    let mut total = 0;
    for r in pool.imap(|x: u64| x, 0..20u64) {
        let x = r.unwrap();
        total += pool.map(|y: u64| y + 1, [x]).unwrap()[0];
    }
    assert_eq!(total, (1..=20).sum::<u64>());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            s.spawn(move || {
                let tasks: Vec<_> = (0..50u64)
                    .map(|i| pool.submit(|x: u64| x * 2, t * 100 + i))
                    .collect();
                for (i, task) in tasks.into_iter().enumerate() {
                    assert_eq!(task.wait().unwrap(), (t * 100 + i as u64) * 2);
                }
            });
        }
    });
}

#[test]
fn a_task_timeout_fails_that_task_only() {
    let pool = Pool::new(2).unwrap();
    let hung = pool
        .timeout(Duration::from_millis(200))
        .submit(sleep_secs, 60);
    let fine = pool.submit(|x: u64| x, 5);
    assert!(matches!(
        hung.wait().unwrap_err().as_task(),
        Some(ItemError::TimedOut { index: 0, .. })
    ));
    assert_eq!(fine.wait().unwrap(), 5);
}

/// Items of mixed sizes (0 to 39 KB: a chunk's frame goes through the chunk arena from 32 KiB,
/// else on the socket); the item `(7, 113)` segfaults its worker.
fn sized(item: (u64, Vec<u8>)) -> u64 {
    let (x, bytes) = item;
    if x == 7_000_113 {
        segfault();
    }
    x + bytes.iter().map(|&b| u64::from(b)).sum::<u64>()
}

fn sized_input(thread: u64) -> impl Iterator<Item = (u64, Vec<u8>)> {
    (0..150u64).map(move |i| {
        let x = thread * 1_000_000 + i;
        let len = (i * 7919 % 40) as usize * 1_000;
        (x, vec![(x % 251) as u8; len])
    })
}

/// Two callers map chunks of several items each (each chunk is sent as soon as it is encoded,
/// while the caller encodes the next) with mixed sizes, while one item kills its worker: every
/// item of both gets its own value, and only the killer fails. 20 rounds.
#[test]
fn two_callers_of_multi_item_chunks_of_mixed_sizes_keep_every_value_across_a_death() {
    let pool = Arc::new(Pool::new(2).unwrap());
    for round in 0..20 {
        let callers: Vec<_> = [7u64, 8]
            .into_iter()
            .map(|thread| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    common::within(Duration::from_secs(60), move || {
                        let chunks = pool.chunksize(3 + thread as usize);
                        let got: Vec<_> = chunks.imap(sized, sized_input(thread)).collect();
                        (thread, got)
                    })
                })
            })
            .collect();
        for caller in callers {
            let (thread, got) = caller.join().unwrap();
            let expected: Vec<(u64, Vec<u8>)> = sized_input(thread).collect();
            assert_eq!(got.len(), expected.len(), "round {round}, thread {thread}");
            for (i, (outcome, (x, bytes))) in got.iter().zip(&expected).enumerate() {
                let sum = x + bytes.iter().map(|&b| u64::from(b)).sum::<u64>();
                match outcome {
                    Ok(value) => {
                        assert_eq!(*value, sum, "round {round}, thread {thread}, item {i}")
                    }
                    Err(Error::Task(ItemError::WorkerDied { index, .. })) if *x == 7_000_113 => {
                        assert_eq!(*index, i as u64)
                    }
                    Err(e) => panic!("round {round}, thread {thread}, item {i}: {e}"),
                }
            }
            if thread == 7 {
                assert!(got[113].is_err(), "round {round}: the killer's item failed");
            }
        }
    }
}
