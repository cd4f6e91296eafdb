//! User code a call runs in the parent (its input's `next`, the items' `Serialize`) runs
//! without the engine's lock: such code may call the same pool, block or panic, and other
//! callers go on meanwhile (invariant 10 of the design).

use forkpool::{CodecStage, ItemError, Pool};
use serde::{Serialize, Serializer};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Duration;

/// Rounds each test runs.
const ROUNDS: u64 = 20;

/// Runs `body` on a thread of its own and fails if it has not returned within a generous
/// limit: a hang is a failure, not a stuck test run.
fn within_a_minute(name: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => thread.join().unwrap(),
        // The body panicked: its panic is the failure.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung (no end within 60 s)"),
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

fn add_one(x: u64) -> u64 {
    x + 1
}

#[test]
fn an_imap_fed_by_an_imap_of_the_same_pool_finishes() {
    within_a_minute("imap of imap", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let n = 40 + round;
            let stage_one = pool.imap(double, 0..n).map(Result::unwrap);
            let out: Vec<u64> = pool.imap(add_one, stage_one).map(Result::unwrap).collect();
            assert_eq!(out, (0..n).map(|x| x * 2 + 1).collect::<Vec<_>>());
            // And unordered, with chunks of several items.
            let stage_one = pool.chunksize(3).imap(double, 0..n).map(Result::unwrap);
            let mut out: Vec<u64> = pool
                .imap_unordered(add_one, stage_one)
                .map(Result::unwrap)
                .collect();
            out.sort_unstable();
            assert_eq!(out, (0..n).map(|x| x * 2 + 1).collect::<Vec<_>>());
        }
    });
}

#[test]
fn an_input_iterator_that_calls_apply_and_submit_on_the_same_pool_finishes() {
    within_a_minute("input calling the pool", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let n = 10 + round;
            let input = (0..n).map(|x| {
                let task = pool.submit(double, x);
                pool.apply(double, x).unwrap() + task.wait().unwrap()
            });
            let out: Vec<u64> = pool.imap(add_one, input).map(Result::unwrap).collect();
            assert_eq!(out, (0..n).map(|x| x * 4 + 1).collect::<Vec<_>>());
            // A collected call too.
            let input = (0..n).map(|x| pool.apply(double, x).unwrap());
            assert_eq!(
                pool.map(add_one, input).unwrap(),
                (0..n).map(|x| x * 2 + 1).collect::<Vec<_>>()
            );
        }
    });
}

#[test]
fn two_threads_with_a_channel_between_them_on_one_pool_both_finish() {
    within_a_minute("channel between threads", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let n = 30 + round;
            let (tx, rx) = mpsc::channel::<u64>();
            std::thread::scope(|s| {
                let pool = &pool;
                let consumer = s.spawn(move || {
                    pool.imap(add_one, rx.iter())
                        .map(Result::unwrap)
                        .collect::<Vec<u64>>()
                });
                s.spawn(move || {
                    for r in pool.imap(double, 0..n) {
                        tx.send(r.unwrap()).unwrap();
                    }
                });
                let out = consumer.join().unwrap();
                assert_eq!(out, (0..n).map(|x| x * 2 + 1).collect::<Vec<_>>());
            });
        }
    });
}

#[test]
fn a_blocked_input_on_one_thread_does_not_delay_another_threads_one_item_call() {
    within_a_minute("blocked input", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let (entered_tx, entered) = mpsc::channel::<()>();
            let (release, released) = mpsc::channel::<()>();
            std::thread::scope(|s| {
                let pool = &pool;
                // Its input blocks on its first item until the other thread's call returned.
                let slow = s.spawn(move || {
                    let input = (0..3u64).inspect(|&x| {
                        if x == 0 {
                            entered_tx.send(()).unwrap();
                            released.recv().unwrap();
                        }
                    });
                    pool.imap(add_one, input)
                        .map(Result::unwrap)
                        .collect::<Vec<u64>>()
                });
                entered.recv().unwrap();
                // The slow input is inside `next` now: this call must not wait for it.
                assert_eq!(pool.apply(double, round).unwrap(), round * 2);
                let task = pool.submit(double, round + 1);
                assert_eq!(task.wait().unwrap(), round * 2 + 2);
                release.send(()).unwrap();
                assert_eq!(slow.join().unwrap(), [1, 2, 3]);
            });
        }
    });
}

/// An input whose item at `panic_at` panics (once): in `next` itself, or in its `Serialize`.
struct Flaky {
    next: u64,
    end: u64,
    panic_at: u64,
    in_serialize: bool,
    panicked: bool,
}

impl Flaky {
    /// Items `0..end`; item `panic_at` panics in `next` or, with `in_serialize`, in its
    /// `Serialize`.
    fn new(end: u64, panic_at: u64, in_serialize: bool) -> Flaky {
        Flaky {
            next: 0,
            end,
            panic_at,
            in_serialize,
            panicked: false,
        }
    }
}

impl Iterator for Flaky {
    type Item = Touchy;

    fn next(&mut self) -> Option<Touchy> {
        let x = self.next;
        if x >= self.end {
            return None;
        }
        self.next += 1;
        let panics_here = x == self.panic_at && !self.panicked;
        if panics_here {
            self.panicked = true;
            if !self.in_serialize {
                panic!("the input panics at {x}");
            }
        }
        Some(Touchy {
            value: x,
            panics: Cell::new(panics_here),
        })
    }
}

/// A value whose `Serialize` may panic.
#[derive(serde::Deserialize)]
struct Touchy {
    value: u64,
    #[serde(skip)]
    panics: Cell<bool>,
}

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.panics.get() {
            panic!("Serialize panics at {}", self.value);
        }
        // A struct of one field encodes as the field: what the derived `Deserialize` reads.
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Touchy", 1)?;
        st.serialize_field("value", &self.value)?;
        st.end()
    }
}

fn touchy_value(t: Touchy) -> u64 {
    t.value * 10
}

#[test]
fn an_input_that_panics_mid_call_loses_no_item_and_leaves_the_pool_usable() {
    within_a_minute("panicking input", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let panic_at = 5 + round % 3;
            let input = Flaky::new(14, panic_at, false);
            // The caller catches the panic and goes on with the same iterator: every item
            // pulled before it (some of them in the chunk being encoded) still gets its outcome.
            let mut outcomes = pool.chunksize(4).imap(touchy_value, input);
            let mut got = Vec::new();
            let mut panics = 0;
            loop {
                match catch_unwind(AssertUnwindSafe(|| outcomes.next())) {
                    Ok(Some(outcome)) => got.push(outcome.unwrap()),
                    Ok(None) => break,
                    Err(_) => panics += 1,
                }
            }
            assert_eq!(panics, 1);
            let expected: Vec<u64> = (0..14).filter(|&x| x != panic_at).map(|x| x * 10).collect();
            assert_eq!(got, expected, "round {round}");
            // A call whose thread dies of its input's panic does not wedge the pool.
            std::thread::scope(|s| {
                let pool = &pool;
                let dies = s.spawn(move || {
                    let input = Flaky::new(100, 3, false);
                    pool.imap(touchy_value, input).for_each(drop);
                });
                assert!(dies.join().is_err());
            });
            assert_eq!(
                pool.map(double, 0..10u64).unwrap(),
                (0..20).step_by(2).collect::<Vec<_>>()
            );
            assert_eq!(pool.apply(add_one, round).unwrap(), round + 1);
        }
    });
}

#[test]
fn an_item_whose_serialize_panics_gets_an_encode_error_and_the_rest_their_values() {
    within_a_minute("panicking Serialize", || {
        let pool = Pool::new(2).unwrap();
        for round in 0..ROUNDS {
            let panic_at = 5 + round % 3;
            let input = Flaky::new(14, panic_at, true);
            let outcomes: Vec<_> = catch_unwind(AssertUnwindSafe(|| {
                pool.chunksize(4).imap(touchy_value, input).collect()
            }))
            .expect("a panic in an item's Serialize is that item's error, not the caller's panic");
            assert_eq!(outcomes.len(), 14);
            for (x, outcome) in (0..14u64).zip(outcomes) {
                match outcome {
                    Ok(value) => assert_eq!(value, x * 10),
                    Err(error) => {
                        assert_eq!(x, panic_at, "{error}");
                        let Some(ItemError::Codec {
                            index,
                            stage,
                            message,
                            ..
                        }) = error.as_task()
                        else {
                            panic!("not a codec error: {error}");
                        };
                        assert_eq!((*index, *stage), (x, CodecStage::EncodeItem));
                        assert!(message.contains("Serialize panics at"), "{message}");
                    }
                }
            }
            assert_eq!(pool.apply(add_one, round).unwrap(), round + 1);
        }
    });
}

#[test]
fn input_pulled_without_the_lock_stays_bounded_while_another_thread_takes_the_room() {
    const WORKERS: usize = 2;
    const WINDOW: usize = 2;
    const CHUNKSIZE: usize = 16;
    within_a_minute("bounded input", || {
        let pool = Pool::builder()
            .workers(WORKERS)
            .window(WINDOW)
            .build()
            .unwrap();
        for _round in 0..5 {
            let done = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let (pool, done) = (&pool, &done);
                // Takes every slot it can with one-item tasks until the other call is done.
                s.spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let tasks: Vec<_> = (0..8u64).map(|x| pool.submit(double, x)).collect();
                        for (x, task) in (0..8u64).zip(tasks) {
                            assert_eq!(task.wait().unwrap(), x * 2);
                        }
                    }
                });
                // Stops the other thread however this one ends.
                struct Done<'a>(&'a std::sync::atomic::AtomicBool);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                let _done = Done(done);
                let pulled = Cell::new(0usize);
                let input = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
                let mut taken = 0usize;
                for outcome in pool
                    .chunksize(CHUNKSIZE)
                    .imap_unordered(add_one, input)
                    .take(2_000)
                {
                    outcome.unwrap();
                    taken += 1;
                    // Chunks out at the workers and queued for them (each at most what the
                    // workers hold), plus the chunk being cut.
                    let bound = taken + (2 * WORKERS * WINDOW + 1) * CHUNKSIZE;
                    assert!(
                        pulled.get() <= bound,
                        "pulled {} after {taken}",
                        pulled.get()
                    );
                }
            });
        }
    });
}
