//! Pool lifecycle: large messages both ways, reaping on drop, cancellation, concurrent callers.

mod common;

use common::is_reaped;
use forkpool::Pool;
use serde_bytes::ByteBuf;
use std::sync::Arc;

fn shift_bytes(item: ByteBuf) -> ByteBuf {
    ByteBuf::from(
        item.into_iter()
            .map(|b| b.wrapping_add(1))
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn items_and_results_of_64_mib_flow_both_ways_without_deadlock() {
    const LEN: usize = 64 << 20;
    let pool = Pool::builder().workers(2).window(2).build().unwrap();
    let items = (0..4u8).map(|k| ByteBuf::from(vec![k; LEN]));
    let results = pool.chunksize(1).map(shift_bytes, items).unwrap();
    assert_eq!(results.len(), 4);
    for (k, r) in results.iter().enumerate() {
        assert_eq!(r.len(), LEN);
        assert!(r.iter().all(|b| *b == k as u8 + 1), "result {k} corrupted");
    }
}

#[test]
fn frames_near_the_in_place_send_limit_arrive_whole_and_in_order() {
    // Items of 20 to 100 KiB with 8 chunks in flight per worker: some chunk frames go out from
    // the caller's thread, some through a send thread, interleaved for the same worker.
    let pool = Pool::builder().workers(2).window(8).build().unwrap();
    let sizes: Vec<usize> = (0..96)
        .map(|i| (20 << 10) + (i * 7919) % (80 << 10))
        .collect();
    let items = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| ByteBuf::from(vec![i as u8; len]));
    let results = pool.chunksize(1).map(shift_bytes, items).unwrap();
    assert_eq!(results.len(), sizes.len());
    for (i, (r, &len)) in results.iter().zip(&sizes).enumerate() {
        assert_eq!(r.len(), len, "result {i} has the wrong length");
        assert!(
            r.iter().all(|b| *b == (i as u8).wrapping_add(1)),
            "result {i} corrupted"
        );
    }
}

/// 10 replies of 200 KiB, then 90 of 8 bytes, in every 100 items.
fn big_or_small(x: u32) -> ByteBuf {
    let len = if x % 100 < 10 { 200 << 10 } else { 8 };
    ByteBuf::from(vec![x as u8; len])
}

#[test]
fn replies_switching_between_big_and_small_arrive_whole_and_in_order() {
    // Big replies hand the reading of the reply channel to a relay thread; a run of small ones
    // hands it back to the caller. Each switch must lose and reorder nothing.
    let pool = Pool::new(2).unwrap();
    for _ in 0..2 {
        let results = pool.chunksize(1).map(big_or_small, 0..400u32).unwrap();
        assert_eq!(results.len(), 400);
        for (x, r) in (0u32..).zip(&results) {
            assert_eq!(
                r.len(),
                if x % 100 < 10 { 200 << 10 } else { 8 },
                "item {x}"
            );
            assert!(r.iter().all(|b| *b == x as u8), "item {x} corrupted");
        }
    }
}

fn big_unless_5(x: u32) -> ByteBuf {
    if x == 5 {
        // Runs past the pool's timeout: the parent must stop it while a relay reads.
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    ByteBuf::from(vec![x as u8; 200 << 10])
}

#[test]
fn a_timeout_is_enforced_while_big_replies_are_relayed() {
    let pool = Pool::builder()
        .workers(2)
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap(big_unless_5, 0..12u32).collect();
    assert_eq!(outcomes.len(), 12);
    for (x, outcome) in (0u32..).zip(&outcomes) {
        match outcome {
            Ok(r) => assert!(
                x != 5 && r.len() == 200 << 10 && r[0] == x as u8,
                "item {x}"
            ),
            Err(e) => assert!(
                x == 5 && matches!(e.as_task(), Some(forkpool::ItemError::TimedOut { .. })),
                "item {x}: {e}"
            ),
        }
    }
}

#[test]
fn dropping_a_pool_reaps_every_worker() {
    let pool = Pool::new(3).unwrap();
    let _ = pool.map(|x: u32| x, 0..100u32).unwrap();
    let pids = pool.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| !is_reaped(*p)));
    drop(pool);
    for pid in pids {
        assert!(
            is_reaped(pid),
            "worker {pid} still exists after the pool was dropped"
        );
    }
}

#[test]
fn dropping_a_pool_with_workers_busy_on_cancelled_work_reaps_them() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    {
        let mut it = pool.chunksize(1).imap(
            |x: u64| {
                if x > 0 {
                    loop {
                        std::thread::park();
                    }
                }
                x
            },
            0..10u64,
        );
        assert_eq!(it.next().unwrap().unwrap(), 0);
    } // cancelled while workers are stuck on items that never end
    drop(pool); // grace period, then SIGKILL
    for pid in pids {
        assert!(is_reaped(pid), "worker {pid} still exists");
    }
}

#[test]
fn dropping_imap_early_cancels_and_the_next_call_sees_only_its_own_results() {
    let pool = Pool::new(2).unwrap();
    for round in 0..20u64 {
        let mut it = pool
            .chunksize(3)
            .imap(move |x: u64| x * 1000 + 1, 0..10_000u64);
        assert_eq!(it.next().unwrap().unwrap(), 1);
        drop(it);
        let v = pool.chunksize(2).map(|x: u64| x + 7, 0..50u64).unwrap();
        assert_eq!(v, (7..57).collect::<Vec<_>>(), "round {round}");
    }
}

fn hang_unless_first(x: u64) -> u64 {
    if x > 0 {
        loop {
            std::thread::park();
        }
    }
    x
}

#[test]
fn dropping_imap_cancels_even_items_that_never_end_and_the_pool_stays_usable() {
    let pool = Pool::new(2).unwrap();
    {
        let mut it = pool.chunksize(1).imap(hang_unless_first, 0..100u64);
        assert_eq!(it.next().unwrap().unwrap(), 0);
    } // workers are stuck in (or about to start) items of the dropped call that never end
    // Without cancellation this call would wait behind those items forever.
    let v = pool.map(|x: u64| x + 1, 0..10u64).unwrap();
    assert_eq!(v, (1..11).collect::<Vec<_>>());
    assert_eq!(pool.pids().len(), 2);
    // And again, now that the pool has seen a cancellation.
    assert_eq!(pool.map(|x: u64| x * 2, [4u64]).unwrap(), [8]);
}

#[test]
fn a_second_call_from_the_same_thread_runs_while_the_first_iterator_is_open() {
    let pool = Pool::new(2).unwrap();
    let mut outer = pool.imap(|x: u64| x, 0..50u64);
    let mut seen = Vec::new();
    // `for r in pool.imap(..) { pool.map(..) }` works: each inner call runs to its end while
    // the outer iterator is open, and the outer call still yields every item in order.
    for (i, r) in outer.by_ref().take(5).enumerate() {
        let x = r.unwrap();
        assert_eq!(x, i as u64);
        let inner = pool.map(|y: u64| y * 10, [x, x + 1]).unwrap();
        assert_eq!(inner, [x * 10, (x + 1) * 10]);
        seen.push(x);
    }
    seen.extend(outer.map(|r| r.unwrap()));
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[test]
fn calls_from_several_threads_share_one_pool() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for round in 0..10u64 {
                    let base = t * 1_000_000 + round * 1_000;
                    let v = pool.map(|x: u64| x * 2, base..base + 500).unwrap();
                    assert_eq!(v, (base..base + 500).map(|x| x * 2).collect::<Vec<_>>());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn pids_and_workers_answer_while_a_call_is_running() {
    let pool = Pool::new(2).unwrap();
    let expected = pool.pids();
    let mut it = pool.chunksize(1).imap(|x: u32| x, 0..100u32);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    // From the thread that holds the running call, and from another thread.
    assert_eq!(pool.pids(), expected);
    assert_eq!(pool.workers(), 2);
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(pool.pids(), expected));
    });
    assert_eq!(it.count(), 99);
}
