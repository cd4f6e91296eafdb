//! The `primes` job across the ranks of an MPI job: rank 0 drives, every other rank checks
//! numbers in its own local pool. Also measures what one chunk costs the cluster.
//!
//! Checks 10,000 odd numbers starting at 1,000,000,000,001 (2,000 in a debug build) on the
//! cluster, then in rank 0 alone, and prints both times; then sends 2,000 chunks of one trivial
//! item each and prints the time per chunk, and 1,000,000 trivial items in chunks of 10,000 and
//! prints the time per item. Needs the `mpi` feature and an MPI installation
//! (Debian: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`):
//!
//! ```text
//! cargo build --release --features mpi --example cluster_primes
//! mpirun -n 2 target/release/examples/cluster_primes            # one driver, one node
//! mpirun -n 3 --hostfile hosts target/release/examples/cluster_primes
//! ```
//!
//! As root (as in a container) `mpirun` also needs `--allow-run-as-root`, and more ranks than
//! cores `--oversubscribe`.

#[path = "shared/primality.rs"]
mod primality;
use primality::is_prime;

use forkpool::mpi::ClusterBuilder;
use std::time::Instant;

/// The first number checked: odd and near 10^12, so a prime costs about 500,000 divisions.
const START: u64 = 1_000_000_000_001;

/// Chunks of one trivial item sent to measure the cost of a chunk.
const CHUNKS: u64 = 2_000;
/// Trivial items sent in big chunks to measure the cost of an item.
const ITEMS: u64 = 1_000_000;

fn main() {
    if let Err(error) = run() {
        eprintln!("cluster_primes: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Before anything else: forks this rank's workers, starts MPI, checks the ranks. Every rank
    // but 0 serves chunks in here until rank 0 is done, and gets `None`.
    let Some(cluster) = ClusterBuilder::new().init()? else {
        return Ok(());
    };
    let count: u64 = if cfg!(debug_assertions) {
        2_000
    } else {
        10_000
    };
    let numbers: Vec<u64> = (0..count).map(|i| START + 2 * i).collect();
    for node in cluster.nodes() {
        println!(
            "rank {} on {} (pid {}): {} workers",
            node.rank, node.host, node.pid, node.workers
        );
    }
    println!(
        "checking {count} odd numbers from {START} to {}",
        numbers.last().copied().unwrap_or(START)
    );

    let started = Instant::now();
    let on_cluster: Vec<bool> = cluster.map(is_prime, numbers.clone())?;
    let cluster_time = started.elapsed();
    let workers = cluster.workers();
    println!("cluster ({workers} workers): {cluster_time:>10.3?}");

    let started = Instant::now();
    let serial: Vec<bool> = numbers.iter().map(|&n| is_prime(n)).collect();
    let serial_time = started.elapsed();
    println!("serial (rank 0):      {serial_time:>10.3?}");
    let speedup = serial_time.as_secs_f64() / cluster_time.as_secs_f64();
    println!("speedup: {speedup:.2}x");

    let primes = serial.iter().filter(|&&p| p).count();
    println!("primes found: {primes} of {count}");
    if serial != on_cluster {
        return Err("the cluster's answers differ from the serial ones".into());
    }
    println!("cluster and serial answers are equal");

    // The cost of a chunk: one trivial item each, two in flight per node.
    let started = Instant::now();
    let echoed = cluster.chunksize(1).map(|x: u64| x, 0..CHUNKS)?;
    let per_chunk = started.elapsed() / CHUNKS as u32;
    if echoed.len() != CHUNKS as usize {
        return Err("chunks were lost".into());
    }
    println!("per chunk (one trivial item, {CHUNKS} chunks): {per_chunk:.1?}");

    // And what an item costs in big chunks: encoding, two hops each way, decoding.
    let started = Instant::now();
    let echoed = cluster.chunksize(10_000).map(|x: u64| x, 0..ITEMS)?;
    let per_item = started.elapsed() / ITEMS as u32;
    if echoed.len() != ITEMS as usize {
        return Err("items were lost".into());
    }
    println!("per item (trivial, chunks of 10,000, {ITEMS} items): {per_item:.2?}");
    Ok(())
}
