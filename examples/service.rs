//! A server-shaped use of one pool: eight request threads each submit crash-prone work (a
//! stand-in for thumbnailing uploads with a C library that sometimes segfaults) to one shared
//! pool. One request's item segfaults; that request gets its error, every other request its
//! answer, and the pool replaces the dead worker and goes on.
//!
//! ```text
//! cargo run --release --example service
//! ```

use forkpool::{ItemError, Pool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// "Renders a thumbnail": some work, and a crash on one poisoned input.
fn thumbnail(request: u64) -> (u64, u64) {
    if request == 13 {
        // SAFETY: deliberately crashes this worker process, as a buggy C library would.
        unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
    }
    std::thread::sleep(Duration::from_millis(5));
    let checksum = (0..10_000u64).fold(request, |h, i| h.rotate_left(5) ^ i);
    (request, checksum)
}

fn main() -> Result<(), forkpool::Error> {
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .timeout(Duration::from_secs(5))
            .build()?,
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut answered = 0;
                let mut failed = Vec::new();
                for i in 0..10u64 {
                    let request = thread * 10 + i;
                    match pool.submit(thumbnail, request).wait() {
                        Ok((got, _checksum)) => {
                            assert_eq!(got, request);
                            answered += 1;
                        }
                        Err(e) => {
                            assert!(matches!(e.as_task(), Some(ItemError::WorkerDied { .. })));
                            failed.push((request, e.to_string()));
                        }
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    let mut answered = 0;
    let mut failed = Vec::new();
    for thread in threads {
        let (a, f) = thread.join().expect("a request thread panicked");
        answered += a;
        failed.extend(f);
    }
    println!(
        "{answered} requests answered, {} failed, in {:.0?} with 8 request threads on {} workers",
        failed.len(),
        start.elapsed(),
        pool.workers()
    );
    for (request, error) in &failed {
        println!("request {request}: {error}");
    }
    assert_eq!(answered, 79);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 13);
    assert_eq!(pool.pids().len(), 2, "the dead worker was replaced");
    Ok(())
}
