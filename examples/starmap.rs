//! `Pool::starmap` and `Pool::istarmap`: items are tuples whose fields are the arguments.
//!
//! Runs a two-argument function over pairs and a three-argument function over triples, then
//! uses the lazy `istarmap` to print the first few results as they arrive, and checks every
//! result against a serial computation.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example starmap
//! ```

use forkpool::Pool;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::thread::available_parallelism()?.get();
    let pool = Pool::new(workers)?;

    // Two arguments: each (a, b) pair becomes a call f(a, b).
    let pairs: Vec<(u64, u64)> = (0..1_000u64).map(|i| (i, i % 7)).collect();
    let squares_plus: Vec<u64> = pool.starmap(|a: u64, b: u64| a.pow(2) + b, pairs.clone())?;
    let serial: Vec<u64> = pairs.iter().map(|&(a, b)| a.pow(2) + b).collect();
    if squares_plus != serial {
        return Err("starmap over pairs differs from the serial result".into());
    }
    println!(
        "pairs:   a^2 + b over {} pairs, last {:?} -> {}",
        pairs.len(),
        pairs[pairs.len() - 1],
        squares_plus[squares_plus.len() - 1]
    );

    // Three arguments: (a, b, c) becomes f(a, b, c).
    let triples: Vec<(f64, f64, f64)> = (0..500u32)
        .map(|i| (f64::from(i) * 0.5, 1.5, f64::from(i % 3)))
        .collect();
    let fused: Vec<f64> = pool.starmap(|a: f64, b: f64, c: f64| a * b + c, triples.clone())?;
    let serial: Vec<f64> = triples.iter().map(|&(a, b, c)| a * b + c).collect();
    // Same operations in the same order, so the results are bit-for-bit equal.
    if fused != serial {
        return Err("starmap over triples differs from the serial result".into());
    }
    println!(
        "triples: a * b + c over {} triples, last {:?} -> {}",
        triples.len(),
        triples[triples.len() - 1],
        fused[fused.len() - 1]
    );

    // Lazy: istarmap yields results in input order as they are ready; taking five and
    // dropping the iterator cancels the rest of the work.
    println!("istarmap, first five of a^b over an endless input:");
    let endless = (1u64..).map(|i| (i, 3u32));
    for (i, result) in pool
        .istarmap(|a: u64, b: u32| a.pow(b), endless)
        .take(5)
        .enumerate()
    {
        let value = result?;
        let n = i as u64 + 1;
        println!("  {n}^3 = {value}");
        if value != n.pow(3) {
            return Err(format!("istarmap gave {value} for {n}^3").into());
        }
    }

    println!("all starmap results equal the serial computation");
    Ok(())
}
