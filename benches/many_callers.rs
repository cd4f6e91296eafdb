//! Many callers on one pool (issue 12's figures): run with
//! `cargo bench -p forkpool-bench --bench many_callers` (prints medians of 3 rounds; no assertions:
//! the tests in `tests/many_callers.rs` check behaviour, this measures it).
//!
//! 1. 8 threads x 200 one-item `map` calls of items sleeping 2 ms on 2 workers: wall time
//!    against the ideal 1.6 s.
//! 2. A thread holds an unconsumed `imap` over 20 ms items while another maps 10 items of 1 ms:
//!    that map's wall time.
//! 3. `apply` latency while another thread maps 1,000,000 trivial items: median and max.
//! 4. `submit` throughput: 100,000 trivial tasks from one thread, then all waited.

use forkpool::Pool;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod stats;
use stats::median;

fn nap2(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x
}

fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

fn quick(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x
}

fn one_item_calls(pool: &Arc<Pool>) -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let pool = Arc::clone(pool);
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    assert_eq!(pool.map(nap2, [t * 1000 + i]).unwrap()[0], t * 1000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

fn held_imap(pool: &Arc<Pool>) -> Duration {
    let mut held = pool.imap(slow, 0..1_000_000u64);
    held.next().unwrap().unwrap();
    let other = Arc::clone(pool);
    let took = std::thread::spawn(move || {
        let start = Instant::now();
        other.map(quick, 0..10u64).unwrap();
        start.elapsed()
    })
    .join()
    .unwrap();
    drop(held);
    took
}

fn apply_latency(pool: &Arc<Pool>) -> (Duration, Duration) {
    let mapper = {
        let pool = Arc::clone(pool);
        std::thread::spawn(move || pool.map(|x: u64| x ^ 1, 0..1_000_000u64).unwrap().len())
    };
    let mut latencies = Vec::new();
    while latencies.len() < 20 {
        let start = Instant::now();
        pool.apply(|x: u64| x + 1, 1).unwrap();
        latencies.push(start.elapsed());
    }
    assert_eq!(mapper.join().unwrap(), 1_000_000);
    latencies.sort();
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    )
}

fn submit_throughput(pool: &Pool) -> f64 {
    let n = 100_000u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(|x| pool.submit(|x: u64| x + 1, x)).collect();
    let sum: u64 = tasks.into_iter().map(|t| t.wait().unwrap()).sum();
    assert_eq!(sum, (1..=n).sum::<u64>());
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let (mut a, mut b, mut c_med, mut c_max, mut d) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        a.push(one_item_calls(&pool).as_secs_f64());
        b.push(held_imap(&pool).as_secs_f64() * 1e3);
        let (med, max) = apply_latency(&pool);
        c_med.push(med.as_secs_f64() * 1e3);
        c_max.push(max.as_secs_f64() * 1e3);
        d.push(submit_throughput(&pool));
    }
    let a = median(a);
    println!(
        "1. 8 threads x 200 one-item calls (2 ms items): {a:.2} s, {:.2}x the ideal 1.6 s",
        a / 1.6
    );
    println!(
        "2. 10-item map (1 ms items) beside a held imap of 20 ms items: {:.1} ms",
        median(b)
    );
    println!(
        "3. apply during a 1,000,000-item map: median {:.2} ms, max {:.2} ms",
        median(c_med),
        median(c_max)
    );
    println!(
        "4. submit + wait, 100,000 trivial tasks: {:.2} us per task",
        median(d)
    );
}
