//! `close` and `join`: work accepted before `close` still gets workers (a worker that dies is
//! replaced while accepted work remains), a call after `close` is refused, and idle workers
//! exit once nothing accepted remains.

mod common;

use forkpool::{Error, ItemError, Pool, PoolError};
use std::time::{Duration, Instant};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn work_accepted_before_close_gets_a_replacement_when_a_worker_times_out_before_join() {
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(1).unwrap();
        let long = pool.timeout(Duration::from_millis(100)).submit(nap, 10_000);
        let next = pool.submit(nap, 1);
        pool.close();
        let error = long.wait().unwrap_err();
        assert!(
            matches!(error.as_task(), Some(ItemError::TimedOut { .. })),
            "{error}"
        );
        assert_eq!(next.wait().unwrap(), 1);
        pool.join().unwrap();
        assert!(pool.pids().is_empty());
    });
}

#[test]
fn join_after_close_runs_work_queued_behind_a_timed_out_task() {
    // pebble's test_process_pool_stop_timeout: nobody waits on the tasks before `join`.
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(1).unwrap();
        let long = pool.timeout(Duration::from_millis(100)).submit(nap, 10_000);
        let next = pool.submit(nap, 1);
        pool.close();
        pool.join().unwrap();
        let error = long.wait().unwrap_err();
        assert!(
            matches!(error.as_task(), Some(ItemError::TimedOut { .. })),
            "{error}"
        );
        assert_eq!(next.wait().unwrap(), 1);
        assert!(pool.pids().is_empty());
    });
}

#[test]
fn a_task_submitted_after_close_is_refused_with_closed_and_earlier_work_finishes() {
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(1).unwrap();
        let before = pool.submit(nap, 50);
        pool.close();
        let after = pool.submit(nap, 1);
        let error = after.wait().unwrap_err();
        assert!(matches!(error, Error::Pool(PoolError::Closed)), "{error}");
        assert!(matches!(
            pool.map(nap, [1u64]),
            Err(Error::Pool(PoolError::Closed))
        ));
        pool.join().unwrap();
        assert_eq!(before.wait().unwrap(), 50);
    });
}

#[test]
fn join_after_close_sends_again_every_chunk_a_dying_worker_held_unstarted() {
    // Many tasks queued on one worker whose first item kills it: nobody waits on them before
    // `join`, which must see every one of them run on the replacement.
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(1).unwrap();
        let doomed = pool.submit(
            |_: u8| -> u64 {
                // SAFETY: ends this worker at once, as a crash would.
                unsafe { libc::_exit(3) }
            },
            0,
        );
        let tasks: Vec<_> = (1..=20u64).map(|x| pool.submit(nap, x % 2)).collect();
        pool.close();
        let start = Instant::now();
        pool.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(doomed.wait().is_err());
        let values: Vec<u64> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
        assert_eq!(values, (1..=20u64).map(|x| x % 2).collect::<Vec<_>>());
    });
}

#[test]
fn close_lets_idle_workers_exit_without_join() {
    // CPython's test_shutdown_no_wait: closing with no work left lets the workers go at once.
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(nap, [1u64, 2])?, [1, 2]);
        let pids = pool.pids();
        assert_eq!(pids.len(), 2);
        pool.close();
        for pid in pids {
            assert!(
                common::ends_within(pid, Duration::from_secs(5)),
                "worker {pid} still runs after close with no work"
            );
        }
        assert!(pool.pids().is_empty());
        pool.join()?;
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn close_lets_workers_exit_once_the_tasks_accepted_before_it_finished() {
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(2).unwrap();
        let tasks: Vec<_> = [150u64, 100, 50].map(|ms| pool.submit(nap, ms)).into();
        let pids = pool.pids();
        pool.close();
        let values: Vec<u64> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
        assert_eq!(values, [150, 100, 50]);
        for pid in pids {
            assert!(
                common::ends_within(pid, Duration::from_secs(5)),
                "worker {pid} still runs after close once the accepted tasks finished"
            );
        }
        pool.join().unwrap();
    });
}

#[test]
fn a_lazy_call_started_before_close_runs_to_its_end_after_close() {
    // Its input is pulled as workers have room: what it has not pulled yet is accepted work
    // too, so the workers stay until it has sent its last chunk and had it answered.
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(2).unwrap();
        let mut results = pool.chunksize(1).imap(|x: u64| x * 3, 0..200u64);
        assert_eq!(results.next().unwrap().unwrap(), 0);
        pool.close();
        let rest: Vec<u64> = results.map(Result::unwrap).collect();
        assert_eq!(rest, (1..200u64).map(|x| x * 3).collect::<Vec<_>>());
        pool.join().unwrap();
        assert!(pool.pids().is_empty());
    });
}

#[test]
fn items_a_lazy_call_had_not_sent_when_join_began_fail_saying_the_pool_is_closed() {
    // `join` cannot pull a lazy call's input (the iterating thread does): what it had sent by
    // then runs, the rest fails with the pool's closing as its cause, one outcome per item.
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(2).unwrap();
        // Far more items than the workers' window of chunks in flight can hold.
        let mut results = pool.chunksize(1).imap(|x: u64| x * 3, 0..20_000u64);
        assert_eq!(results.next().unwrap().unwrap(), 0);
        pool.close();
        pool.join().unwrap();
        let rest: Vec<_> = results.collect();
        assert_eq!(rest.len(), 19_999);
        let mut failed = 0;
        for (x, outcome) in (1..20_000u64).zip(&rest) {
            match outcome {
                Ok(value) => assert_eq!(*value, x * 3),
                Err(error) => {
                    failed += 1;
                    match error.as_task() {
                        Some(forkpool::ItemError::PoolFailed { index, cause }) => {
                            assert_eq!(*index, x);
                            assert!(cause.contains("closed"), "item {x}: {cause}");
                        }
                        other => panic!("item {x}: {other:?}"),
                    }
                }
            }
        }
        assert!(failed > 0, "join waited for input no thread pulled");
    });
}
