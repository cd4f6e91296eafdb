//! Crash isolation: a segfault in one task costs that item, not the program or the pool.
//!
//! A pool of 2 workers maps over 0..100 one item per chunk with a function that raises
//! `SIGSEGV` on item 42. `Pool::imap` yields one `Result` per item, so the 99 other items
//! succeed, item 42 reports `ItemError::WorkerDied` with the signal, the dead worker is replaced,
//! and the same pool then runs another map on all its workers.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example crash_isolation
//! ```

use forkpool::{Death, Error, ItemError, Pool};
use std::collections::BTreeSet;

/// The item whose task crashes its worker.
const BAD_ITEM: u32 = 42;

/// Doubles `x`, except that item 42 kills the worker with a segmentation fault.
fn double_or_crash(x: u32) -> u32 {
    if x == BAD_ITEM {
        // SAFETY: raise(3) is sound to call. SIGSEGV's default action (which forkpool restores
        // in its workers) ends this worker process, which is what this example demonstrates;
        // the parent and the other worker are not affected.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    x * 2
}

/// Which worker process ran the item.
fn worker_pid(_item: u32) -> u32 {
    std::thread::sleep(std::time::Duration::from_millis(5));
    std::process::id()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(2)?;
    let before = pool.pids();
    println!("workers before: {before:?}");

    let mut successes = 0;
    let mut failures = Vec::new();
    for (i, outcome) in pool
        .chunksize(1)
        .imap(double_or_crash, 0..100u32)
        .enumerate()
    {
        match outcome {
            Ok(value) => {
                if value != i as u32 * 2 {
                    return Err(format!("item {i}: got {value}, expected {}", i * 2).into());
                }
                successes += 1;
            }
            Err(e) => {
                println!("failure: {e}");
                failures.push(e);
            }
        }
    }
    println!("{successes} items succeeded, {} failed", failures.len());

    if successes != 99 {
        return Err(format!("expected 99 successes, got {successes}").into());
    }
    match failures.as_slice() {
        [
            Error::Task(ItemError::WorkerDied {
                death: Death::Signal(11),
                index: 42,
                ..
            }),
        ] => println!("as expected: item 42's worker was killed by SIGSEGV"),
        other => {
            return Err(format!("expected one SIGSEGV failure at item 42, got {other:?}").into());
        }
    }

    let after = pool.pids();
    println!("workers after:  {after:?} (the dead one was replaced)");
    if after.len() != 2 {
        return Err(format!("expected 2 live workers, got {}", after.len()).into());
    }

    // The same pool keeps working, on all its workers.
    let used: BTreeSet<u32> = pool
        .chunksize(1)
        .map(worker_pid, 0..40u32)?
        .into_iter()
        .collect();
    println!("a second map ran on workers {used:?}");
    if used != after.iter().copied().collect() {
        return Err(format!("expected the second map to use workers {after:?}").into());
    }
    let doubled: Vec<u32> = pool.map(|x: u32| x * 2, 0..10u32)?;
    if doubled != (0..10u32).map(|x| x * 2).collect::<Vec<_>>() {
        return Err(format!("unexpected results after the crash: {doubled:?}").into());
    }
    println!("the pool still works: {doubled:?}");
    Ok(())
}
