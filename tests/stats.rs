//! `Pool::stats` and `FnPool::stats` agree with what each test made real forked workers do:
//! items and chunks answered, crashes, recycling, timeouts, replacements and shutdown.

mod common;

use common::segfault;
use forkpool::{Death, FnPool, Pool, PoolError, ReturnProcess, WorkerEnd};
use std::time::Duration;

fn crash_on_13(x: u64) -> u64 {
    if x % 100 == 13 {
        segfault();
    }
    x
}

#[test]
fn items_and_chunks_add_up_and_nothing_ended() {
    let pool = Pool::new(2).unwrap();
    pool.chunksize(10).map(|x: u64| x + 1, 0..1000u64).unwrap();
    pool.chunksize(1).map(|x: u64| x + 1, 0..50u64).unwrap();
    let stats = pool.stats().unwrap();
    assert_eq!(stats.workers.len(), 2);
    assert_eq!(stats.workers.iter().map(|w| w.items).sum::<u64>(), 1050);
    assert_eq!(stats.workers.iter().map(|w| w.chunks).sum::<u64>(), 150);
    let pids = pool.pids();
    assert!(
        stats
            .workers
            .iter()
            .all(|w| pids.contains(&w.pid) && w.end.is_none())
    );
    assert!(stats.workers.iter().all(|w| w.busy <= w.lifetime));
    assert_eq!((stats.forks, stats.replacements), (2, 0));
    assert!(stats.ended.is_empty());
    assert_eq!((stats.recycled, stats.died, stats.stopped), (0, 0, 0));
    // The parent's own time is measured only with `insights`.
    assert_eq!((stats.encoding, stats.reading), (None, None));
    let insightful = Pool::builder().workers(1).insights(true).build().unwrap();
    insightful.map(|x: u64| x + 1, 0..100u64).unwrap();
    let parent = insightful.stats().unwrap();
    assert!(
        parent.encoding.is_some_and(|t| t > Duration::ZERO),
        "{parent}"
    );
    assert!(
        parent.reading.is_some_and(|t| t > Duration::ZERO),
        "{parent}"
    );
    assert!(parent.to_string().contains("reading replies"), "{parent}");
    let table = stats.to_string();
    assert!(table.starts_with("     pid"), "{table}");
    for pid in pids {
        assert!(table.contains(&pid.to_string()), "{table}");
    }
}

#[test]
fn each_crash_is_one_died_worker_and_one_replacement() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool.chunksize(8).imap(crash_on_13, 0..300u64).collect();
    assert_eq!(outcomes.iter().filter(|r| r.is_err()).count(), 3);
    let stats = pool.stats().unwrap();
    assert_eq!(stats.died, 3, "{stats}");
    assert_eq!(stats.replacements, 3, "{stats}");
    assert_eq!(stats.forks, 5);
    assert_eq!(stats.ended.len(), 3);
    for worker in &stats.ended {
        assert_eq!(
            worker.end,
            Some(WorkerEnd::Died(Death::Signal(libc::SIGSEGV)))
        );
    }
    // The 297 items that succeeded were answered by some worker, dead or alive.
    let answered: u64 = stats
        .workers
        .iter()
        .chain(&stats.ended)
        .map(|w| w.items)
        .sum();
    assert_eq!(answered, 297);
}

#[test]
fn workers_that_ran_nothing_end_as_shut_down() {
    // Killed at the join (they ran no code of the program: nothing of theirs to finish), they
    // still end as shut down, not as deaths.
    let pool = Pool::new(2).unwrap();
    pool.close();
    pool.join().unwrap();
    let stats = pool.stats().unwrap();
    assert!(stats.workers.is_empty(), "{stats}");
    assert_eq!(stats.died + stats.stopped, 0, "{stats}");
    let shut_down = stats
        .ended
        .iter()
        .filter(|w| w.end == Some(WorkerEnd::Shutdown))
        .count();
    assert_eq!(shut_down, 2, "{stats}");
}

#[test]
fn recycled_workers_and_shutdown_are_told_apart() {
    let pool = Pool::builder()
        .workers(2)
        .max_items_per_worker(10)
        .build()
        .unwrap();
    pool.chunksize(1).map(|x: u32| x, 0..100u32).unwrap();
    pool.close();
    pool.join().unwrap();
    let stats = pool.stats().unwrap();
    assert!(stats.workers.is_empty(), "{stats}");
    assert_eq!(stats.recycled, 10, "{stats}");
    assert_eq!(stats.forks, 12, "{stats}");
    assert_eq!(stats.died + stats.stopped, 0, "{stats}");
    let shut_down = stats
        .ended
        .iter()
        .filter(|w| w.end == Some(WorkerEnd::Shutdown))
        .count();
    assert_eq!(shut_down, 2, "{stats}");
    assert!(
        stats
            .ended
            .iter()
            .filter(|w| w.end == Some(WorkerEnd::Recycled))
            .all(|w| w.items == 10),
        "{stats}"
    );
}

#[test]
fn a_timed_out_item_is_a_stopped_worker_in_an_fn_pool_too() {
    let pool = FnPool::new(1, |ms: u64| std::thread::sleep(Duration::from_millis(ms))).unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(1)
        .timeout(Duration::from_millis(200))
        .imap([1u64, 60_000, 1])
        .collect();
    assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
    let stats = pool.stats().unwrap();
    assert_eq!(stats.stopped, 1, "{stats}");
    assert_eq!(stats.ended[0].end, Some(WorkerEnd::Stopped));
    assert_eq!(stats.replacements, 1);
    let items: u64 = stats
        .workers
        .iter()
        .chain(&stats.ended)
        .map(|w| w.items)
        .sum();
    assert_eq!(items, 2);
}

#[test]
fn a_forked_child_gets_foreign_process_not_the_parents_copy() {
    let pool = Pool::new(1).unwrap();
    let child =
        ReturnProcess::spawn(|| matches!(pool.stats(), Err(PoolError::ForeignProcess { .. })))
            .unwrap();
    assert!(child.join().unwrap());
    assert!(pool.stats().is_ok());
}
