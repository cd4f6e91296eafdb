//! One lock order for the whole crate (stdout, stderr, a pool's engine, the descriptor
//! register; see `src/child/fork.rs`): a thread that holds `io::stdout().lock()` while it uses pools
//! never deadlocks with another thread that forks workers. Each test runs 20 rounds under a
//! watchdog: a round that hangs ends the test process with a message (the hung thread holds
//! stdout, which the test harness needs to report a failure).

use forkpool::{Error, FnPool, ItemError, Pool};
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const ROUNDS: usize = 20;
/// Far more than a round takes (tens of milliseconds): only a deadlock reaches it.
const ROUND_LIMIT: Duration = Duration::from_secs(20);

/// Runs `scenario(round)` for [`ROUNDS`] rounds on a thread of its own; a round that does not
/// end within [`ROUND_LIMIT`] ends the process (exit code 101) with `name` and the round on
/// stderr, written without its lock.
fn watched(name: &'static str, scenario: fn(usize)) {
    let (done, rounds) = mpsc::channel();
    std::thread::spawn(move || {
        for round in 0..ROUNDS {
            scenario(round);
            let _ = done.send(round);
        }
    });
    for round in 0..ROUNDS {
        match rounds.recv_timeout(ROUND_LIMIT) {
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                let message =
                    format!("\n{name}: round {round} hung for {ROUND_LIMIT:?}: a deadlock\n");
                // SAFETY: writes the message's bytes to stderr without taking std's lock (a
                // hung thread may hold it), then ends the process at once.
                unsafe {
                    libc::write(2, message.as_ptr().cast(), message.len());
                    libc::_exit(101);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{name}: round {round} failed (its panic is printed above)")
            }
        }
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

/// Items 4, 9, 14, ... end their worker.
fn every_fifth_dies(x: u64) -> u64 {
    if x % 5 == 4 {
        // SAFETY: ends this worker process at once, which is what the test is about.
        unsafe { libc::_exit(3) };
    }
    x
}

/// Holds stdout while it runs ten calls on `pool`, checking every value.
fn iterate_holding_stdout(pool: &Pool) {
    let out = std::io::stdout().lock();
    for _ in 0..10 {
        let doubled: Vec<u64> = pool
            .chunksize(1)
            .imap(double, 0..40u64)
            .map(Result::unwrap)
            .collect();
        assert_eq!(doubled, (0..40).map(|x| x * 2).collect::<Vec<_>>());
    }
    drop(out);
}

/// Thread B builds pools (each `build` forks) while thread A holds stdout and makes and drops
/// pools (each opens and closes registered sockets, pipes and pages).
fn stdout_holder_makes_and_drops_pools_while_another_thread_forks(round: usize) {
    let start = Arc::new(Barrier::new(2));
    let builder = {
        let start = Arc::clone(&start);
        std::thread::spawn(move || {
            start.wait();
            for _ in 0..3 {
                let pool = Pool::new(2).unwrap();
                assert_eq!(pool.map(double, 0..4u64).unwrap(), [0, 2, 4, 6]);
            }
        })
    };
    start.wait();
    let mut out = std::io::stdout().lock();
    for _ in 0..3 {
        let offset = round as u64;
        let pool = FnPool::new(1, move |x: u64| x + offset).unwrap();
        drop(pool);
        drop(Pool::new(1).unwrap());
    }
    let _ = out.flush();
    drop(out);
    builder.join().unwrap();
}

#[test]
fn a_thread_holding_stdout_makes_and_drops_pools_while_another_builds_pools() {
    watched(
        "a_thread_holding_stdout_makes_and_drops_pools_while_another_builds_pools",
        stdout_holder_makes_and_drops_pools_while_another_thread_forks,
    );
}

/// On one pool: thread B's call loses a worker every fifth item (each death forks a
/// replacement) while thread A holds stdout and iterates calls of its own.
fn stdout_holder_iterates_while_another_call_forks_replacements(_: usize) {
    let pool = Arc::new(Pool::new(2).unwrap());
    let start = Arc::new(Barrier::new(2));
    let dying = {
        let (pool, start) = (Arc::clone(&pool), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            let outcomes: Vec<Result<u64, Error>> =
                pool.chunksize(1).imap(every_fifth_dies, 0..20u64).collect();
            assert_eq!(outcomes.len(), 20);
            for (x, outcome) in (0u64..).zip(outcomes) {
                match outcome {
                    Ok(value) => assert!(x % 5 != 4 && value == x, "item {x}: {value}"),
                    Err(Error::Task(ItemError::WorkerDied { index, .. })) => {
                        assert!(x % 5 == 4 && index == x, "item {x}")
                    }
                    Err(other) => panic!("item {x}: {other}"),
                }
            }
        })
    };
    start.wait();
    iterate_holding_stdout(&pool);
    dying.join().unwrap();
}

#[test]
fn a_thread_holding_stdout_iterates_while_another_call_on_the_pool_forks_replacements() {
    watched(
        "a_thread_holding_stdout_iterates_while_another_call_on_the_pool_forks_replacements",
        stdout_holder_iterates_while_another_call_forks_replacements,
    );
}

/// A `tracing` writer that takes stdout's lock for every event, as `fmt()`'s default writer
/// does, and discards what it is given (the test's output stays readable).
struct StdoutLocking;

impl Write for StdoutLocking {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _held = std::io::stdout().lock();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// As above, with thread B's pool events (a worker ended, a worker forked) going to a
/// subscriber that takes stdout's lock: the events are emitted once B holds no lock of the
/// pool, so B never waits for stdout while A waits for B's engine.
fn stdout_holder_iterates_while_another_threads_subscriber_prints(_: usize) {
    let pool = Arc::new(Pool::new(2).unwrap());
    let start = Arc::new(Barrier::new(2));
    let dying = {
        let (pool, start) = (Arc::clone(&pool), Arc::clone(&start));
        std::thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(|| StdoutLocking)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                start.wait();
                let outcomes: Vec<Result<u64, Error>> =
                    pool.chunksize(1).imap(every_fifth_dies, 0..20u64).collect();
                let failed = outcomes.iter().filter(|o| o.is_err()).count();
                assert_eq!((outcomes.len(), failed), (20, 4));
            });
        })
    };
    start.wait();
    iterate_holding_stdout(&pool);
    dying.join().unwrap();
}

#[test]
fn a_thread_holding_stdout_iterates_while_another_threads_tracing_subscriber_prints() {
    watched(
        "a_thread_holding_stdout_iterates_while_another_threads_tracing_subscriber_prints",
        stdout_holder_iterates_while_another_threads_subscriber_prints,
    );
}
