//! [`FnPool`]: workers forked holding one closure, with every option and lifecycle call of a
//! [`Pool`](crate::Pool) (its builder is [`PoolBuilder`], its calls are in `call_options.rs`).
//!
//! The workers are forked after the closure exists, so it may capture anything (borrowed,
//! non-`Send`, non-serializable data), shared copy-on-write and never serialized.

use crate::builder::PoolBuilder;
use crate::call_options::CallOptions;
use crate::engine::registry::BackgroundMain;
use crate::engine::{Engine, Fill, Settings};
use crate::error::{Error, PoolError};
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered};
use crate::lifecycle::{ForksAnywhere, PoolState};
use crate::stats::PoolStats;
use crate::task::Task;
use forkpool_worker::{ChildEnd, ClosureRunner, InitFn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type ClosureMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

/// A pool whose workers are forked holding one closure `Fn(T) -> R`.
///
/// The closure may borrow from the caller and capture non-`Send` data; each worker has its own
/// copy-on-write view of everything as it was at the fork. Replacement workers are forked from
/// the current state of the parent. Items `T` and results `R` travel bincode-encoded.
///
/// The pool is neither `Send` nor `Sync`: its closure may capture what may not leave its
/// thread (an `Rc`, a `&RefCell`), and a fork copies what the closure sees, so only the pool's
/// own thread forks its workers. Its tasks and lazy calls are `Send` all the same (when their
/// results and inputs are): one waited on or iterated on another thread runs on the workers
/// the pool has, and the workers it loses meanwhile are replaced at the pool's next call on
/// its own thread. Should it lose them all, its items left fail with
/// [`ItemError::PoolFailed`](crate::ItemError::PoolFailed) rather than wait for that call.
///
/// Every option of a [`Pool`](crate::Pool) applies: build one with
/// [`PoolBuilder::build_fn`] (timeouts, initializer, recycling, memory limit, crash-loop
/// guard), set a call's chunksize, timeout or progress with [`chunksize`](FnPool::chunksize),
/// [`timeout`](FnPool::timeout) and [`on_progress`](FnPool::on_progress), and end it with
/// [`close`](FnPool::close), [`join`](FnPool::join) or [`terminate`](FnPool::terminate).
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use std::collections::HashMap;
/// use std::rc::Rc;
/// let index: Rc<HashMap<u32, &str>> = Rc::new([(1, "one"), (2, "two")].into());
/// let pool = forkpool::FnPool::new(2, |k: u32| index.get(&k).map(|s| s.to_string()))?;
/// assert_eq!(pool.map([2u32, 3])?, [Some("two".to_string()), None]);
/// # Ok(()) }
/// ```
pub struct FnPool<'env, T, R> {
    pub(crate) shared: PoolState<ClosureMain<'env>>,
    /// The pool's default per-item time limit (its builder's).
    pub(crate) timeout: Option<Duration>,
    _types: PhantomData<fn(T) -> R>,
}

impl<T, R> std::fmt::Debug for FnPool<'_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnPool")
            .field("workers", &self.shared.size())
            .finish_non_exhaustive()
    }
}

impl<'env, T, R> FnPool<'env, T, R>
where
    T: Item,
    R: Serialize + DeserializeOwned,
{
    /// Forks `workers` processes holding `f`, with default settings. For others, finish a
    /// [`Pool::builder`](crate::Pool::builder) with [`build_fn`](PoolBuilder::build_fn).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let base = String::from("item-");
    /// let pool = forkpool::FnPool::new(2, |i: u32| format!("{base}{i}"))?;
    /// assert_eq!(pool.map([7u32])?, ["item-7"]);
    /// # Ok(()) }
    /// ```
    pub fn new<F>(workers: usize, f: F) -> Result<Self, PoolError>
    where
        F: Fn(T) -> R + 'env,
    {
        PoolBuilder::default().workers(workers).build_fn(f)
    }

    /// Forks the workers of a pool with `settings`, each running `init` first if given.
    pub(crate) fn start<F>(
        settings: Settings,
        init: Option<InitFn>,
        timeout: Option<Duration>,
        f: F,
    ) -> Result<Self, PoolError>
    where
        F: Fn(T) -> R + 'env,
    {
        let main: Box<ClosureMain<'env>> = Box::new(move |end| {
            // SAFETY: this closure runs only in a worker this pool forked, whose task channel
            // carries only frames this pool's calls wrote for a `ClosureRunner<T, R>`: items of
            // type `T` passed to `f`, and for reductions the address of a `ClosureEntryFn<T, R>`
            // entry and of the fn pointer it expects (checked against the code mapped here).
            unsafe { forkpool_worker::serve(end, init, &mut ClosureRunner::new(&f)) }
        });
        let shared = PoolState::new(Engine::new(settings)?, main);
        {
            let (mut engine, filled) = shared
                .registry_unchecked()
                .lock_filled(Some(shared.main()), Fill::Missing);
            filled?;
            engine.wait_ready()?;
        }
        Ok(FnPool {
            shared,
            timeout,
            _types: PhantomData,
        })
    }

    /// The configured number of workers.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// assert_eq!(forkpool::FnPool::new(3, |x: u8| x)?.workers(), 3);
    /// # Ok(()) }
    /// ```
    pub fn workers(&self) -> usize {
        self.shared.size()
    }

    /// The process ids of the live workers. Never waits for a running call.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.pids().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Takes no new work, as [`Pool::close`](crate::Pool::close).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(1, |x: u8| x)?;
    /// pool.close();
    /// assert!(pool.map([1u8]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits for the workers to exit and reaps them, as [`Pool::join`](crate::Pool::join)
    /// (after [`close`](FnPool::close) or [`terminate`](FnPool::terminate)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x * 2)?;
    /// assert_eq!(pool.map([4u8])?, [8]);
    /// pool.close();
    /// pool.join()?;
    /// assert!(pool.pids().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        self.shared.join()
    }

    /// Kills every worker now and closes the pool, as [`Pool::terminate`](crate::Pool::terminate).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// pool.terminate();
    /// assert!(pool.pids().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// The pool's calls with its own options (its timeout, the default chunksize).
    pub(crate) fn calls(&self) -> CallOptions<'_, Self> {
        CallOptions::new(self)
    }

    /// A view of the pool whose calls cut their input into chunks of `chunksize` items, as
    /// [`Pool::chunksize`](crate::Pool::chunksize).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x + 1)?;
    /// assert_eq!(pool.chunksize(2).map([1u8, 2, 3])?, [2, 3, 4]);
    /// # Ok(()) }
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> CallOptions<'_, Self> {
        self.calls().chunksize(chunksize)
    }

    /// A view of the pool whose calls stop any item that runs longer than `limit`, as
    /// [`Pool::timeout`](crate::Pool::timeout).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::FnPool::new(1, |s: u64| std::thread::sleep(Duration::from_secs(s)))?;
    /// let error = pool.timeout(Duration::from_millis(100)).apply(60).unwrap_err();
    /// assert!(error.to_string().contains("timed out"));
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self, limit: Duration) -> CallOptions<'_, Self> {
        self.calls().timeout(limit)
    }

    /// A view of the pool whose calls report each finished item to `report`, as
    /// [`CallOptions::on_progress`](crate::CallOptions::on_progress) does for a `Pool`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// let done = Arc::new(AtomicU64::new(0));
    /// let seen = Arc::clone(&done);
    /// let pool = forkpool::FnPool::new(2, |x: u32| x + 1)?;
    /// let v = pool
    ///     .on_progress(move |p: forkpool::Progress| seen.store(p.done, Ordering::Relaxed))
    ///     .map(0..20u32)?;
    /// assert_eq!((v.len(), done.load(Ordering::Relaxed)), (20, 20));
    /// # Ok(()) }
    /// ```
    pub fn on_progress(
        &self,
        report: impl Fn(crate::Progress) + Send + Sync + 'static,
    ) -> CallOptions<'_, Self> {
        self.calls().on_progress(report)
    }

    /// A view of the pool whose calls draw a progress bar on the terminal, as
    /// [`Pool::progress`](crate::Pool::progress) does. Cargo feature `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u32| x * 2)?;
    /// assert_eq!(pool.progress().map(0..100u32)?[99], 198);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(&self) -> CallOptions<'_, Self> {
        self.calls().progress()
    }

    /// [`progress`](FnPool::progress) with `label` in front of each call's bar (see
    /// [`CallOptions::progress_with`]). Cargo feature `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u32| x + 1)?;
    /// assert_eq!(pool.progress_with("increments").map(0..10u32)?[9], 10);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_with(
        &self,
        label: impl Into<std::borrow::Cow<'static, str>>,
    ) -> CallOptions<'_, Self> {
        self.calls().progress_with(label)
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress<'s>(&'s self) -> CallOptions<'s, Self>
    where
        &'s Self: crate::call_options::ProgressFeature,
    {
        self.calls()
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress_with<'s>(
        &'s self,
        _label: impl Into<std::borrow::Cow<'static, str>>,
    ) -> CallOptions<'s, Self>
    where
        &'s Self: crate::call_options::ProgressFeature,
    {
        self.calls()
    }

    /// Applies the closure to every item; results in input order, or the lowest-indexed failure.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: i64| x.abs())?;
    /// assert_eq!(pool.map([-1i64, 2, -3])?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn map<I: IntoIterator<Item = T>>(&self, items: I) -> Result<Vec<R>, Error> {
        self.calls().map(items)
    }

    /// Like [`map`](FnPool::map) with chunks of `chunksize` items (0 is an error): the same as
    /// `pool.chunksize(chunksize).map(items)`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x + 1)?;
    /// assert_eq!(pool.map_chunked([1u8, 2, 3], 2)?, [2, 3, 4]);
    /// # Ok(()) }
    /// ```
    pub fn map_chunked<I: IntoIterator<Item = T>>(
        &self,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>, Error> {
        self.chunksize(chunksize).map(items)
    }

    /// Lazy, ordered outcomes, as [`Pool::imap`](crate::Pool::imap).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u64| x * 3)?;
    /// let v: Vec<u64> = pool.imap(0u64..).take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(v, [0, 3, 6]);
    /// # Ok(()) }
    /// ```
    pub fn imap<I: IntoIterator<Item = T>>(&self, items: I) -> Imap<'_, I::IntoIter, R> {
        self.calls().imap(items)
    }

    /// Lazy outcomes in finish order, as [`Pool::imap_unordered`](crate::Pool::imap_unordered).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u64| x)?;
    /// assert_eq!(pool.imap_unordered(0..10u64).count(), 10);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> ImapUnordered<'_, I::IntoIter, R> {
        self.calls().imap_unordered(items)
    }

    /// Submits one item and returns at once with its [`Task`] (like
    /// [`Pool::submit`](crate::Pool::submit)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let offset = 100;
    /// let pool = forkpool::FnPool::new(2, |x: u32| x + offset)?;
    /// let task = pool.submit(1);
    /// assert_eq!(task.wait()?, 101);
    /// # Ok(()) }
    /// ```
    pub fn submit<'p>(&'p self, item: T) -> Task<'p, R>
    where
        T: 'p,
        R: 'p,
    {
        self.calls().submit(item)
    }

    /// Runs one item and waits for its outcome (like [`Pool::apply`](crate::Pool::apply)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(1, |s: String| s.len())?;
    /// assert_eq!(pool.apply("four".to_string())?, 4);
    /// # Ok(()) }
    /// ```
    pub fn apply(&self, item: T) -> Result<R, Error> {
        self.submit(item).wait()
    }

    /// Maps every item with the closure and folds the results in the workers, chunk by chunk,
    /// with `fold` from a clone of `init`; the parent combines the partials with `combine`, in
    /// input order. See [`Pool::fold`](crate::Pool::fold) for the contract.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let text = "the quick brown fox jumps over the lazy dog";
    /// let words: Vec<&str> = text.split(' ').collect();
    /// let pool = forkpool::FnPool::new(2, |i: usize| words[i].len() as u64)?;
    /// let total = pool.fold(|acc: u64, n: u64| acc + n, 0, |a, b| a + b, 0..words.len())?;
    /// assert_eq!(total, 35);
    /// # Ok(()) }
    /// ```
    pub fn fold<A, I>(
        &self,
        fold: fn(A, R) -> A,
        init: A,
        combine: fn(A, A) -> A,
        items: I,
    ) -> Result<A, Error>
    where
        I: IntoIterator<Item = T>,
        A: Serialize + DeserializeOwned + Clone + 'static,
    {
        self.calls().fold(fold, init, combine, items)
    }

    /// Maps every item with the closure and reduces the results with `reduce`, in the workers
    /// chunk by chunk and then in the parent: see [`Pool::map_reduce`](crate::Pool::map_reduce).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let scale = 3;
    /// let pool = forkpool::FnPool::new(2, |x: u64| x * scale)?;
    /// assert_eq!(pool.map_reduce(u64::max, [4u64, 9, 2])?, Some(27));
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<I>(&self, reduce: fn(R, R) -> R, items: I) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
    {
        self.calls().map_reduce(reduce, items)
    }

    /// Maps every item with the closure, whose results are `(key, value)` pairs, and combines
    /// the values of each key with `reduce`, all in the workers: see
    /// [`Pool::reduce_by_key`](crate::Pool::reduce_by_key).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let stop_words = ["a", "is"];
    /// let pool = forkpool::FnPool::new(2, |line: String| {
    ///     line.split_whitespace()
    ///         .filter(|w| !stop_words.contains(w))
    ///         .map(|w| (w.to_string(), 1u64))
    ///         .collect::<Vec<_>>()
    /// })?;
    /// let lines = ["a rose is a rose", "is a rose"].map(String::from);
    /// let counts = pool.reduce_by_key(|a, b| a + b, lines)?;
    /// assert_eq!(counts["rose"], 3);
    /// assert_eq!(counts.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn reduce_by_key<K, V, I>(
        &self,
        reduce: fn(V, V) -> V,
        items: I,
    ) -> Result<HashMap<K, V>, Error>
    where
        I: IntoIterator<Item = T>,
        R: IntoIterator<Item = (K, V)>,
        K: Hash + Eq + Serialize + DeserializeOwned + Send,
        V: Serialize + DeserializeOwned + Send,
    {
        self.calls().reduce_by_key(reduce, items)
    }
}

impl<T, R> FnPool<'_, T, R>
where
    T: Item,
    R: Serialize + DeserializeOwned,
{
    /// What the pool has done so far, as [`Pool::stats`](crate::Pool::stats).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u64| x * 2)?;
    /// pool.map(0..100u64)?;
    /// assert_eq!(pool.stats()?.workers.iter().map(|w| w.items).sum::<u64>(), 100);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Result<PoolStats, PoolError> {
        self.shared.stats()
    }
}

impl ForksAnywhere for ClosureMain<'_> {
    /// An `FnPool`'s closure is neither `Send` nor `Sync`, and a fork from another thread
    /// would copy what it captured while its owner may be changing it: only the calls made on
    /// the pool (from its owner's thread) fork.
    fn share(main: Box<Self>) -> (Box<Self>, Option<Arc<BackgroundMain>>) {
        (main, None)
    }
}
