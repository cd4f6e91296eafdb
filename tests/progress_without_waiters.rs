//! Work a pool accepted goes to a worker as soon as one has room, whether or not anybody waits:
//! a worker stopped by a cancel, or one that died, is reaped and replaced, and the next task
//! starts, while the caller only looks (`Task::pid`, `Pool::pids`), never waits.

mod common;

use forkpool::Pool;
use std::time::{Duration, Instant};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn die(code: i32) -> u64 {
    // SAFETY: ends this worker process at once, which is what the test is about.
    unsafe { libc::_exit(code) }
}

/// Polls `task.pid()` (which never waits nor drives the pool) until it is `Some`, for at
/// most `limit`.
fn pid_within<R>(task: &forkpool::Task<'_, R>, limit: Duration) -> Option<u32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(pid) = task.pid() {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::yield_now();
    }
}

#[test]
fn after_a_cancel_the_next_task_starts_on_a_replacement_while_nobody_waits() {
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(1).unwrap();
        for round in 0..5 {
            let mut long = pool.submit(nap, 5000);
            let first = pid_within(&long, Duration::from_secs(5)).expect("the long task runs");
            assert!(long.cancel());
            // Long enough for `pid` to see it run.
            let next = pool.submit(nap, 300);
            let pid = pid_within(&next, Duration::from_secs(5)).unwrap_or_else(|| {
                panic!("round {round}: the task after the cancel never started")
            });
            assert_ne!(pid, first, "round {round}: it runs on the cancelled worker");
            assert_eq!(next.wait().unwrap(), 300);
        }
    });
}

#[test]
fn a_worker_that_dies_while_nobody_waits_is_replaced_and_the_next_task_runs() {
    common::within(Duration::from_secs(60), || {
        let pool = Pool::new(1).unwrap();
        for round in 0..5 {
            let [old] = pool.pids()[..] else {
                panic!("round {round}: {:?}", pool.pids())
            };
            let dying = pool.submit(die, 7);
            // `pids` reads the list of live workers the engine publishes, without waiting or driving.
            let deadline = Instant::now() + Duration::from_secs(5);
            let new = loop {
                match pool.pids()[..] {
                    [pid] if pid != old => break pid,
                    _ if Instant::now() > deadline => {
                        panic!("round {round}: worker {old} died and was never replaced")
                    }
                    _ => std::thread::yield_now(),
                }
            };
            let next = pool.submit(nap, 300);
            let pid = pid_within(&next, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("round {round}: the next task never started"));
            assert_eq!(pid, new, "round {round}");
            assert!(dying.wait().is_err());
            assert_eq!(next.wait().unwrap(), 300);
        }
    });
}

#[test]
fn a_pool_dropped_by_a_thread_holding_stdout_while_its_replacement_is_due_does_not_hang() {
    // The pool forks the replacement of a cancelled task's worker on its own thread, which
    // needs stdout's lock: the thread that holds it and drops the pool must not wait for that
    // thread. A hang here holds stdout, which the test harness needs to report a failure: the
    // watchdog writes without it and ends the process.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for round in 0..5 {
            let out = std::io::stdout().lock();
            let pool = Pool::new(1).unwrap();
            let mut long = pool.submit(nap, 5000);
            pid_within(&long, Duration::from_secs(5)).expect("the long task runs");
            assert!(long.cancel());
            // The stopped worker's end was taken in (it left the list of live workers): its replacement is
            // due, and waits for stdout.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !pool.pids().is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the worker never ended"
                );
                std::thread::yield_now();
            }
            drop(long);
            drop(pool);
            drop(out);
            let _ = done.send(round);
        }
    });
    for round in 0..5 {
        if finished.recv_timeout(Duration::from_secs(20)).is_err() {
            let message = format!("\nround {round} hung or failed\n");
            // SAFETY: writes the message's bytes to stderr without taking std's lock (the hung
            // thread holds stdout), then ends the process at once.
            unsafe {
                libc::write(2, message.as_ptr().cast(), message.len());
                libc::_exit(101);
            }
        }
    }
}
