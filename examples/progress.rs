//! A progress bar per call, counted per item: `cargo run --release --features progress
//! --example progress`. The first call draws a bar labelled "squares" with the rate and the
//! time left (the input states its length); the second, over an input of unknown length, a
//! spinner with a count; the third reports to a callback of its own instead of drawing. The
//! bars are drawn only when stderr is a terminal (`2>log` or a CI run shows none).

use forkpool::{Pool, Progress};
use std::time::Duration;

/// About 2 ms of work per item.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * x
}

fn main() -> Result<(), forkpool::Error> {
    let pool = Pool::new(2)?;
    let squares = pool.progress_with("squares").map(slow_square, 0..500u64)?;
    assert_eq!(squares[499], 499 * 499);

    let evens = (0..400u64).filter(|x| x % 2 == 0);
    let sum: u64 = pool
        .progress()
        .imap(slow_square, evens)
        .map(|r| r.expect("no item fails"))
        .sum();
    assert_eq!(sum, (0..400u64).filter(|x| x % 2 == 0).map(|x| x * x).sum());

    let every_hundred = |p: Progress| {
        if p.done % 100 == 0 {
            eprintln!(
                "callback: {} of {} items done",
                p.done,
                p.total.unwrap_or(0)
            );
        }
    };
    let cubes = pool
        .on_progress(every_hundred)
        .chunksize(10)
        .map(|x: u64| x * x * x, 0..300u64)?;
    assert_eq!(cubes[299], 299 * 299 * 299);
    println!("done: 500 squares, the sum of 200 even squares, 300 cubes");
    Ok(())
}
