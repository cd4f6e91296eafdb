//! The pool's `tracing` events (debug level) for what it does to real forked workers: fork,
//! death with its cause, replacement, recycling, a stop after a timeout, a crash-loop trip.

mod common;

use common::segfault;
use forkpool::Pool;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A writer into a shared buffer, for the subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().map(str::to_string).collect()
    }
}

/// Runs `f` with a debug-level subscriber on this thread (which drives its own calls, so the
/// pool's events are emitted here); returns what it logged.
fn logged(f: impl FnOnce()) -> Vec<String> {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    log.lines()
}

fn hazard(x: u64) -> u64 {
    match x {
        13 => segfault(),
        14 => std::thread::sleep(Duration::from_secs(60)),
        _ => {}
    }
    x
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.contains(what)).count()
}

#[test]
fn forks_deaths_replacements_recycling_and_stops_are_logged() {
    let lines = logged(|| {
        let pool = Pool::builder()
            .workers(1)
            .max_items_per_worker(5)
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let outcomes: Vec<_> = pool.chunksize(1).imap(hazard, 10..20u64).collect();
        assert_eq!(outcomes.iter().filter(|r| r.is_err()).count(), 2);
    });
    let forked: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("forked a worker"))
        .collect();
    assert!(forked[0].contains("replacement=false"), "{lines:#?}");
    assert!(forked.len() >= 3, "{lines:#?}");
    assert!(
        forked[1..].iter().all(|l| l.contains("replacement=true")),
        "{lines:#?}"
    );
    let segv = lines
        .iter()
        .any(|l| l.contains("a worker ended") && l.contains("SIGSEGV"));
    assert!(segv, "{lines:#?}");
    assert_eq!(count(&lines, "stopping a worker"), 1, "{lines:#?}");
    // The item ran past its timeout, or (the same, seen first) the worker showed no progress.
    let timed_out = |l: &&String| l.contains("Item") || l.contains("Stalled");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("stopping a worker"))
            .all(|l| timed_out(&l)),
        "{lines:#?}"
    );
    assert!(count(&lines, "recycling a worker") >= 1, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("DEBUG")), "{lines:#?}");
}

fn always_segfault(_: u64) -> u64 {
    segfault();
    0
}

#[test]
fn a_crash_loop_trip_is_logged_with_its_causes() {
    let lines = logged(|| {
        let pool = Pool::builder()
            .workers(1)
            .max_restarts(2, Duration::from_secs(60))
            .build()
            .unwrap();
        let outcomes: Vec<_> = pool.chunksize(1).imap(always_segfault, 0..50u64).collect();
        assert!(outcomes.iter().all(|r| r.is_err()));
    });
    let trip: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("crash-loop guard"))
        .collect();
    assert_eq!(trip.len(), 1, "{lines:#?}");
    assert!(
        trip[0].contains("crash loop") && trip[0].contains("SIGSEGV"),
        "{lines:#?}"
    );
}
