//! Work after the caller stopped caring: a dropped lazy call stops at the drop, a lazy call's
//! first outcome comes after a few item-times, and an explicit chunksize cannot fill memory.

mod common;

use forkpool::Pool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A counter in memory shared with every worker forked after it was made.
static STARTED: std::sync::OnceLock<&'static AtomicU64> = std::sync::OnceLock::new();

fn started() -> &'static AtomicU64 {
    STARTED.get_or_init(common::shared_counter)
}

fn count_then_sleep_50ms(x: u32) -> u32 {
    started().fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    x
}

#[test]
fn dropping_a_lazy_call_stops_its_work_at_the_drop_10_rounds() {
    started(); // mapped before the pool, so the workers share it
    let pool = Pool::new(2).unwrap();
    for round in 0..10 {
        let first: Vec<u32> = pool
            .imap(count_then_sleep_50ms, 0..1000u32)
            .take(1)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(first, [0], "round {round}");
        let at_drop = started().load(Ordering::SeqCst);
        // Nothing is waited for here: what matters is that no new item begins after the drop.
        // 300 ms is six item-times: a worker that kept going would begin about 12 more.
        std::thread::sleep(Duration::from_millis(300));
        let later = started().load(Ordering::SeqCst);
        // A worker between items at the very moment of the drop may begin one more.
        assert!(
            later <= at_drop + 2,
            "round {round}: {} items began after the drop",
            later - at_drop
        );
        // The pool is immediately usable and correct.
        assert_eq!(
            pool.map(|x: u32| x * 3, 0..50u32).unwrap(),
            (0..50).map(|x| x * 3).collect::<Vec<_>>()
        );
    }
}

fn sleep_1ms(x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    x
}

#[test]
fn a_lazy_calls_first_outcome_comes_after_a_few_items_not_a_whole_chunk() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        let first = pool.imap(sleep_1ms, 0..100_000u32).next().unwrap().unwrap();
        let took = start.elapsed();
        assert_eq!(first, 0);
        // Today's figure is a few ms; 8,192-item chunks took 9 s.
        assert!(
            took < Duration::from_secs(1),
            "first outcome after {took:?}"
        );
        let start = Instant::now();
        let first = pool
            .imap_unordered(sleep_1ms, 0..100_000u32)
            .next()
            .unwrap();
        assert!(first.is_ok());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "unordered: {:?}",
            start.elapsed()
        );
    }
    let all: Vec<u32> = pool
        .imap(sleep_1ms, 0..500u32)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all, (0..500).collect::<Vec<_>>());
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_huge_explicit_chunksize_over_endless_input_keeps_memory_bounded() {
    let (done, outcome) = mpsc::channel();
    let before = resident_bytes();
    std::thread::spawn(move || {
        let pool = Pool::new(2).unwrap();
        // The input refuses to go on forever: a regression fails here instead of eating the
        // machine's memory.
        let input = (0u64..).inspect(|&x| assert!(x < 50_000_000, "pulled 50M items"));
        let first: Vec<u64> = pool
            .chunksize(usize::MAX)
            .imap(|x: u64| x + 1, input)
            .take(3)
            .collect::<Result<_, _>>()
            .unwrap();
        let peak = resident_bytes();
        let _ = done.send((first, peak));
    });
    let (first, peak) = outcome
        .recv_timeout(Duration::from_secs(120))
        .expect("the call ended");
    assert_eq!(first, [1, 2, 3]);
    let grown = peak.saturating_sub(before);
    assert!(grown < 400 << 20, "the parent grew by {} MiB", grown >> 20);
}
