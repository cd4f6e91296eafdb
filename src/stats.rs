//! Insight into a run ([`Pool::stats`](crate::Pool::stats), [`FnPool::stats`](crate::FnPool::stats)):
//! per worker, the items it answered and the time it spent in them and idle; the workers that
//! ended and why (recycled, died and of what, stopped after a timeout or a cancel, killed for
//! breaking the protocol); forks and replacements; and the time the parent spent encoding
//! items and reading replies. mpire's `insights` is the model.
//!
//! The counters cost a few additions per reply, under the engine's lock the reply is handled
//! under anyway. The parent's own time is measured only if the pool was built with
//! `insights(true)`: the clock is read twice per batch of chunks it encodes and per batch of
//! replies it reads, never per item.

use crate::error::Death;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most ended workers a pool remembers one by one (the oldest are forgotten first; the
/// totals count them all).
const ENDED_KEPT: usize = 64;

/// What a pool has done so far: made by [`Pool::stats`](crate::Pool::stats); printable as a
/// short table.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// pool.map(|x: u64| x * 2, 0..1000u64)?;
/// let stats = pool.stats()?;
/// assert_eq!(stats.workers.iter().map(|w| w.items).sum::<u64>(), 1000);
/// println!("{stats}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The live workers, oldest first.
    pub workers: Vec<WorkerStats>,
    /// The workers that ended, in the order they ended (at most the last 64).
    pub ended: Vec<WorkerStats>,
    /// Workers forked, the first ones included.
    pub forks: u64,
    /// Forks that replaced a worker that died, was recycled or was stopped.
    pub replacements: u64,
    /// Workers that ended, by how (every one, not only those in `ended`).
    pub recycled: u64,
    /// Workers that died (a signal, an exit, a protocol violation).
    pub died: u64,
    /// Workers stopped by the pool (a timeout, a cancel, an initializer that did not return).
    pub stopped: u64,
    /// Time the parent spent encoding items into chunk frames; `None` unless the pool was built
    /// with [`PoolBuilder::insights`](crate::PoolBuilder::insights).
    pub encoding: Option<Duration>,
    /// Time the parent spent reading replies (decoding results, filing outcomes); `None`
    /// unless the pool was built with `insights`.
    pub reading: Option<Duration>,
}

/// What one worker did: see [`PoolStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Its process id.
    pub pid: u32,
    /// Items it answered (results and per-item errors such as panics).
    pub items: u64,
    /// Chunks it answered.
    pub chunks: u64,
    /// Time it spent in answered chunks, as it measured: decoding items, running the function,
    /// encoding results.
    pub busy: Duration,
    /// Time from its fork to now (live) or to its end.
    pub lifetime: Duration,
    /// How it ended; `None` while it lives.
    pub end: Option<WorkerEnd>,
}

impl WorkerStats {
    /// The part of its lifetime not spent in answered chunks: waiting for work, starting, or in
    /// a chunk it has not answered (yet, or ever).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let worker = &pool.stats()?.workers[0];
    /// assert_eq!(worker.idle(), worker.lifetime - worker.busy);
    /// # Ok(()) }
    /// ```
    pub fn idle(&self) -> Duration {
        self.lifetime.saturating_sub(self.busy)
    }
}

/// How a worker ended.
///
/// ```
/// let end = forkpool::WorkerEnd::Died(forkpool::Death::Signal(11));
/// let text = end.to_string();
/// assert!(text.starts_with("died: ") && text.contains("SIGSEGV"), "{text}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEnd {
    /// It answered its `max_items_per_worker` items and exited to be replaced.
    Recycled,
    /// It exited when the pool was closed, joined or dropped.
    Shutdown,
    /// It died on its own: a signal (a crash, an out-of-memory kill) or an exit.
    Died(Death),
    /// The pool stopped it: an item ran past its timeout, a running task was cancelled or its
    /// call dropped, or its initializer did not return in time.
    Stopped,
    /// The pool killed it for sending what it may not (see `ItemError::Protocol`).
    Offended,
}

impl fmt::Display for WorkerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerEnd::Recycled => f.write_str("recycled"),
            WorkerEnd::Shutdown => f.write_str("shut down"),
            WorkerEnd::Died(death) => write!(f, "died: {death}"),
            WorkerEnd::Stopped => f.write_str("stopped by the pool"),
            WorkerEnd::Offended => f.write_str("killed: broke the protocol"),
        }
    }
}

impl fmt::Display for PoolStats {
    /// A short table: one line per worker (live, then the ended ones kept), then the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>8} {:>10} {:>8} {:>10} {:>10}  state",
            "pid", "items", "chunks", "busy", "idle"
        )?;
        for worker in self.workers.iter().chain(&self.ended) {
            let state = worker
                .end
                .as_ref()
                .map_or_else(|| "live".to_string(), ToString::to_string);
            writeln!(
                f,
                "{:>8} {:>10} {:>8} {:>10.3?} {:>10.3?}  {state}",
                worker.pid,
                worker.items,
                worker.chunks,
                worker.busy,
                worker.idle()
            )?;
        }
        write!(
            f,
            "forks {} (replacements {}); ended: {} recycled, {} died, {} stopped",
            self.forks, self.replacements, self.recycled, self.died, self.stopped,
        )?;
        if let (Some(encoding), Some(reading)) = (self.encoding, self.reading) {
            write!(
                f,
                "; parent: encoding {encoding:.3?}, reading replies {reading:.3?}"
            )?;
        }
        Ok(())
    }
}

/// One worker's counters, kept in its handle.
#[derive(Debug)]
pub(crate) struct WorkerCounters {
    /// It was told to exit after its `max_tasks` items.
    pub recycled: bool,
    born: Instant,
    items: u64,
    chunks: u64,
    busy_nanos: u64,
}

impl WorkerCounters {
    pub fn new() -> WorkerCounters {
        WorkerCounters {
            recycled: false,
            born: Instant::now(),
            items: 0,
            chunks: 0,
            busy_nanos: 0,
        }
    }

    /// It answered a chunk of `items` items that kept it busy `busy_nanos` (its own figure:
    /// saturating, so a lying worker cannot overflow it).
    pub fn answered(&mut self, items: u32, busy_nanos: u64) {
        self.items += u64::from(items);
        self.chunks += 1;
        self.busy_nanos = self.busy_nanos.saturating_add(busy_nanos);
    }

    pub fn stats(&self, pid: u32, end: Option<WorkerEnd>) -> WorkerStats {
        let lifetime = self.born.elapsed();
        WorkerStats {
            pid,
            items: self.items,
            chunks: self.chunks,
            // A worker's own figure is not trusted past its lifetime.
            busy: Duration::from_nanos(self.busy_nanos).min(lifetime),
            lifetime,
            end,
        }
    }
}

/// A pool's counters across its workers' lives, kept in its engine.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub forks: u64,
    ended: VecDeque<WorkerStats>,
    recycled: u64,
    died: u64,
    stopped: u64,
}

impl PoolCounters {
    /// Records a worker's end.
    pub fn ended(&mut self, stats: WorkerStats) {
        match stats.end {
            Some(WorkerEnd::Recycled) => self.recycled += 1,
            Some(WorkerEnd::Died(_) | WorkerEnd::Offended) => self.died += 1,
            Some(WorkerEnd::Stopped) => self.stopped += 1,
            Some(WorkerEnd::Shutdown) | None => {}
        }
        if self.ended.len() == ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back(stats);
    }

    /// The pool's stats, with its live workers' and the parent's times.
    pub fn stats(&self, workers: Vec<WorkerStats>, size: usize, parent: &ParentTimes) -> PoolStats {
        PoolStats {
            workers,
            ended: self.ended.iter().cloned().collect(),
            forks: self.forks,
            replacements: self.forks.saturating_sub(size as u64),
            recycled: self.recycled,
            died: self.died,
            stopped: self.stopped,
            encoding: parent
                .enabled
                .then(|| Duration::from_nanos(parent.encoding.load(Ordering::Relaxed))),
            reading: parent
                .enabled
                .then(|| Duration::from_nanos(parent.reading.load(Ordering::Relaxed))),
        }
    }
}

/// The parent's own time in a pool's calls, added to by every calling thread, if the pool was
/// built with `insights` (reading the clock twice per batch measurably slows calls of tiny
/// items: 1.16 µs per item at chunksize 1 with the clock read, 0.51 without, in row (b) of
/// `cargo run --release -p forkpool-bench --example compare -- --only b,l --no-python --repeat 3`,
/// alternating builds).
#[derive(Debug)]
pub(crate) struct ParentTimes {
    enabled: bool,
    encoding: AtomicU64,
    reading: AtomicU64,
}

impl ParentTimes {
    pub fn new(enabled: bool) -> ParentTimes {
        ParentTimes {
            enabled,
            encoding: AtomicU64::new(0),
            reading: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Now, if the parent's time is measured.
    pub fn start(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    /// Adds the time since `since` (from [`start`](ParentTimes::start)) to the encoding time.
    pub fn encoded(&self, since: Option<Instant>) {
        if let Some(since) = since {
            self.encoding
                .fetch_add(nanos_since(since), Ordering::Relaxed);
        }
    }

    /// Adds the time since `since` to the time reading replies.
    pub fn read(&self, since: Option<Instant>) {
        if let Some(since) = since {
            self.reading
                .fetch_add(nanos_since(since), Ordering::Relaxed);
        }
    }
}

fn nanos_since(since: Instant) -> u64 {
    saturating_nanos(since.elapsed())
}

/// `limit` in nanoseconds, saturating (a `Duration` above 2^64 ns must not wrap to a short one).
pub(crate) fn saturating_nanos(limit: Duration) -> u64 {
    u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)
}
