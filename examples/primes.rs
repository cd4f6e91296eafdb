//! CPU-bound work on a process pool: primality by trial division, serial versus `Pool::map`.
//!
//! Checks 10,000 odd numbers starting at 1,000,000,000,001 (2,000 in a debug build), first in
//! this process and then on a pool with one worker per available CPU, and prints both times and
//! the speedup. The function given to the pool is a plain fn item: pool workers are forked
//! before the call, so what they receive is the function's address, not a closure's captures.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example primes
//! ```

#[path = "shared/primality.rs"]
mod primality;
use primality::is_prime;

use forkpool::Pool;
use std::time::Instant;

/// The first number checked: odd and near 10^12, so a prime costs about 500,000 divisions.
const START: u64 = 1_000_000_000_001;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = if cfg!(debug_assertions) {
        2_000
    } else {
        10_000
    };
    if cfg!(debug_assertions) {
        println!("debug build: checking {count} numbers (10,000 in a release build)");
    }
    let numbers: Vec<u64> = (0..count).map(|i| START + 2 * i).collect();
    let workers = std::thread::available_parallelism()?.get();

    println!(
        "checking {count} odd numbers from {START} to {}",
        numbers.last().copied().unwrap_or(START)
    );

    let started = Instant::now();
    let serial: Vec<bool> = numbers.iter().map(|&n| is_prime(n)).collect();
    let serial_time = started.elapsed();
    println!("serial:             {serial_time:>10.3?}");

    // Forking the workers is part of the cost a caller pays, so it is timed too.
    let started = Instant::now();
    let pool = Pool::new(workers)?;
    let parallel: Vec<bool> = pool.map(is_prime, numbers.clone())?;
    let pool_time = started.elapsed();
    println!("pool ({workers} workers):   {pool_time:>10.3?}");

    let speedup = serial_time.as_secs_f64() / pool_time.as_secs_f64();
    println!("speedup: {speedup:.2}x on {workers} workers");

    let primes = serial.iter().filter(|&&p| p).count();
    println!("primes found: {primes} of {count}");
    if serial != parallel {
        let first = serial
            .iter()
            .zip(&parallel)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "serial and pool answers differ, first at {} (serial {}, pool {})",
            numbers[first], serial[first], parallel[first]
        )
        .into());
    }
    println!("serial and pool answers are equal");
    Ok(())
}
