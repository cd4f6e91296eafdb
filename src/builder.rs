//! [`PoolBuilder`]: a pool's (a [`Pool`]'s or an [`FnPool`]'s) size, timeouts, initializer, recycling, memory limit and crash-loop
//! guard, set before its workers are forked.

use crate::child::zygote::ZygoteWorkers;
use crate::engine::crash_guard::RestartLimit;
use crate::engine::{DEFAULT_INIT_TIMEOUT, Engine, Fill, Settings};
use crate::error::PoolError;
use crate::fn_pool::FnPool;
use crate::item::Item;
use crate::lifecycle::PoolState;
use crate::pool::{Pool, PoolMain, default_workers};
use forkpool_worker::InitFn;
use forkpool_worker::child::setup::ChildOptions;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Configures a [`Pool`] ([`build`](PoolBuilder::build)) or an [`FnPool`]
/// ([`build_fn`](PoolBuilder::build_fn)) before its workers are forked: every option applies to
/// both.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::builder().workers(2).window(3).build()?;
/// assert_eq!(pool.workers(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder forks nothing until `build` or `build_fn`"]
pub struct PoolBuilder {
    /// `None`: the default, [`default_workers`], counted only by a build that needs it (it
    /// reads cgroup files).
    workers: Option<usize>,
    window: Option<usize>,
    insights: bool,
    show_panics: bool,
    timeout: Option<Duration>,
    init: Option<InitFn>,
    max_tasks: Option<usize>,
    memory_limit: Option<u64>,
    pinpoint: bool,
    restarts: RestartLimit,
    init_timeout: Duration,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: None,
            window: None,
            insights: false,
            show_panics: false,
            timeout: None,
            init: None,
            max_tasks: None,
            memory_limit: None,
            pinpoint: true,
            restarts: RestartLimit::default(),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }
}

impl PoolBuilder {
    /// How many worker processes to fork (default: the number of CPUs available).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(3).build()?;
    /// assert_eq!(pool.pids().len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// How many chunks each worker may hold at once. By default each call picks: 2 (one
    /// running, the next already queued, so a worker never waits for a round trip to the
    /// parent), or, when chunks hold 16 items or fewer, enough chunks for about 1 ms of work,
    /// from 2 to 32, learnt from their run times (a round trip costs about 70 µs, far more
    /// than a small chunk of trivial items runs; slow items should not queue up behind one
    /// worker). Either way a worker is refilled once it is down to half its window.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).window(4).build()?;
    /// assert_eq!(pool.map(|x: u8| x + 1, [1u8, 2])?, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn window(mut self, window: usize) -> Self {
        self.window = Some(window);
        self
    }

    /// Also print task panics on the workers' stderr (default: they are only reported in the
    /// item's [`ItemError::Panicked`](crate::ItemError::Panicked)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).show_panics(true).build()?;
    /// # drop(pool);
    /// # Ok(()) }
    /// ```
    pub fn show_panics(mut self, show: bool) -> Self {
        self.show_panics = show;
        self
    }

    /// The default time limit of one item, for every call (a call can set its own with
    /// [`CallOptions::timeout`](crate::CallOptions::timeout)). An item still running after it fails with
    /// [`ItemError::TimedOut`](crate::ItemError::TimedOut); its worker gets `SIGTERM` (its whole
    /// process group, so processes the task started go too, and `SIGCONT` so a stopped one acts
    /// on it), then `SIGKILL` after 100 ms, and is replaced; the call goes on. Decoding the item
    /// counts as part of it.
    ///
    /// A worker that holds chunks but makes no progress for the timeout (no item begins or
    /// ends: it was stopped with `SIGSTOP`, or is stuck receiving its chunk) is stopped the same
    /// way: the item it was running, or else its first unstarted item, fails with `TimedOut`,
    /// and the rest of its chunks run elsewhere.
    ///
    /// `Duration::MAX` (or anything too long to add to the clock) means no limit. A zero
    /// timeout makes [`build`](Self::build) return [`PoolError::InvalidTimeout`]; a tiny one
    /// (1 ns) times out every item within about a millisecond, without the parent spinning.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::builder().workers(1).timeout(Duration::from_millis(300)).build()?;
    /// let err = pool.map(|s: u64| std::thread::sleep(Duration::from_secs(s)), [0, 60]).unwrap_err();
    /// assert!(matches!(err.as_task(), Some(forkpool::ItemError::TimedOut { index: 1, .. })));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// A function every worker runs once after it is forked and before its first item,
    /// replacements included (Python's `initializer`). A fn pointer, like the functions given to
    /// [`Pool::map`]: a fn item or a closure that captures nothing. If it panics in a first
    /// worker, [`build`](Self::build) returns [`PoolError::Init`] with its message; if it panics
    /// in a replacement, that worker dies, and the crash-loop guard ends the call if it keeps
    /// happening.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let err = forkpool::Pool::builder()
    ///     .workers(2)
    ///     .init(|| panic!("no licence file"))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("no licence file"));
    /// # Ok(()) }
    /// ```
    pub fn init(mut self, f: fn()) -> Self {
        self.init = Some(f);
        self
    }

    /// How long the [`init`](Self::init) function may run in a worker (default: 30 s). Past
    /// it the worker is killed: in a first worker, [`build`](Self::build) returns
    /// [`PoolError::Init`] naming the limit; in a replacement, the death counts for the
    /// crash-loop guard ([`max_restarts`](Self::max_restarts)), and the chunks it was given run
    /// elsewhere. While a replacement holds chunks of a call with a timeout, that timeout
    /// bounds its initializer too. `Duration::MAX` means no limit.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let err = forkpool::Pool::builder()
    ///     .workers(1)
    ///     .init(|| std::thread::sleep(Duration::from_secs(3600)))
    ///     .init_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("did not return within 200ms"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn init_timeout(mut self, limit: Duration) -> Self {
        self.init_timeout = limit;
        self
    }

    /// Replace each worker with a fresh one after it has been given `items` items (Python's
    /// `maxtasksperchild`, counted in items): memory an item leaks goes with its worker. Chunks
    /// are cut so that no worker gets more, and never split to fit: an idle worker with fewer
    /// items left than the chunk waiting is replaced before reaching `items`. Nothing fails or
    /// changes order. 0 is treated as 1.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).max_items_per_worker(2).build()?;
    /// let pids = pool.map(|_: u8| std::process::id(), [0u8, 1, 2, 3])?;
    /// assert_eq!(pids[0], pids[1]);
    /// assert_ne!(pids[1], pids[2]);
    /// # Ok(()) }
    /// ```
    pub fn max_items_per_worker(mut self, items: usize) -> Self {
        self.max_tasks = Some(items.max(1));
        self
    }

    // old names: begin
    /// [`max_items_per_worker`](PoolBuilder::max_items_per_worker) under the name it had: it
    /// counts items, not tasks.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).max_tasks_per_worker(2).build()?;
    /// assert_eq!(pool.map(|x: u8| x, [1u8, 2, 3])?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    #[deprecated(since = "0.2.0", note = "use `max_items_per_worker`: it counts items")]
    pub fn max_tasks_per_worker(self, items: usize) -> Self {
        self.max_items_per_worker(items)
    }
    // old names: end

    /// Cap each worker's address space at `bytes` (`RLIMIT_AS`). An item whose allocation
    /// fails under it aborts its worker and fails with
    /// [`ItemError::OutOfMemory`](crate::ItemError::OutOfMemory); the pool goes on. The cap
    /// counts virtual memory, code and stacks included, so leave room above what items really
    /// use. (While a limit is set, a worker that dies of `SIGABRT` during an item is reported as
    /// out of memory: Rust aborts on a failed allocation, and std offers no stable hook to tell
    /// that abort from an explicit one.) On macOS, which does not enforce `RLIMIT_AS`, `build()`
    /// returns [`PoolError::Unsupported`](crate::PoolError::Unsupported).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).memory_limit(1 << 30).build()?;
    /// assert_eq!(pool.map(|n: usize| vec![1u8; n].len(), [1000usize])?, [1000]);
    /// # Ok(()) }
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Crash pinpointing (default on): when a worker dies running an item, only that item fails
    /// (the pool knows which item was running from a page of memory the worker shares with it);
    /// the other items of its chunk are sent again. Off, every item of the chunk fails with
    /// [`ItemError::WorkerDied`](crate::ItemError::WorkerDied), as in pebble: use that if items
    /// must never run twice (with pinpointing, items of the chunk that had finished before the
    /// crash run again).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).pinpoint_crashes(false).build()?;
    /// let outcomes: Vec<_> = pool
    ///     .chunksize(4)
    ///     .imap(|x: u32| if x == 2 { std::process::abort() } else { x }, 0..4u32)
    ///     .collect();
    /// assert!(outcomes.iter().all(|r| r.is_err()));
    /// # Ok(()) }
    /// ```
    pub fn pinpoint_crashes(mut self, on: bool) -> Self {
        self.pinpoint = on;
        self
    }

    /// The crash-loop guard: a call ends with [`PoolError::CrashLoop`] when more than `deaths`
    /// workers die within `within` with no progress in between (billiard's `max_restarts`).
    /// Default: 32 deaths within 10 s. `usize::MAX` deaths turns the guard off.
    ///
    /// Progress is a worker's reply (even for items that panicked), the death of a worker that
    /// had finished an item, and, once a reply has come since the guard last started afresh, a
    /// death whose running item is known and fails alone with its own cause
    /// ([`ItemError::WorkerDied`](crate::ItemError::WorkerDied) and the like). So items that
    /// each crash alone while others finish never trip it; code that crashes on every item
    /// with none finishing, an initializer that kills every replacement, and workers dying
    /// with no item begun do. A worker stopped because its call ended is not counted.
    ///
    /// Ending the call loses no item: an item running when the guard trips keeps its own
    /// outcome (its result, or its own failure if it crashes too); every other item already
    /// taken from the input, and every item of an input of known length, gets
    /// [`ItemError::PoolFailed`](crate::ItemError::PoolFailed) naming the crash loop; an input
    /// of unknown length is left alone, and the call's last element is the
    /// [`PoolError::CrashLoop`] itself.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::builder()
    ///     .workers(1)
    ///     .max_restarts(3, Duration::from_secs(60))
    ///     .build()?;
    /// let outcomes: Vec<_> = pool
    ///     .chunksize(1)
    ///     .imap(|_: u8| -> u8 { std::process::abort() }, 0..100u8)
    ///     .collect();
    /// // Every item has its one outcome: the first four failed with their worker's death; then
    /// // the guard ended the call, and the others (the input has a known length) fail with it.
    /// assert_eq!(outcomes.len(), 100);
    /// use forkpool::ItemError;
    /// let task = |i: usize| outcomes[i].as_ref().unwrap_err().as_task().unwrap();
    /// assert!((0..4).all(|i| matches!(task(i), ItemError::WorkerDied { .. })));
    /// assert!((4..100).all(|i| matches!(task(i), ItemError::PoolFailed { cause, .. }
    ///     if cause.starts_with("crash loop"))));
    /// # Ok(()) }
    /// ```
    pub fn max_restarts(mut self, deaths: usize, within: Duration) -> Self {
        self.restarts = RestartLimit { deaths, within };
        self
    }

    /// Also time the parent's own work for [`Pool::stats`]: encoding items and reading
    /// replies (default off: the clock is read twice per batch of chunks and of replies, which
    /// measurably slows calls of tiny items; the other stats are always kept).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(2).insights(true).build()?;
    /// pool.map(|x: u64| x + 1, 0..1000u64)?;
    /// assert!(pool.stats()?.encoding.is_some());
    /// assert!(forkpool::Pool::new(1)?.stats()?.encoding.is_none());
    /// # Ok(()) }
    /// ```
    pub fn insights(mut self, on: bool) -> Self {
        self.insights = on;
        self
    }

    /// Forks the workers (and waits for their initializer, if there is one).
    ///
    /// ```
    /// let err = forkpool::Pool::builder().workers(0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "a pool needs at least one worker, got 0");
    /// ```
    pub fn build(self) -> Result<Pool, PoolError> {
        let mut settings = self.settings()?;
        let init = self.init;
        settings.zygote = Some(ZygoteWorkers { init });
        let main: Box<PoolMain> =
            Box::new(move |end| crate::child::pool_worker::serve_pool_worker(end, init));
        let shared = PoolState::new(Engine::new(settings)?, main);
        {
            let (mut engine, filled) = shared
                .registry_unchecked()
                .lock_filled(Some(shared.main()), Fill::Missing);
            filled?;
            engine.wait_ready()?;
        }
        Ok(Pool {
            shared,
            timeout: self.timeout,
        })
    }

    /// Forks workers holding the closure `f`: an [`FnPool`] with these settings (the same as
    /// [`FnPool::new`] with default ones).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let names = ["zero", "one", "two"];
    /// let pool = forkpool::Pool::builder()
    ///     .workers(2)
    ///     .timeout(Duration::from_secs(10))
    ///     .max_items_per_worker(100)
    ///     .build_fn(|i: usize| names[i].len())?;
    /// assert_eq!(pool.map([0, 1, 2])?, [4, 3, 3]);
    /// # Ok(()) }
    /// ```
    pub fn build_fn<'env, T, R, F>(self, f: F) -> Result<FnPool<'env, T, R>, PoolError>
    where
        F: Fn(T) -> R + 'env,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let settings = self.settings()?;
        FnPool::start(settings, self.init, self.timeout, f)
    }

    /// The engine's settings, once the values are checked.
    fn settings(&self) -> Result<Settings, PoolError> {
        let workers = self.workers.unwrap_or_else(default_workers);
        if workers == 0 {
            return Err(PoolError::NoWorkers { workers: 0 });
        }
        if self.window == Some(0) {
            return Err(PoolError::InvalidWindow { window: 0 });
        }
        if let Some(timeout) = self.timeout.filter(|t| t.is_zero()) {
            return Err(PoolError::InvalidTimeout { timeout });
        }
        let settings = Settings {
            size: workers,
            window: self.window,
            insights: self.insights,
            child: ChildOptions {
                ignore_sigint: true,
                show_panics: self.show_panics,
                memory_limit: self.memory_limit,
            },
            has_init: self.init.is_some(),
            max_tasks: self.max_tasks,
            pinpoint: self.pinpoint,
            restarts: self.restarts,
            init_timeout: self.init_timeout,
            zygote: None,
        };
        Ok(settings)
    }
}
