//! `as_completed`: tasks come out in the order they finish, each exactly once, and many
//! trivial tasks go through it in time linear in their number.

mod common;

use forkpool::{ItemError, Pool, Task, as_completed};
use std::time::Duration;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn square_unless_7(x: u64) -> u64 {
    assert!(x % 1000 != 7, "seven");
    x * x
}

#[test]
fn as_completed_yields_tasks_in_the_order_they_finish() {
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(3).unwrap();
        let tasks: Vec<Task<'_, u64>> = [400u64, 10, 200].map(|ms| pool.submit(nap, ms)).into();
        let order: Vec<u64> = as_completed(tasks).map(|t| t.wait().unwrap()).collect();
        assert_eq!(order, [10, 200, 400]);
    });
}

#[test]
fn as_completed_yields_each_of_20k_tasks_exactly_once() {
    common::within(Duration::from_secs(60), || {
        const N: u64 = 20_000;
        let pool = Pool::new(2).unwrap();
        let tasks: Vec<Task<'_, u64>> = (0..N).map(|x| pool.submit(square_unless_7, x)).collect();
        let mut seen = vec![false; N as usize];
        let mut failed = 0;
        for task in as_completed(tasks) {
            match task.wait() {
                Ok(square) => {
                    let x = (square as f64).sqrt() as u64;
                    assert_eq!(x * x, square);
                    assert!(!std::mem::replace(&mut seen[x as usize], true), "{x} twice");
                }
                Err(e) => {
                    assert!(
                        matches!(e.as_task(), Some(ItemError::Panicked { .. })),
                        "{e}"
                    );
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, N / 1000);
        let missing = seen.iter().filter(|&&s| !s).count() as u64;
        assert_eq!(missing, N / 1000, "only the panicking items lack a value");
    });
}

#[test]
fn as_completed_over_two_pools_yields_every_task_in_finish_order() {
    common::within(Duration::from_secs(30), || {
        let (a, b) = (Pool::new(2).unwrap(), Pool::new(2).unwrap());
        let tasks: Vec<Task<'_, u64>> = vec![
            a.submit(nap, 300),
            b.submit(nap, 10),
            a.submit(nap, 150),
            b.submit(nap, 450),
        ];
        let order: Vec<u64> = as_completed(tasks).map(|t| t.wait().unwrap()).collect();
        assert_eq!(order, [10, 150, 300, 450]);
    });
}

#[test]
fn as_completed_yields_tasks_that_finished_or_failed_before_it_started() {
    common::within(Duration::from_secs(30), || {
        let pool = Pool::new(1).unwrap();
        let mut done = pool.submit(nap, 1);
        assert!(done.wait_timeout(Duration::from_secs(20)));
        let slow = pool.submit(nap, 100);
        let order: Vec<u64> = as_completed([slow, done])
            .map(|t| t.wait().unwrap())
            .collect();
        assert_eq!(order, [1, 100]);
    });
}
