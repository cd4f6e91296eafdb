//! Timeouts on the parent's own clock: a task cannot keep a timed item running by writing its
//! worker's progress counters, and a worker the parent stops for a timeout fails its item with
//! `TimedOut`, whatever signal ended it. Every call runs on a thread watched by a generous
//! watchdog, so a regression fails instead of hanging the suite.

mod common;

use common::within;
use forkpool::{Error, ItemError, Pool};
use std::sync::mpsc;
use std::time::Duration;

/// Runs every job at once, each on its own thread; their results in order, or fails the test
/// if any has not returned within `limit` of the start.
fn all_within<T: Send + 'static>(
    limit: Duration,
    jobs: Vec<Box<dyn FnOnce() -> T + Send + 'static>>,
) -> Vec<T> {
    let deadline = std::time::Instant::now() + limit;
    let waits: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
            });
            rx
        })
        .collect();
    waits
        .into_iter()
        .map(|rx| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(value)) => value,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => panic!("did not return within {limit:?}: the timeout did not hold"),
            }
        })
        .collect()
}

/// Far more than a 200 ms timeout needs, far less than forever.
const WATCHDOG: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_millis(200);

/// How a task's stray thread writes its worker's progress counters.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Writer {
    /// Items begin and end over and over: counters move, no item seems to run.
    Churn,
    /// A new item begins over and over (never ending): one always seems to have just begun.
    FreshItem,
    /// New chunks and items begin over and over.
    FreshChunks,
    /// Raw stores into the page: an item running since the end of time.
    #[cfg(target_os = "linux")]
    FutureStart,
}

const WRITERS: &[Writer] = &[
    Writer::Churn,
    Writer::FreshItem,
    Writer::FreshChunks,
    #[cfg(target_os = "linux")]
    Writer::FutureStart,
];

/// Leaves behind a thread that keeps writing this worker's progress counters the way
/// `writer` says, then sleeps for good.
fn leave_a_counter_writer_behind(writer: Writer) -> u64 {
    let progress = forkpool_worker::progress::current().expect("a worker has a progress page");
    // A raw thread: a task may start one (the worker itself starts none).
    std::thread::spawn(move || {
        loop {
            match writer {
                Writer::Churn => {
                    progress.begin_item();
                    progress.end_item();
                }
                Writer::FreshItem => progress.begin_item(),
                Writer::FreshChunks => {
                    progress.begin_chunk();
                    progress.begin_item();
                }
                #[cfg(target_os = "linux")]
                Writer::FutureStart => {
                    // The layout of `forkpool_worker::progress::Progress` (repr(C)): chunks,
                    // chunk_base, begun, ended, since_nanos, each a u64.
                    let words = common::own_shared_mapping().cast::<std::sync::atomic::AtomicU64>();
                    // SAFETY: the first page of this worker's shared mapping holds the
                    // progress counters, five aligned u64 words at its start; the mapping
                    // stays for the worker's life.
                    let word = |i: usize| unsafe { &*words.add(i) };
                    use std::sync::atomic::Ordering::SeqCst;
                    word(4).store(u64::MAX, SeqCst);
                    let ended = word(3).load(SeqCst);
                    word(2).store(ended + 1, SeqCst);
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn assert_timed_out(outcome: &Result<u64, Error>, index: u64, what: &str) {
    let error = outcome.as_ref().expect_err(what);
    assert!(
        matches!(error.as_task(), Some(ItemError::TimedOut { index: i, after, .. }) if *i == index && *after == LIMIT),
        "{what}: {error}"
    );
}

#[test]
fn a_thread_writing_the_progress_counters_cannot_keep_a_timed_item_running() {
    let jobs = WRITERS
        .iter()
        .map(|&writer| -> Box<dyn FnOnce() -> _ + Send> {
            Box::new(move || {
                let pool = Pool::builder().workers(1).build().unwrap();
                pool.timeout(LIMIT)
                    .apply(leave_a_counter_writer_behind, writer)
            })
        })
        .collect();
    let outcomes = all_within(WATCHDOG, jobs);
    for (writer, outcome) in WRITERS.iter().zip(&outcomes) {
        assert_timed_out(outcome, 0, &format!("{writer:?}"));
    }
}

fn counter_writer_at_2(x: u64) -> u64 {
    if x == 2 {
        leave_a_counter_writer_behind(Writer::FreshChunks);
    }
    x * 10
}

#[test]
fn in_a_chunk_only_the_item_that_writes_the_counters_times_out() {
    let outcomes = within(WATCHDOG, || {
        let pool = Pool::builder().workers(2).build().unwrap();
        pool.chunksize(5)
            .timeout(LIMIT)
            .imap(counter_writer_at_2, 0..5u64)
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 5);
    for (x, outcome) in (0u64..).zip(&outcomes) {
        if x == 2 {
            assert_timed_out(outcome, 2, "the writer");
        } else {
            assert_eq!(outcome.as_ref().unwrap(), &(x * 10), "item {x}");
        }
    }
}

/// Spins for good; with `ignore_term`, with `SIGTERM` ignored first (the parent's `SIGKILL`
/// ends it).
fn spin(ignore_term: bool) -> u64 {
    if ignore_term {
        // SAFETY: setting a signal's disposition to "ignore" in this worker.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Marks three more items begun and ended on its worker's page, then spins for good.
fn bump_then_spin(ignore_term: bool) -> u64 {
    let progress = forkpool_worker::progress::current().expect("a worker has a progress page");
    for _ in 0..3 {
        progress.begin_item();
        progress.end_item();
    }
    progress.begin_item();
    spin(ignore_term)
}

/// Spins for good, with a stray thread that makes it look as though the item ended.
fn spin_and_churn(ignore_term: bool) -> u64 {
    let progress = forkpool_worker::progress::current().expect("a worker has a progress page");
    std::thread::spawn(move || {
        loop {
            progress.begin_item();
            progress.end_item();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    spin(ignore_term)
}

#[test]
fn a_spinning_task_whose_thread_churns_the_counters_is_stopped_and_timed_out() {
    let jobs = [false, true]
        .into_iter()
        .map(|ignore_term| -> Box<dyn FnOnce() -> _ + Send> {
            Box::new(move || {
                let pool = Pool::builder().workers(1).build().unwrap();
                pool.timeout(LIMIT).apply(spin_and_churn, ignore_term)
            })
        })
        .collect();
    for (ignore_term, outcome) in [false, true].iter().zip(all_within(WATCHDOG, jobs)) {
        assert_timed_out(&outcome, 0, &format!("SIGTERM ignored: {ignore_term}"));
    }
}

#[test]
fn a_spinning_task_stopped_for_its_timeout_is_timed_out_whatever_signal_ended_it() {
    type Spinner = fn(bool) -> u64;
    let tasks: [(Spinner, &str); 2] = [
        (spin, "spin"),
        (bump_then_spin, "counters bumped, then spin"),
    ];
    let cases: Vec<_> = tasks
        .iter()
        .flat_map(|&task| [(task, false), (task, true)])
        .collect();
    let jobs = cases
        .iter()
        .map(
            |&((task, _), ignore_term)| -> Box<dyn FnOnce() -> _ + Send> {
                Box::new(move || {
                    let pool = Pool::builder().workers(1).build().unwrap();
                    pool.timeout(LIMIT).apply(task, ignore_term)
                })
            },
        )
        .collect();
    let outcomes = all_within(WATCHDOG, jobs);
    for (((_, name), ignore_term), outcome) in cases.iter().zip(&outcomes) {
        assert_timed_out(
            outcome,
            0,
            &format!("{name}, SIGTERM ignored: {ignore_term}"),
        );
    }
}

/// Counts the items of [`churn_when_started`] that began, in every process forked after its
/// first use.
fn started() -> &'static std::sync::atomic::AtomicU64 {
    static STARTED: std::sync::OnceLock<&'static std::sync::atomic::AtomicU64> =
        std::sync::OnceLock::new();
    STARTED.get_or_init(common::shared_counter)
}

/// Says it started, then leaves a thread behind that churns the counters (so no item seems to
/// run), and sleeps for good.
fn churn_when_started(_: u64) -> u64 {
    started().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    leave_a_counter_writer_behind(Writer::Churn)
}

#[test]
fn a_cancelled_untimed_item_whose_thread_churns_the_counters_still_gives_its_worker_back() {
    let counter = started();
    let value = within(WATCHDOG, move || {
        let pool = Pool::builder().workers(1).build().unwrap();
        let mut task = pool.submit(churn_when_started, 0);
        while counter.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        task.cancel();
        drop(task);
        // The one worker is held until the parent stops it on its own clock.
        pool.apply(|x: u64| x + 1, 41)
    });
    assert_eq!(value.unwrap(), 42);
}
