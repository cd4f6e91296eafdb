//! Pools whose workers the zygote forks (Linux): they serve every call as directly forked
//! workers do, through
//! crashes, timeouts, recycling and initializers, while `FnPool` and `ReturnProcess` still fork
//! from the program. (A test binary of its own: every `Pool` here forks from the zygote.)

#![cfg(target_os = "linux")]

mod common;

use common::parent_of;
use forkpool::{Death, Error, FnPool, ItemError, Pool, ReturnProcess};
use std::time::Duration;

/// This worker's pid and its parent's.
fn who(_: u32) -> (u32, u32) {
    (std::process::id(), parent_of(std::process::id()))
}

/// The zygote's pid: the parent of a `Pool` worker.
fn zygote_pid() -> u32 {
    forkpool::zygote().unwrap();
    let pool = Pool::new(1).unwrap();
    pool.apply(who, 0).unwrap().1
}

#[test]
fn pool_workers_are_forked_by_the_zygote_and_other_children_by_the_program() {
    let zygote = zygote_pid();
    let me = std::process::id();
    assert_ne!(zygote, me);
    assert_eq!(parent_of(zygote), me, "the zygote is the program's child");
    let pool = Pool::new(2).unwrap();
    let seen = pool.chunksize(1).map(who, 0..20u32).unwrap();
    assert!(seen.iter().all(|&(_, parent)| parent == zygote), "{seen:?}");
    let fn_pool = FnPool::new(1, who).unwrap();
    assert_eq!(fn_pool.apply(0).unwrap().1, me);
    let process = ReturnProcess::spawn(|| who(0)).unwrap();
    assert_eq!(process.join().unwrap().1, me);
    assert_eq!(
        forkpool::parmap(|x: &u32| who(*x).1, &[1, 2]).unwrap(),
        [me, me]
    );
}

fn crash_on_5(x: u64) -> u64 {
    if x % 10 == 5 {
        common::segfault();
    }
    x * 3
}

#[test]
fn crashes_cost_their_items_and_replacements_come_from_the_zygote() {
    let zygote = zygote_pid();
    let pool = Pool::new(2).unwrap();
    for round in 0..3 {
        let outcomes: Vec<Result<u64, Error>> =
            pool.chunksize(1).imap(crash_on_5, 0..40u64).collect();
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(v) => assert_eq!((*v, x % 10 != 5), (x * 3, true), "round {round}"),
                Err(Error::Task(ItemError::WorkerDied { index, death, .. })) => {
                    assert_eq!((*index, *death), (x, Death::Signal(libc::SIGSEGV)));
                }
                Err(e) => panic!("round {round}, item {x}: {e}"),
            }
        }
        assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 4);
    }
    let pids = pool.pids();
    assert!(pids.iter().all(|&pid| parent_of(pid) == zygote), "{pids:?}");
    let stats = pool.stats().unwrap();
    assert!(stats.replacements >= 12, "{stats}");
}

fn sleep_if_odd(x: u64) -> u64 {
    if x % 2 == 1 {
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init() {
    INITIALIZED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn initialized(_: u32) -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn timeouts_recycling_and_initializers_work_on_zygote_workers() {
    let zygote = zygote_pid();
    // A timed-out item's worker is stopped through the pidfd the zygote sent.
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap(sleep_if_odd, 0..4u64).collect();
    for (x, outcome) in (0u64..).zip(outcomes) {
        match outcome {
            Ok(v) => assert_eq!(v, x),
            Err(e) => assert!(
                x % 2 == 1
                    && matches!(e.as_task(), Some(ItemError::TimedOut { index, .. }) if *index == x),
                "{e}"
            ),
        }
    }
    // Recycled workers are replaced from the zygote, with the pool's initializer run.
    let pool = Pool::builder()
        .workers(2)
        .max_items_per_worker(3)
        .init(init)
        .build()
        .unwrap();
    let ran = pool.chunksize(1).map(initialized, 0..30u32).unwrap();
    assert!(ran.iter().all(|&r| r));
    assert!(pool.pids().iter().all(|&pid| parent_of(pid) == zygote));
    assert!(pool.stats().unwrap().replacements >= 8);
    pool.close();
    pool.join().unwrap();
    let stats = pool.stats().unwrap();
    assert_eq!(stats.forks, 2 + stats.replacements);
}

#[test]
fn many_pools_from_many_threads_share_the_zygote() {
    forkpool::zygote().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for _ in 0..5 {
                    let pool = Pool::new(2).unwrap();
                    let got = pool.map(|x: u64| x + 1, t * 100..t * 100 + 50).unwrap();
                    assert_eq!(got, (t * 100 + 1..t * 100 + 51).collect::<Vec<_>>());
                }
            });
        }
    });
}
