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
        (0, 0) => std::thread::sleep(Duration::from_millis(300)),
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

/// Items of the lying-worker test.
#[cfg(target_os = "linux")]
const LIE: u32 = 10;
/// Where the lying-worker test counts runs (after the stress test's counters).
#[cfg(target_os = "linux")]
const LIE_BASE: usize = 2048;

/// Item 0 runs until every other item has run once (so each chunk its worker held behind it
/// was taken back and ran on the other worker), then, as a lying worker would, writes its
/// worker's claims word to take back nothing: the worker runs the chunks the parent took back
/// from it. The others count their runs and take 20 ms.
#[cfg(target_os = "linux")]
fn lie_or_count(x: u32) -> u32 {
    if x == 0 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let all_ran =
            || (1..LIE as usize).all(|x| shared()[LIE_BASE + x].load(Ordering::SeqCst) > 0);
        while !all_ran() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The layout of `forkpool_worker::progress::Progress` (repr(C)): the claims word is
        // the 16th u64 of the page (checked by a unit test of the worker crate): `claimed` in
        // its low half, `revoked` in its high half.
        let words = common::own_shared_mapping().cast::<AtomicU64>();
        // SAFETY: the first page of this worker's shared mapping holds the progress counters,
        // aligned u64 words; the mapping stays for the worker's life.
        let claims = unsafe { &*words.add(15) };
        let claimed = claims.load(Ordering::SeqCst) as u32;
        claims.store(
            u64::from(claimed) | (u64::from(claimed) << 32),
            Ordering::SeqCst,
        );
    } else {
        shared()[LIE_BASE + x as usize].fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
    }
    x * 3 + 1
}

#[cfg(target_os = "linux")]
#[test]
fn a_worker_that_runs_chunks_taken_back_from_it_gives_no_second_outcome() {
    shared();
    // Each worker may hold 4 chunks: the one that runs item 0 holds more behind it, however
    // the first chunks were spread.
    let pool = Pool::builder().workers(2).window(4).build().unwrap();
    let start = Instant::now();
    let mut outcomes: Vec<Vec<Result<u32, forkpool::Error>>> =
        (0..LIE).map(|_| Vec::new()).collect();
    for outcome in pool.chunksize(1).imap_unordered(lie_or_count, 0..LIE) {
        let index = match &outcome {
            Ok(value) => (value - 1) / 3,
            Err(e) => e.as_task().expect("an item's error").index() as u32,
        };
        outcomes[index as usize].push(outcome);
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    for (x, got) in outcomes.iter().enumerate() {
        assert_eq!(got.len(), 1, "item {x}: {got:?}");
        match &got[0] {
            Ok(value) => assert_eq!(*value, x as u32 * 3 + 1, "item {x}"),
            // The lying worker's own items may be blamed for its lie.
            Err(forkpool::Error::Task(forkpool::ItemError::Protocol { .. })) => {}
            Err(e) => panic!("item {x}: {e}"),
        }
    }
    // Each honest item ran once (on the idle worker); the liar ran a chunk taken back from it
    // a second time, and its reply was a violation, not an outcome.
    let runs: Vec<u64> = (1..LIE as usize)
        .map(|x| shared()[LIE_BASE + x].load(Ordering::SeqCst))
        .collect();
    assert!(runs.iter().all(|r| (1..=2).contains(r)), "runs {runs:?}");
    assert!(
        runs.contains(&2),
        "the liar ran nothing it gave back: {runs:?}"
    );
    // The pool is whole afterwards.
    assert_eq!(
        pool.map(|x: u32| x + 1, 0..20u32).unwrap(),
        (1..21).collect::<Vec<_>>()
    );
}
