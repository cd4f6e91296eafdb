//! Fault isolation and lifecycle: timeouts, crash pinpointing, recycling, memory limits, the
//! crash-loop guard, initializers, close/join/terminate, and multi-threaded callers.

mod common;

use common::{ends_within, is_reaped, segfault};
use forkpool::{Death, Error, ItemError, Pool, PoolError};
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn torture(x: u64) -> u64 {
    if x % 97 == 0 {
        segfault();
    }
    if x % 101 == 0 {
        panic!("item {x} panics");
    }
    if x % 89 == 0 {
        std::thread::sleep(Duration::from_secs(60));
    }
    x * 3
}

#[test]
fn torture_10000_items_with_segfaults_panics_and_timeouts() {
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool.imap(torture, 0..10_000u64).collect();
    assert_eq!(outcomes.len(), 10_000);
    let mut dead_workers = HashSet::new();
    let (mut segfaults, mut panics, mut timeouts) = (0, 0, 0);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let x = i as u64;
        match outcome {
            Ok(v) => {
                assert!(
                    x % 97 != 0 && x % 101 != 0 && x % 89 != 0,
                    "item {x} succeeded"
                );
                assert_eq!(v, x * 3);
            }
            Err(Error::Task(ItemError::WorkerDied { index, pid, death })) => {
                assert_eq!((index, x % 97), (x, 0), "item {x}: unexpected death");
                assert_eq!(death, Death::Signal(libc::SIGSEGV));
                dead_workers.insert(pid);
                segfaults += 1;
            }
            Err(Error::Task(ItemError::Panicked { index, message, .. })) => {
                assert!(x % 97 != 0 && x % 101 == 0, "item {x}: unexpected panic");
                assert_eq!(index, x);
                assert_eq!(message, format!("item {x} panics"));
                panics += 1;
            }
            Err(Error::Task(ItemError::TimedOut { index, pid, after })) => {
                assert!(
                    x % 97 != 0 && x % 101 != 0 && x % 89 == 0,
                    "item {x}: unexpected timeout"
                );
                assert_eq!((index, after), (x, Duration::from_millis(200)));
                dead_workers.insert(pid);
                timeouts += 1;
            }
            Err(other) => panic!("item {x}: unexpected outcome {other}"),
        }
    }
    let expected = |keep: &dyn Fn(u64) -> bool| (0..10_000u64).filter(|x| keep(*x)).count();
    assert_eq!(segfaults, expected(&|x| x % 97 == 0));
    assert_eq!(panics, expected(&|x| x % 97 != 0 && x % 101 == 0));
    assert_eq!(
        timeouts,
        expected(&|x| x % 97 != 0 && x % 101 != 0 && x % 89 == 0)
    );
    let pids = pool.pids();
    assert_eq!(pids.len(), 2, "the pool is back to full size");
    assert!(pids.iter().all(|p| !is_reaped(*p)), "live workers exist");
    for pid in dead_workers {
        assert!(is_reaped(pid), "dead worker {pid} was not reaped");
    }
}

fn segfault_on_137(x: u64) -> u64 {
    if x == 137 {
        segfault();
    }
    x + 1
}

#[test]
fn pinpointing_fails_only_the_segfaulting_item_of_a_chunk_of_50() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(50)
        .imap(segfault_on_137, 0..300u64)
        .collect();
    let failed: Vec<u64> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.as_task().unwrap().index())
        .collect();
    assert_eq!(failed, [137]);
    for (i, r) in outcomes.iter().enumerate() {
        if i != 137 {
            assert_eq!(*r.as_ref().unwrap(), i as u64 + 1);
        }
    }
}

#[test]
fn without_pinpointing_the_whole_chunk_fails_and_the_culprit_is_named() {
    let pool = Pool::builder()
        .workers(2)
        .pinpoint_crashes(false)
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(50)
        .imap(segfault_on_137, 0..300u64)
        .collect();
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

/// Starts `sleep 1000` as a grandchild, writes its pid to the file named by `path`, and hangs.
fn start_grandchild_and_hang(path: String) -> u32 {
    // The worker never waits for it: the point is that the timeout's SIGTERM to the worker's
    // process group ends it.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(&path, child.id().to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_timed_out_item_takes_its_worker_and_grandchild_with_it() {
    let pool = Pool::new(1).unwrap();
    let worker = pool.pids()[0];
    let path = std::env::temp_dir().join(format!("forkpool-grandchild-{}", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let err = pool
        .timeout(Duration::from_millis(300))
        .map(start_grandchild_and_hang, [path.clone()])
        .unwrap_err();
    let Some(ItemError::TimedOut { index: 0, pid, .. }) = err.as_task() else {
        panic!("expected a timeout, got {err}");
    };
    assert_eq!(*pid, worker);
    let grandchild: u32 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(is_reaped(worker), "the worker was reaped");
    assert!(
        ends_within(grandchild, Duration::from_secs(5)),
        "grandchild {grandchild} outlived its worker"
    );
    assert_eq!(
        pool.map(|x: u8| x + 1, [1u8]).unwrap(),
        [2],
        "pool still works"
    );
}

#[test]
fn return_process_join_or_kill_stops_the_child() {
    let p = forkpool::ReturnProcess::spawn(|| -> u8 {
        std::thread::sleep(Duration::from_secs(600));
        0
    })
    .unwrap();
    let pid = p.pid();
    let err = p.join_or_kill(Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::TimedOut { .. })),
        "{err}"
    );
    assert!(is_reaped(pid));
}

fn sigkilled_on_5(x: u64) -> u64 {
    if x == 5 {
        // SAFETY: raise(3) is sound; the worker dies of SIGKILL as if the OOM killer chose it.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    x
}

#[test]
fn an_item_whose_worker_is_sigkilled_fails_alone() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool.chunksize(4).imap(sigkilled_on_5, 0..12u64).collect();
    for (i, r) in outcomes.iter().enumerate() {
        if i == 5 {
            let e = r.as_ref().unwrap_err();
            assert!(e.to_string().contains("killed by SIGKILL"), "{e}");
            assert_eq!(e.as_task().unwrap().index(), 5);
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64);
        }
    }
}

fn double_with_pid(x: u64) -> (u64, u32) {
    (x * 2, std::process::id())
}

#[test]
fn max_tasks_per_worker_recycles_workers_without_losing_or_reordering() {
    let pool = Pool::builder()
        .workers(2)
        .max_items_per_worker(10)
        .build()
        .unwrap();
    let results = pool.map(double_with_pid, 0..100u64).unwrap();
    let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..100u64).map(|x| x * 2).collect::<Vec<_>>());
    let pids: HashSet<u32> = results.iter().map(|(_, p)| *p).collect();
    assert!(pids.len() >= 10, "only {} distinct workers", pids.len());
    let mut per_worker = std::collections::HashMap::new();
    for (_, pid) in &results {
        *per_worker.entry(pid).or_insert(0) += 1;
    }
    assert!(per_worker.values().all(|n| *n <= 10), "{per_worker:?}");
    assert_eq!(pool.pids().len(), 2);
}

/// Every chunk size against every small budget: a chunk encoded for one worker's budget can
/// outgrow what the others have left (chunks of 2 items, `max_items_per_worker(3)`: each of 2
/// workers took one chunk and kept a budget of 1, and the call waited for ever with both idle
/// until a worker short of the front chunk was retired). Every item answers, in order, and no
/// worker runs more than its budget.
#[test]
fn recycling_never_strands_a_chunk_bigger_than_every_budget_left() {
    for max in [1usize, 2, 3, 5] {
        for chunksize in (0..=max + 2).map(|n| Some(n).filter(|&n| n > 0)) {
            let pool = Pool::builder()
                .workers(2)
                .max_items_per_worker(max)
                .build()
                .unwrap();
            let results = match chunksize {
                Some(n) => pool.chunksize(n).map(double_with_pid, 0..30u64),
                None => pool.map(double_with_pid, 0..30u64),
            }
            .unwrap_or_else(|e| panic!("max {max}, chunksize {chunksize:?}: {e}"));
            let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
            assert_eq!(values, (0..30u64).map(|x| x * 2).collect::<Vec<_>>());
            let mut per_worker = std::collections::HashMap::new();
            for (_, pid) in &results {
                *per_worker.entry(pid).or_insert(0usize) += 1;
            }
            assert!(
                per_worker.values().all(|n| *n <= max),
                "max {max}, chunksize {chunksize:?}: {per_worker:?}"
            );
        }
    }
}

/// Two callers at once on one recycling pool, with chunks of different sizes (2, 3 and the
/// default): a worker left short of one call's chunk may still fit the other's, and retiring
/// it early must neither lose nor reorder an item of either, nor let a worker run more than
/// its budget. 20 rounds.
#[test]
fn two_callers_with_mixed_chunk_sizes_on_a_recycling_pool_lose_nothing() {
    for round in 0..20 {
        let pool = Pool::builder()
            .workers(2)
            .max_items_per_worker(3)
            .build()
            .unwrap();
        let results: Vec<Vec<(u64, u32)>> = std::thread::scope(|s| {
            let callers: Vec<_> = [Some(2), Some(3), None]
                .into_iter()
                .map(|chunksize| {
                    let pool = &pool;
                    s.spawn(move || match chunksize {
                        Some(n) => pool.chunksize(n).map(double_with_pid, 0..25u64),
                        None => pool.map(double_with_pid, 0..25u64),
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|c| {
                    c.join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("round {round}: {e}"))
                })
                .collect()
        });
        let mut per_worker = std::collections::HashMap::new();
        for call in &results {
            let values: Vec<u64> = call.iter().map(|(v, _)| *v).collect();
            assert_eq!(values, (0..25u64).map(|x| x * 2).collect::<Vec<_>>());
            for (_, pid) in call {
                *per_worker.entry(*pid).or_insert(0usize) += 1;
            }
        }
        assert!(
            per_worker.values().all(|n| *n <= 3),
            "round {round}: {per_worker:?}"
        );
    }
}

/// Allocates and touches `mib` MiB; past the tests' limit of 256 MiB the allocation fails
/// and aborts the worker, which std reports on stderr, silenced here.
fn allocate_and_touch(mib: usize) -> usize {
    if mib >= 256 {
        common::quiet_stderr();
    }
    let mut v = vec![0u8; mib << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    v.iter().step_by(4096).filter(|b| **b == 1).count()
}

#[test]
fn memory_limit_fails_the_item_that_blows_it_and_the_pool_goes_on() {
    common::mark_test_process();
    let pool = Pool::builder()
        .workers(2)
        .memory_limit(256 << 20)
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(1)
        .imap(allocate_and_touch, [1usize, 16, 1024, 8])
        .collect();
    assert_eq!(*outcomes[0].as_ref().unwrap(), 256);
    assert_eq!(*outcomes[1].as_ref().unwrap(), 16 * 256);
    assert_eq!(*outcomes[3].as_ref().unwrap(), 8 * 256);
    let err = outcomes[2].as_ref().unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::OutOfMemory { index: 2, limit, .. }) if *limit == 256 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("out of memory"), "{err}");
}

fn always_segfault(_: u64) -> u64 {
    segfault();
    0
}

#[test]
fn a_crash_loop_ends_the_call_with_crash_loop() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(1)
        .imap(always_segfault, 0..10_000u64)
        .collect();
    // Every item has its one outcome: those that ran died with their worker, then the guard
    // ended the call and the rest (the input has a known length) fail with the crash loop.
    assert_eq!(outcomes.len(), 10_000);
    let errors: Vec<&ItemError> = outcomes
        .iter()
        .map(|r| r.as_ref().unwrap_err().as_task().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .enumerate()
            .all(|(i, e)| e.index() == i as u64)
    );
    // (Two workers: an item in flight when the guard fired fails with the crash loop even if a
    // later one had died already.)
    let mut died = 0;
    for e in &errors {
        match e {
            ItemError::WorkerDied { .. } => died += 1,
            ItemError::PoolFailed { cause, .. } => {
                assert!(cause.starts_with("crash loop"), "{cause}");
                assert!(cause.contains("SIGSEGV"), "{cause}");
            }
            other => panic!("expected a death or the crash loop, got {other}"),
        }
    }
    assert!((1..100).contains(&died), "{died} items died");
    // The pool is whole and usable afterwards.
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(pool.map(|x: u8| x, [3u8]).unwrap(), [3]);
}

static INIT_MARK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn mark() {
    INIT_MARK.store(41, Ordering::SeqCst);
}

fn read_mark(x: u32) -> u32 {
    INIT_MARK.load(Ordering::SeqCst) + x
}

#[test]
fn init_runs_in_every_worker_including_replacements() {
    let pool = Pool::builder()
        .workers(2)
        .init(mark)
        .max_items_per_worker(3)
        .build()
        .unwrap();
    assert_eq!(
        INIT_MARK.load(Ordering::SeqCst),
        0,
        "init ran in the parent"
    );
    let v = pool.map(read_mark, [1u32; 20]).unwrap();
    assert_eq!(v, [42u32; 20]);
}

#[test]
fn a_panicking_init_makes_build_fail_with_its_message() {
    let err = Pool::builder()
        .workers(2)
        .init(|| panic!("cannot open the model file"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, PoolError::Init { message, .. } if message == "cannot open the model file"),
        "{err}"
    );
}

#[test]
fn close_join_and_terminate() {
    let pool = Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::NotClosed)));
    let pids = pool.pids();
    assert_eq!(pool.map(|x: u8| x + 1, [1u8]).unwrap(), [2]);
    pool.close();
    assert!(matches!(
        pool.map(|x: u8| x, [1u8]),
        Err(Error::Pool(PoolError::Closed))
    ));
    pool.join().unwrap();
    assert!(pool.pids().is_empty());
    assert!(pids.iter().all(|p| is_reaped(*p)));

    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    pool.terminate();
    assert!(pids.iter().all(|p| is_reaped(*p)));
    assert!(matches!(
        pool.map(|x: u8| x, [1u8]),
        Err(Error::Pool(PoolError::Closed))
    ));
}

#[test]
fn terminate_from_another_thread_ends_a_running_call() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let worker = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let mut it = pool.chunksize(1).imap(
                |x: u64| {
                    if x > 0 {
                        std::thread::sleep(Duration::from_secs(600));
                    }
                    x
                },
                0..10u64,
            );
            let first = it.next();
            started_tx.send(()).unwrap();
            let rest: Vec<_> = it.collect();
            (first, rest)
        })
    };
    started_rx.recv().unwrap();
    pool.terminate();
    let (first, rest) = worker.join().unwrap();
    assert_eq!(first.unwrap().unwrap(), 0);
    // Each of the other nine items has one outcome: the running ones died with their workers,
    // the rest failed with the closed pool.
    assert_eq!(rest.len(), 9);
    let last = rest.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(last.as_task(), Some(ItemError::PoolFailed { index: 9, cause }) if cause.contains("closed")),
        "{last}"
    );
    assert!(pool.pids().is_empty());
}

fn crash_on_7(x: u64) -> u64 {
    // Touch the stdio locks other threads of the parent hammer on.
    let _ = std::io::stdout().lock().flush();
    let _ = std::io::stderr().lock().flush();
    if x == 7 {
        segfault();
    }
    x + 1
}

#[test]
fn pools_survive_a_parent_whose_threads_print_allocate_and_lock() {
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Vec::<u64>::new()));
    let noise: Vec<_> = (0..8)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let own = Mutex::new(0u64);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = write!(out, "");
                        let junk: Vec<u64> = (0..256).map(|i| i * n).collect();
                        *own.lock().unwrap() += junk.len() as u64;
                    }
                    {
                        let _err = std::io::stderr().lock();
                        let mut v = shared.lock().unwrap();
                        v.push(n);
                        if v.len() > 1000 {
                            v.clear();
                        }
                    }
                    if n % 1000 == 0 {
                        print!("{t}"); // captured by the test harness
                    }
                }
                n
            })
        })
        .collect();
    let mut calls = 0;
    for _ in 0..10 {
        let pool = Pool::new(2).unwrap();
        for _ in 0..20 {
            let outcomes: Vec<_> = pool.chunksize(2).imap(crash_on_7, 0..10u64).collect();
            for (i, r) in outcomes.iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(*v, i as u64 + 1),
                    Err(e) => assert_eq!(e.as_task().unwrap().index(), 7),
                }
            }
            assert!(outcomes[7].is_err());
            calls += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        assert!(t.join().unwrap() > 0);
    }
    assert_eq!(calls, 200);
}
