//! No work waits behind a busy worker while another is idle: a chunk a worker holds unstarted
//! behind a long item moves to an idle worker, and still runs exactly once, with one outcome.

mod common;

use forkpool::Pool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters in memory shared with every worker forked after it was made: one per item of the
/// stress test, and one for started long items.
const COUNTERS: usize = 4096;

static SHARED: std::sync::OnceLock<&'static [AtomicU64]> = std::sync::OnceLock::new();

fn shared() -> &'static [AtomicU64] {
    SHARED.get_or_init(|| {
        let bytes = COUNTERS * 8;
        // SAFETY: a fresh anonymous shared mapping, checked before use; zeroed memory is a
        // valid AtomicU64, and it is never unmapped, so the slice lives as long as the process.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            std::slice::from_raw_parts(page.cast::<AtomicU64>(), COUNTERS)
        }
    })
}

/// The counter long items raise when they start.
const LONG_STARTED: usize = COUNTERS - 1;

/// Sleeps `ms` milliseconds (raising the long-start counter first when it is long).
fn nap(ms: u64) -> u64 {
    if ms >= 1000 {
        shared()[LONG_STARTED].fetch_add(1, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Waits (bounded) until `n` long items have started in workers.
fn until_long_started(n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared()[LONG_STARTED].load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the long item never started");
        std::thread::yield_now();
    }
}

#[test]
fn four_short_tasks_behind_a_long_one_finish_on_the_idle_worker_within_1s() {
    shared(); // mapped before the pool, so the workers share it
    shared()[LONG_STARTED].store(0, Ordering::SeqCst);
    let pool = Pool::new(2).unwrap();
    let mut long = pool.submit(nap, 20_000);
    until_long_started(1);
    let start = Instant::now();
    let mut short: Vec<_> = (0..4).map(|_| pool.submit(nap, 50)).collect();
    let limit = Duration::from_secs(1);
    for (i, task) in short.iter_mut().enumerate() {
        let left = limit.saturating_sub(start.elapsed());
        assert!(
            task.wait_timeout(left),
            "short task {i} not done {:?} after submit: it waits behind the long one",
            start.elapsed()
        );
    }
    for task in short {
        assert_eq!(task.wait().unwrap(), 50);
    }
    assert!(long.cancel());
}

#[test]
fn a_ten_item_map_finishes_the_other_nine_while_one_item_runs_10s() {
    shared();
    shared()[LONG_STARTED].store(0, Ordering::SeqCst);
    let pool = Pool::new(2).unwrap();
    let items = [10_000u64, 50, 50, 50, 50, 50, 50, 50, 50, 50];
    let start = Instant::now();
    let mut outcomes = pool.chunksize(1).imap_unordered(nap, items);
    let nine: Vec<u64> = (&mut outcomes)
        .take(9)
        .map(|r| r.unwrap())
        .collect::<Vec<_>>();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the nine 50 ms items took {took:?}: they waited behind the 10 s one ({nine:?})"
    );
    assert_eq!(nine, [50; 9]);
    drop(outcomes); // cancels the long item
}

/// Items per stress round.
const ROUND: u32 = 64;

/// Item `x` of a stress round: counts its run in shared memory, then sleeps by kind (a long
/// item opens each even round; items of about 10 ms, the time after which a worker's front is
/// stolen from, make revokes land near claims).
fn counted(x: u32) -> (u32, u64) {
    let runs = shared()[x as usize].fetch_add(1, Ordering::SeqCst) + 1;
    let (round, i) = (x / ROUND, x % ROUND);
    let medium = Duration::from_millis(8 + u64::from(x % 5));
    match (round % 2, i) {
        (0, 0) => std::thread::sleep(Duration::from_millis(200)),
        (0, i) if i % 8 == 1 => std::thread::sleep(medium),
        (1, i) if i % 3 == 1 => std::thread::sleep(medium),
        _ => {}
    }
    (x.wrapping_mul(3).wrapping_add(1), runs)
}

#[test]
fn stolen_chunks_run_exactly_once_with_one_outcome_each_20_rounds() {
    shared();
    let pool = Pool::new(2).unwrap();
    for round in 0..20u32 {
        let base = round * ROUND;
        let chunksize = [1, 1, 2][round as usize % 3];
        let start = Instant::now();
        let mut seen = vec![0u32; ROUND as usize];
        let mut order = Vec::new();
        for outcome in pool
            .chunksize(chunksize)
            .imap_unordered(counted, base..base + ROUND)
        {
            let (value, runs) = outcome.unwrap();
            let x = (value - 1) / 3;
            assert_eq!(value, x * 3 + 1, "round {round}");
            assert!((base..base + ROUND).contains(&x), "round {round}: item {x}");
            assert_eq!(runs, 1, "round {round}: item {x} ran {runs} times");
            seen[(x - base) as usize] += 1;
            order.push(x - base);
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "round {round}: outcomes per item {seen:?}"
        );
        for x in base..base + ROUND {
            let runs = shared()[x as usize].load(Ordering::SeqCst);
            assert_eq!(runs, 1, "round {round}: item {x} ran {runs} times");
        }
        if round % 2 == 0 {
            // No item waits for the long one: only its own chunk comes after it.
            let behind: Vec<u32> = order.iter().skip_while(|&&i| i != 0).copied().collect();
            assert!(
                behind.iter().all(|&i| (i as usize) < chunksize),
                "round {round} (chunksize {chunksize}, {:?}): items {behind:?} came after the \
                 long one: they waited behind it",
                start.elapsed()
            );
        }
    }
}
