//! An awaited task's waker is user code: the pool wakes (and drops) it after it released the
//! engine's lock, so a waker that calls the pool inline (as an executor that polls on wake
//! does) works (feature `async`).
#![cfg(feature = "async")]

use forkpool::{Pool, Task};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

fn triple(x: u64) -> u64 {
    x * 3
}

/// A waker that takes the pool's lock (through `Pool::stats`) when it is woken and when it
/// is dropped, then reports the wake.
struct CallsThePool {
    pool: Arc<Pool>,
    woken: Mutex<mpsc::Sender<()>>,
}

impl Wake for CallsThePool {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.pool.stats().unwrap();
        let _ = self.woken.lock().unwrap().send(());
    }
}

impl Drop for CallsThePool {
    fn drop(&mut self) {
        self.pool.stats().unwrap();
    }
}

/// A fresh waker, whose only handle the caller drops after the poll: the pool drops the
/// last one (after waking it, replacing it or ending the call).
fn fresh_waker(pool: &Arc<Pool>, woken: &mpsc::Sender<()>) -> Waker {
    Waker::from(Arc::new(CallsThePool {
        pool: Arc::clone(pool),
        woken: Mutex::new(woken.clone()),
    }))
}

/// Polls `task` once with a fresh waker.
fn poll_once(task: &mut Task<'_, u64>, pool: &Arc<Pool>, woken: &mpsc::Sender<()>) -> Poll<u64> {
    let waker = fresh_waker(pool, woken);
    let polled = Pin::new(task).poll(&mut Context::from_waker(&waker));
    drop(waker);
    polled.map(Result::unwrap)
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_waker_that_calls_the_pool_when_woken_or_dropped_does_not_deadlock() {
    let (finished, done) = mpsc::channel();
    std::thread::spawn(move || {
        let pool = Arc::new(Pool::new(2).unwrap());
        for round in 0..20u64 {
            let (woken, wakes) = mpsc::channel();
            // Woken: the pool wakes the waker registered last.
            let mut task = pool.submit(triple, round);
            let value = loop {
                match poll_once(&mut task, &pool, &woken) {
                    Poll::Ready(value) => break value,
                    Poll::Pending => wakes.recv().unwrap(),
                }
            };
            assert_eq!(value, round * 3);
            // Replaced: a second poll before the outcome drops the first waker.
            let mut task = pool.submit(nap, 30);
            assert!(poll_once(&mut task, &pool, &woken).is_pending());
            assert!(poll_once(&mut task, &pool, &woken).is_pending());
            let value = loop {
                match poll_once(&mut task, &pool, &woken) {
                    Poll::Ready(value) => break value,
                    Poll::Pending => wakes.recv().unwrap(),
                }
            };
            assert_eq!(value, 30);
            // Dropped with its call: a pending task dropped (cancelled) takes its waker along.
            let mut task = pool.submit(nap, 10_000);
            assert!(poll_once(&mut task, &pool, &woken).is_pending());
            drop(task);
        }
        let _ = finished.send(());
    });
    done.recv_timeout(Duration::from_secs(60))
        .expect("a waker calling the pool deadlocked it (no end within 60 s)");
}
