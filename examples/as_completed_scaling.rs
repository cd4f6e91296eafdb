//! How `as_completed` scales: for each count of trivial tasks, the time to submit them all and
//! the time to take them all through `as_completed` (and through `wait_all`, for comparison),
//! per task. Run in release: `cargo run --release --example as_completed_scaling`.

use forkpool::{Pool, as_completed, wait_all};
use std::time::Instant;

fn main() -> Result<(), forkpool::Error> {
    let pool = Pool::new(2)?;
    println!("{:>7} {:>16} {:>16}", "tasks", "as_completed", "wait_all");
    for n in [5_000u64, 10_000, 20_000, 40_000] {
        let tasks: Vec<_> = (0..n).map(|x| pool.submit(|x: u64| x + 1, x)).collect();
        let start = Instant::now();
        let mut sum = 0;
        for task in as_completed(tasks) {
            sum += task.wait()?;
        }
        let completed = start.elapsed();
        assert_eq!(sum, n * (n + 1) / 2);
        let tasks: Vec<_> = (0..n).map(|x| pool.submit(|x: u64| x + 1, x)).collect();
        let start = Instant::now();
        let all = wait_all(tasks);
        let waited = start.elapsed();
        assert_eq!(all.len() as u64, n);
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "{n:>7} {:>11.2} µs/t {:>11.2} µs/t",
            per(completed),
            per(waited)
        );
    }
    Ok(())
}
