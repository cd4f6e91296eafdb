//! How far a call has come, reported as its items finish: to a callback of the caller's
//! ([`CallOptions::on_progress`](crate::CallOptions::on_progress)) or, with the cargo feature
//! `progress`, as a terminal progress bar ([`CallOptions::progress`](crate::CallOptions)).
//!
//! Invariant: every item the call pulls from its input ticks exactly once, when its outcome is
//! final (a result or an error: a failed item counts), in the order outcomes become final, and
//! never after the call has ended.

use std::sync::Arc;

/// How far a call has come: what an [`on_progress`](crate::CallOptions::on_progress) callback
/// receives once per finished item.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// let pool = forkpool::Pool::new(2)?;
/// let seen = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&seen);
/// let squares = pool
///     .chunksize(2)
///     .on_progress(move |p: forkpool::Progress| {
///         assert_eq!(p.total, Some(10));
///         counter.store(p.done, Ordering::Relaxed);
///     })
///     .map(|x: u64| x * x, 0..10u64)?;
/// assert_eq!(squares.len(), 10);
/// assert_eq!(seen.load(Ordering::Relaxed), 10);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Items whose outcome is final (results and errors alike), this one included.
    pub done: u64,
    /// The number of items, when the input states its length exactly (`None`: unknown).
    pub total: Option<u64>,
}

/// A callback a call reports to.
pub(crate) type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Where a call reports its progress.
#[derive(Clone)]
pub(crate) enum ProgressSink {
    /// The caller's callback, once per finished item.
    Callback(ProgressFn),
    /// A progress bar on the terminal (stderr): items, rate and time left.
    #[cfg(feature = "progress")]
    Bar,
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgressSink::Callback(_) => f.write_str("Callback"),
            #[cfg(feature = "progress")]
            ProgressSink::Bar => f.write_str("Bar"),
        }
    }
}

/// A call's progress while it runs.
pub(crate) struct Ticker {
    done: u64,
    total: Option<u64>,
    out: Out,
}

enum Out {
    Callback(ProgressFn),
    #[cfg(feature = "progress")]
    Bar(indicatif::ProgressBar),
}

impl Ticker {
    /// Starts reporting for a call of `total` items (`None`: unknown).
    pub fn start(sink: &ProgressSink, total: Option<u64>) -> Ticker {
        let out = match sink {
            ProgressSink::Callback(f) => Out::Callback(Arc::clone(f)),
            #[cfg(feature = "progress")]
            ProgressSink::Bar => Out::Bar(bar(total)),
        };
        Ticker {
            done: 0,
            total,
            out,
        }
    }

    /// `items` more items are final.
    pub fn tick(&mut self, items: u64) {
        match &self.out {
            Out::Callback(f) => {
                for _ in 0..items {
                    self.done += 1;
                    f(Progress {
                        done: self.done,
                        total: self.total,
                    });
                }
            }
            #[cfg(feature = "progress")]
            Out::Bar(bar) => {
                self.done += items;
                bar.inc(items);
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        #[cfg(feature = "progress")]
        if let Out::Bar(bar) = &self.out {
            bar.abandon(); // leaves the bar drawn as it ended (all items, or where it stopped)
        }
    }
}

/// A bar for `total` items, or a spinner with a count when the total is unknown.
#[cfg(feature = "progress")]
fn bar(total: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} items [{elapsed_precise}, {per_sec}, {eta} left]",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {pos} items [{elapsed_precise}, {per_sec}]")
            {
                bar.set_style(style);
            }
            bar
        }
    }
}
