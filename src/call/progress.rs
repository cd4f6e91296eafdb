//! How far a call has come, reported as its items finish: to a callback of the caller's
//! ([`CallOptions::on_progress`](crate::CallOptions::on_progress)) or, with the cargo feature
//! `progress`, as a terminal progress bar ([`CallOptions::progress`](crate::CallOptions)), with
//! its counts and rate written for people ("1 item", "3/10 items", "35.9/s").
//!
//! Invariant: every item the call pulls from its input ticks exactly once, when its outcome is
//! final (a result or an error: a failed item counts), in the order outcomes become final, and
//! never after the call has ended.

#[cfg(feature = "progress")]
use std::borrow::Cow;
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
    /// A progress bar on the terminal (stderr): its label, if any, then items, rate and time
    /// left.
    #[cfg(feature = "progress")]
    Bar(Option<Cow<'static, str>>),
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgressSink::Callback(_) => f.write_str("Callback"),
            #[cfg(feature = "progress")]
            ProgressSink::Bar(label) => f.debug_tuple("Bar").field(label).finish(),
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
            ProgressSink::Bar(label) => Out::Bar(bar::new(total, label.clone())),
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

/// The terminal bar: its look, and counts and rates written for people.
#[cfg(feature = "progress")]
mod bar {
    use indicatif::{ProgressBar, ProgressState, ProgressStyle};
    use std::borrow::Cow;
    use std::fmt::Write;

    /// A bar for `total` items, or a spinner with a count when the total is unknown, led by
    /// `label` when there is one. Drawn on stderr, and only when stderr is a terminal
    /// (indicatif's default): a program's output piped to a file or read by CI gets no bar.
    pub(super) fn new(total: Option<u64>, label: Option<Cow<'static, str>>) -> ProgressBar {
        let (bar, shape) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{bar:40} {items} [{elapsed_precise}, {rate}, {eta} left]",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {items} [{elapsed_precise}, {rate}]",
            ),
        };
        let template = match &label {
            Some(_) => format!("{{prefix}} {shape}"),
            None => shape.to_string(),
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            let style = style
                .with_key("items", |s: &ProgressState, w: &mut dyn Write| {
                    let _ = w.write_str(&items(s.pos(), s.len()));
                })
                .with_key("rate", |s: &ProgressState, w: &mut dyn Write| {
                    let _ = w.write_str(&rate(s.per_sec()));
                });
            bar.set_style(style);
        }
        if let Some(label) = label {
            bar.set_prefix(label);
        }
        bar
    }

    /// `done` items of `total` (`None`: unknown), for people: "1 item", "2 items",
    /// "3/10 items", "1/1 item", "12,345 items" (the noun agrees with the last number).
    pub(super) fn items(done: u64, total: Option<u64>) -> String {
        let (text, last) = match total {
            Some(total) => (format!("{}/{}", grouped(done), grouped(total)), total),
            None => (grouped(done), done),
        };
        let noun = if last == 1 { "item" } else { "items" };
        format!("{text} {noun}")
    }

    /// Items a second, for people: one decimal under 100 ("35.9/s", "0.4/s"), whole numbers
    /// with thousands separators from 100 on ("1,234/s"); "0/s" before the first item.
    pub(super) fn rate(per_sec: f64) -> String {
        if !per_sec.is_finite() || per_sec <= 0.0 {
            "0/s".to_string()
        } else if per_sec < 99.95 {
            format!("{per_sec:.1}/s")
        } else {
            format!("{}/s", grouped(per_sec.round() as u64))
        }
    }

    /// `n` with a comma between groups of three digits: "12,345".
    fn grouped(n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(digit);
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::{grouped, items, rate};

        #[test]
        fn counts_agree_with_their_noun() {
            assert_eq!(items(0, None), "0 items");
            assert_eq!(items(1, None), "1 item");
            assert_eq!(items(2, None), "2 items");
            assert_eq!(items(0, Some(1)), "0/1 item");
            assert_eq!(items(1, Some(1)), "1/1 item");
            assert_eq!(items(1, Some(10)), "1/10 items");
            assert_eq!(items(12_345, Some(1_000_000)), "12,345/1,000,000 items");
        }

        #[test]
        fn rates_have_one_decimal_below_a_hundred_and_separators_above() {
            assert_eq!(rate(35.9134), "35.9/s");
            assert_eq!(rate(0.42), "0.4/s");
            assert_eq!(rate(99.94), "99.9/s");
            assert_eq!(rate(99.96), "100/s");
            assert_eq!(rate(1234.5), "1,235/s");
            assert_eq!(rate(2_500_000.0), "2,500,000/s");
            assert_eq!(rate(0.0), "0/s");
            assert_eq!(rate(f64::NAN), "0/s");
            assert_eq!(rate(f64::INFINITY), "0/s");
        }

        #[test]
        fn thousands_are_grouped_by_three() {
            assert_eq!(grouped(0), "0");
            assert_eq!(grouped(999), "999");
            assert_eq!(grouped(1_000), "1,000");
            assert_eq!(grouped(123_456_789), "123,456,789");
            assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
        }
    }
}
