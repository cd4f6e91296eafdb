//! Awaiting alone makes progress (feature `async`): after a dropped future cancels a running
//! task (its worker stopped), the pool forks the replacement and the next awaited task
//! completes, with no synchronous call to help it along.
#![cfg(feature = "async")]

mod common;

use forkpool::Pool;
use std::sync::Arc;
use std::time::Duration;

const ROUNDS: usize = 20;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn triple(x: u64) -> u64 {
    x * 3
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn an_awaited_task_after_a_select_dropped_a_running_one_completes() {
    common::within(Duration::from_secs(120), || {
        let pool = Pool::new(1).unwrap();
        let runtime = current_thread();
        for round in 0..ROUNDS {
            runtime.block_on(async {
                tokio::select! {
                    outcome = pool.submit(nap, 5000) => panic!("round {round}: {outcome:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                let next = tokio::time::timeout(Duration::from_secs(10), pool.submit(triple, 2));
                match next.await {
                    Ok(outcome) => assert_eq!(outcome.unwrap(), 6, "round {round}"),
                    Err(_) => panic!("round {round}: the next awaited task never completed"),
                }
            });
        }
    });
}

#[test]
fn awaited_tasks_after_aborted_local_tasks_stopped_both_workers_complete() {
    common::within(Duration::from_secs(120), || {
        let pool = Arc::new(Pool::new(2).unwrap());
        let runtime = current_thread();
        for round in 0..ROUNDS {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async {
                let naps: Vec<_> = (0..10)
                    .map(|_| {
                        let pool = Arc::clone(&pool);
                        tokio::task::spawn_local(async move { pool.submit(nap, 5000).await })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(50)).await;
                for nap in &naps {
                    nap.abort();
                }
                for nap in naps {
                    assert!(nap.await.unwrap_err().is_cancelled(), "round {round}");
                }
                let both = futures::future::join(pool.submit(triple, 2), pool.submit(triple, 3));
                match tokio::time::timeout(Duration::from_secs(10), both).await {
                    Ok((a, b)) => assert_eq!((a.unwrap(), b.unwrap()), (6, 9), "round {round}"),
                    Err(_) => panic!("round {round}: the awaited tasks never completed"),
                }
            });
        }
    });
}
