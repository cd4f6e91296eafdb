//! Tasks and lazy calls awaited from async code (feature `async`), under tokio.
#![cfg(feature = "async")]

mod common;

use common::is_reaped;
use forkpool::{ItemError, Pool};
use futures::StreamExt;
use std::time::{Duration, Instant};

fn triple(x: u64) -> u64 {
    x * 3
}

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

#[test]
fn a_thousand_tasks_awaited_at_once_on_a_two_thread_runtime() {
    let pool = Pool::new(2).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let outcomes = runtime.block_on(async {
        let tasks: Vec<_> = (0..1000u64).map(|x| pool.submit(triple, x)).collect();
        futures::future::join_all(tasks).await
    });
    assert_eq!(outcomes.len(), 1000);
    for (x, outcome) in outcomes.into_iter().enumerate() {
        assert_eq!(outcome.unwrap(), x as u64 * 3);
    }
}

#[test]
fn a_timeout_that_drops_a_pending_task_cancels_it_and_stops_its_worker() {
    let pool = Pool::new(1).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pid = runtime.block_on(async {
        let task = pool.submit(sleep_secs, 60);
        let pid = loop {
            if let Some(pid) = task.pid() {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let timed = tokio::time::timeout(Duration::from_millis(100), task).await;
        assert!(timed.is_err(), "the task finished within the timeout");
        pid
    });
    // The dropped task's worker was stopped: it is reaped long before its 60 s item would end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_reaped(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(is_reaped(pid), "worker {pid} still runs the dropped task");
    // The pool replaced it and goes on.
    assert_eq!(pool.map(|x: u8| x, 0..3u8).unwrap(), [0, 1, 2]);
    assert!(!pool.pids().contains(&pid));
}

#[test]
fn an_awaited_task_that_fails_gives_its_error() {
    let pool = Pool::new(1).unwrap();
    let outcome = futures::executor::block_on(
        pool.timeout(Duration::from_millis(100))
            .submit(sleep_secs, 60),
    );
    assert!(
        matches!(
            outcome.as_ref().unwrap_err().as_task(),
            Some(ItemError::TimedOut { index: 0, .. })
        ),
        "{outcome:?}"
    );
}

#[test]
fn lazy_calls_are_streams() {
    let pool = Pool::new(2).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        // `Imap` is an `Iterator` too: name the `StreamExt` methods.
        let values: Vec<u64> = StreamExt::map(pool.imap(triple, 0..500u64), |r| r.unwrap())
            .collect()
            .await;
        assert_eq!(values, (0..500).map(|x| x * 3).collect::<Vec<_>>());
        let unordered = pool.imap_unordered(triple, 0..100u64);
        let mut unordered: Vec<u64> = StreamExt::map(unordered, |r| r.unwrap()).collect().await;
        unordered.sort_unstable();
        assert_eq!(unordered, (0..100).map(|x| x * 3).collect::<Vec<_>>());
        // A stream taken in part and dropped leaves the pool usable.
        let first: Vec<_> = StreamExt::take(pool.imap(triple, 0u64..), 3)
            .collect()
            .await;
        assert_eq!(
            first.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
            [0, 3, 6]
        );
    });
    assert_eq!(pool.map(triple, [1u64]).unwrap(), [3]);
}
