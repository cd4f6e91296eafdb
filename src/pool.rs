//! [`Pool`]: worker processes forked once and reused by every call (its options are in
//! `builder.rs`, one call's in `call_options.rs`, one task's in `task.rs`).

use crate::builder::PoolBuilder;
use crate::call::progress::Progress;
use crate::call_options::CallOptions;
#[cfg(not(feature = "progress"))]
use crate::call_options::ProgressFeature;
use crate::engine::registry::BackgroundMain;
use crate::error::{Error, PoolError};
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered};
use crate::lifecycle::{ForksAnywhere, PoolState};
use crate::stats::PoolStats;
use crate::task::Task;
use forkpool_worker::StarArgs;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// The function a pool worker runs after fork: the worker loop, calling entries by address.
/// Unwind-safe, so a `Pool` is (it calls nothing of the function in the parent).
pub(crate) type PoolMain = dyn Fn(forkpool_worker::ChildEnd) -> i32
    + Send
    + Sync
    + std::panic::RefUnwindSafe
    + std::panic::UnwindSafe;

/// The default number of workers: the number of CPUs this process may use.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A pool of worker processes, forked when the pool is built and reused by every call.
///
/// Functions given to a pool are fn pointers: fn items, or closures that capture nothing (see
/// [Functions](#functions) below). Items and results are `Serialize + DeserializeOwned` and
/// travel bincode-encoded.
///
/// Any number of calls and tasks run at once, from any number of threads (a pool is `Sync`):
/// their chunks share the workers fairly, and a call may start while another's iterator is open.
///
/// Dropping the pool asks the workers to exit, waits up to half a second, then kills and reaps
/// them all. [`close`](Pool::close), [`join`](Pool::join) and [`terminate`](Pool::terminate)
/// end it explicitly, as in Python.
///
/// A worker that dies (segfault, abort, `SIGKILL`) costs only the item it was running: the
/// other items of its chunk are sent again (see [`PoolBuilder::pinpoint_crashes`]) and a
/// replacement is forked. An item that runs past [`PoolBuilder::timeout`] or
/// [`CallOptions::timeout`] has its worker stopped and replaced.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let squares: Vec<u64> = pool.map(|x: u64| x * x, 0..10u64)?;
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok(()) }
/// ```
///
/// # Functions
///
/// A pool's functions are fn pointers: `fn(T) -> R` for [`map`](Pool::map), [`imap`](Pool::imap)
/// and [`imap_unordered`](Pool::imap_unordered), `fn(A, B, ..) -> R` for
/// [`starmap`](Pool::starmap), `fn(&C, T) -> R` for [`map_with`](Pool::map_with), `fn()` for
/// [`PoolBuilder::init`]. Fn items and closures that capture nothing coerce to them. The workers
/// were forked before the function was chosen, so what travels is its code address (valid in a
/// forked child) and the encoded items; nothing else of the function exists in the worker. The
/// worker checks that the address points into code loaded at the same place as in the parent
/// (a function of a library loaded after the workers were forked fails its items with
/// [`ItemError::CodeNotLoaded`](crate::ItemError::CodeNotLoaded); a pool built after the load
/// runs it).
///
/// A closure that captures anything, even a zero-sized value, is a type error on the call
/// (E0308, "closures can only be coerced to `fn` types if they do not capture any variables"):
/// pass the data with [`Pool::map_with`], or fork workers that hold the closure itself with
/// [`FnPool::new`](crate::FnPool::new) or [`forkpool::parmap`](crate::parmap).
///
/// A fn item given to `starmap` (`istarmap`, `starsubmit`) needs a cast or a closure around
/// it, because the argument types come from the items, which the compiler reads after the
/// function; the result's type comes from where the result lands (`let sums: Vec<u64>`):
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// fn add(a: u64, b: u64) -> u64 { a + b }
/// let pool = forkpool::Pool::new(1)?;
/// let sums: Vec<u64> = pool.starmap(add as fn(_, _) -> _, [(1u64, 2u64)])?;
/// assert_eq!(sums, [3]);
/// let sums: Vec<u64> = pool.starmap(|a, b| add(a, b), [(1, 2)])?;
/// assert_eq!(sums, [3]);
/// # Ok(()) }
/// ```
pub struct Pool {
    pub(crate) shared: PoolState<PoolMain>,
    /// The pool's default per-item time limit (its builder's).
    pub(crate) timeout: Option<Duration>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `workers` processes with default settings.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.workers(), 2);
    /// # Ok(()) }
    /// ```
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        Pool::builder().workers(workers).build()
    }

    /// A builder for a pool with non-default settings.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(2).build()?;
    /// # drop(pool);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The configured number of workers.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// assert_eq!(forkpool::Pool::new(2)?.workers(), 2);
    /// # Ok(()) }
    /// ```
    pub fn workers(&self) -> usize {
        self.shared.size()
    }

    /// The process ids of the live workers, as of the last fork or death the pool handled.
    /// Never waits for a running call.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let pids = pool.pids();
    /// assert_eq!(pids.len(), 2);
    /// assert!(!pids.contains(&std::process::id()));
    /// # Ok(()) }
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Options for one call: [`CallOptions::chunksize`] and the call methods.
    pub(crate) fn options(&self) -> CallOptions<'_> {
        CallOptions::new(self)
    }

    /// A view of the pool whose calls stop any item that runs longer than `limit` (see
    /// [`PoolBuilder::timeout`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.timeout(Duration::from_secs(30)).map(|x: u8| x + 1, [1u8, 2])?;
    /// assert_eq!(v, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self, limit: Duration) -> CallOptions<'_> {
        self.options().timeout(limit)
    }

    /// Takes no new work: every later call (and task) returns [`PoolError::Closed`]. Calls and
    /// tasks started before it are accepted work: they run to their end, lazy ones going on
    /// pulling their input (until [`join`](Pool::join)), and a worker that dies meanwhile is
    /// replaced. Once none of them needs a worker any more (everything sent has been answered
    /// and no input is left), the workers exit on their own; `join` then only reaps them.
    /// Python's `Pool.close`. (Replies are read by threads that wait on the pool: work nobody
    /// waits on is noticed as finished at the next wait, or at `join`.)
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let task = pool.submit(|x: u8| x + 1, 1);
    /// pool.close();
    /// let err = pool.map(|x: u8| x, [1u8]).unwrap_err();
    /// assert!(matches!(err, forkpool::Error::Pool(forkpool::PoolError::Closed)));
    /// assert_eq!(task.wait()?, 2);
    /// assert!(pool.pids().is_empty()); // nothing accepted remains: the workers exited
    /// # pool.join()?;
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until every item sent to the workers or queued for them has its outcome (tasks
    /// nobody waits on included: `join` drives the pool meanwhile), then tells every worker to
    /// exit, kills one that has not exited half a second later, and reaps them all. Needs
    /// [`close`](Pool::close) or [`terminate`](Pool::terminate) first, as in Python; otherwise
    /// returns [`PoolError::NotClosed`].
    ///
    /// A lazy call ([`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered),
    /// [`istarmap`](Pool::istarmap)) pulls its input on the thread that iterates it, so `join`
    /// cannot wait for input not pulled yet: items of a lazy call still open when `join` begins
    /// that were not sent by then fail with
    /// [`ItemError::PoolFailed`](crate::ItemError::PoolFailed). Finish (or drop) lazy calls
    /// before `join`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.map(|x: u8| x * 2, [4u8])?, [8]);
    /// pool.close();
    /// pool.join()?;
    /// assert!(pool.pids().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        self.shared.join()
    }

    /// Kills every worker now (`SIGKILL` to each worker's process group) and closes the pool.
    /// A call running on another thread ends: items that were running fail with
    /// [`ItemError::WorkerDied`](crate::ItemError::WorkerDied), the rest of its items (all of
    /// an input of known length) with [`ItemError::PoolFailed`](crate::ItemError::PoolFailed)
    /// naming [`PoolError::Closed`]; an input of unknown length ends the call with
    /// [`PoolError::Closed`] itself. Reaps the workers before returning.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let pids = pool.pids();
    /// pool.terminate();
    /// assert!(pool.pids().is_empty());
    /// # let _ = pids;
    /// # Ok(()) }
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// A view of the pool whose calls cut their input into chunks of `chunksize` items.
    /// Chunksize 0 makes every call return [`PoolError::InvalidChunksize`]. Whatever is asked,
    /// a chunk holds at most 1,048,576 items and stops growing once its encoded items take
    /// 16 MiB (a chunk is encoded whole before it is sent: this keeps memory bounded even for
    /// `chunksize(usize::MAX)` over endless input).
    ///
    /// Without it, `map`, `starmap` and `map_with` on input of known length start with
    /// ceil(len / (4 × workers)) like Python's `Pool.map`, but at most 8,192 items, and cut
    /// smaller chunks as the input runs out (Python's share of the items left, down to an
    /// eighth of the first chunk or about 100 ms of worker time, whichever is more), so no
    /// worker idles long behind another's last chunk; lazy calls
    /// (`imap`, `imap_unordered`, `istarmap`) and input of unknown length adapt: chunks start
    /// at one item, so the first outcome comes after a few item-times, and grow while they take
    /// under 2 ms of worker time (shrinking when they take over 20 ms).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v: Vec<u32> = pool.chunksize(3).map(|x: u32| x + 1, 0..10u32)?;
    /// assert_eq!(v, (1..11).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> CallOptions<'_> {
        self.options().chunksize(chunksize)
    }

    /// Applies `f` to every item in parallel and returns the results in input order, or the
    /// failure of the lowest-indexed item that failed (the rest of the work is then cancelled).
    /// `f` is a fn item or a closure that captures nothing (a `fn` pointer: see
    /// [Functions](#functions)); a closure that captures a variable is rustc's E0308 ("closures
    /// can only be coerced to `fn` types if they do not capture any variables"): pass the data
    /// with [`map_with`](Pool::map_with), or use an [`FnPool`](crate::FnPool), whose workers are
    /// forked holding the closure.
    ///
    /// A panic in the input's `next` is resumed once the items before it are done (unless one
    /// of them failed: its error is returned).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.map(square, [1u64, 2, 3])?, [1, 4, 9]);
    /// // A closure needs no annotations: its argument type comes from the items.
    /// assert_eq!(pool.map(|x| x * 2, 0..5)?, [0, 2, 4, 6, 8]);
    /// assert_eq!(pool.map(|x: u64| x * x, 0..4u64)?, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn map<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().map(f, items)
    }

    /// Like [`map`](Pool::map), but lazy: yields each item's outcome in input order as soon as
    /// it and all before it are done. `f` is a fn item or a closure that captures nothing (a
    /// capturing closure: [`FnPool::imap`](crate::FnPool::imap)).
    ///
    /// Input is pulled only as workers have room, so an endless input works and memory stays
    /// bounded. Dropping the iterator cancels the rest. A panic in the input's `next` comes in
    /// its place, after every earlier item's outcome (see [`Imap`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool
    ///     .imap(|x: u64| x * 2, 0u64..)
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> Imap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap(f, items)
    }

    /// Like [`imap`](Pool::imap), but yields outcomes as they finish, in any order. `f` is a fn
    /// item or a closure that captures nothing (a capturing closure:
    /// [`FnPool::imap_unordered`](crate::FnPool::imap_unordered)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut v: Vec<u32> = pool
    ///     .imap_unordered(|x: u32| x + 1, 0..100u32)
    ///     .collect::<Result<_, _>>()?;
    /// v.sort();
    /// assert_eq!(v, (1..101).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> ImapUnordered<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap_unordered(f, items)
    }

    /// Like [`map`](Pool::map), but each item is a tuple whose fields are the function's
    /// arguments (1 to 6 of them). `f` is a closure that captures nothing, or a fn item cast to a
    /// fn pointer (`add as fn(_, _) -> _`: see [Functions](#functions)); a capturing closure
    /// needs [`map_with`](Pool::map_with) (a tuple item) or an [`FnPool`](crate::FnPool).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let sums: Vec<u64> = pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<Args, R, I>(
        &self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().starmap(f, items)
    }

    /// The lazy, ordered form of [`starmap`](Pool::starmap) (Python has no `istarmap`). `f` is
    /// a closure that captures nothing, or a fn item cast to a fn pointer (a capturing closure:
    /// [`FnPool::imap`](crate::FnPool::imap) over tuples).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut products = pool.istarmap(|a: u32, b: u32| a * b, [(2, 3), (4, 5)]);
    /// assert_eq!(products.next().transpose()?, Some(6));
    /// assert_eq!(products.next().transpose()?, Some(20));
    /// # Ok(()) }
    /// ```
    pub fn istarmap<Args, R, I>(
        &self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Imap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().istarmap(f, items)
    }

    /// Like [`map`](Pool::map), with a context value sent once to each worker for this call and
    /// passed by reference to every call of `f`: what a closure would capture goes in the
    /// context, since `f` too is a fn item or a closure that captures nothing (or use an
    /// [`FnPool`](crate::FnPool), whose closure may capture anything).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let offset = 100u64;
    /// let v: Vec<u64> = pool.map_with(&offset, |off: &u64, x: u64| off + x, [1u64, 2])?;
    /// assert_eq!(v, [101, 102]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<C, T, R, I>(
        &self,
        context: &C,
        f: fn(&C, T) -> R,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        C: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        self.options().map_with(context, f, items)
    }
}

/// Progress options.
impl Pool {
    /// A view of the pool whose calls report each finished item to `report` (see
    /// [`CallOptions::on_progress`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// let pool = forkpool::Pool::new(2)?;
    /// let done = Arc::new(AtomicU64::new(0));
    /// let seen = Arc::clone(&done);
    /// pool.on_progress(move |p: forkpool::Progress| seen.store(p.done, Ordering::Relaxed))
    ///     .map(|x: u8| x, 0..50u8)?;
    /// assert_eq!(done.load(Ordering::Relaxed), 50);
    /// # Ok(()) }
    /// ```
    pub fn on_progress(
        &self,
        report: impl Fn(Progress) + Send + Sync + 'static,
    ) -> CallOptions<'_> {
        self.options().on_progress(report)
    }

    /// A view of the pool whose calls draw a progress bar on the terminal, drawn only when
    /// stderr is a terminal (see [`CallOptions::progress`]). Cargo feature `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let total: u64 = pool.progress().imap(|x: u64| x, 0..100u64).map(|r| r.unwrap()).sum();
    /// assert_eq!(total, 4950);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(&self) -> CallOptions<'_> {
        self.options().progress()
    }

    /// [`progress`](Pool::progress) with `label` in front of each call's bar (see
    /// [`CallOptions::progress_with`]). Cargo feature `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let cubes = pool.progress_with("cubes").map(|x: u64| x * x * x, 0..100u64)?;
    /// assert_eq!(cubes[99], 970_299);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_with(
        &self,
        label: impl Into<std::borrow::Cow<'static, str>>,
    ) -> CallOptions<'_> {
        self.options().progress_with(label)
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress<'s>(&'s self) -> CallOptions<'s>
    where
        &'s Self: ProgressFeature,
    {
        self.options()
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress_with<'s>(
        &'s self,
        _label: impl Into<std::borrow::Cow<'static, str>>,
    ) -> CallOptions<'s>
    where
        &'s Self: ProgressFeature,
    {
        self.options()
    }
}

impl Pool {
    /// What the pool has done so far: per worker, items answered, time busy and idle; the
    /// workers that ended and how; forks and replacements; the parent's time encoding items and
    /// reading replies. Printable as a short table. Works after `close` too;
    /// [`PoolError::ForeignProcess`] in a process forked from this one.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(2).max_items_per_worker(10).build()?;
    /// pool.chunksize(1).map(|x: u32| x + 1, 0..40u32)?;
    /// let stats = pool.stats()?;
    /// // 40 tasks at 10 a worker need two replacements; an end is counted once it is reaped
    /// // (after `close` and `join`, every end is).
    /// assert!(stats.replacements >= 2);
    /// assert_eq!(stats.forks, 2 + stats.replacements);
    /// println!("{stats}");
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Result<PoolStats, PoolError> {
        self.shared.stats()
    }
}

impl Pool {
    /// Submits one item to run on a worker and returns at once with its [`Task`] (Python's
    /// `apply_async`, `ProcessPoolExecutor.submit`). Any number of tasks and calls may run at
    /// once, from any number of threads; take the outcome with [`Task::wait`], or take finished
    /// tasks in order with [`as_completed`](crate::as_completed). `f` is a fn item or a closure
    /// that captures nothing (a capturing closure: [`FnPool::submit`](crate::FnPool::submit)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let tasks: Vec<_> = (1..=3u64).map(|n| pool.submit(|n: u64| (1..=n).product::<u64>(), n)).collect();
    /// let factorials: Vec<u64> = tasks.into_iter().map(|t| t.wait()).collect::<Result<_, _>>()?;
    /// assert_eq!(factorials, [1, 2, 6]);
    /// # Ok(()) }
    /// ```
    pub fn submit<'p, T, R>(&'p self, f: fn(T) -> R, item: T) -> Task<'p, R>
    where
        T: Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().submit(f, item)
    }

    /// Submits one tuple of arguments for a function of several (like [`Pool::starmap`]). `f`
    /// is a closure that captures nothing, or a fn item cast to a fn pointer (a capturing
    /// closure: [`FnPool::submit`](crate::FnPool::submit) with a tuple item).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool.starsubmit(|a: String, n: usize| a.repeat(n), ("ab".to_string(), 3));
    /// assert_eq!(task.wait()?, "ababab");
    /// # Ok(()) }
    /// ```
    pub fn starsubmit<'p, Args, R>(
        &'p self,
        f: <Args as StarArgs<R>>::Fn,
        args: Args,
    ) -> Task<'p, R>
    where
        Args: StarArgs<R> + Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().starsubmit(f, args)
    }

    /// Runs one item on a worker and waits for its outcome (Python's `Pool.apply`): a crash,
    /// panic or timeout is this call's error, and the pool lives on. `f` is a fn item or a
    /// closure that captures nothing (a capturing closure:
    /// [`FnPool::apply`](crate::FnPool::apply), or
    /// [`ReturnProcess`](crate::ReturnProcess) for one call).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// assert_eq!(pool.apply(|s: String| s.to_uppercase(), "hi".to_string())?, "HI");
    /// # Ok(()) }
    /// ```
    pub fn apply<'p, T, R>(&'p self, f: fn(T) -> R, item: T) -> Result<R, Error>
    where
        T: Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().apply(f, item)
    }
}

impl Pool {
    /// Folds the items in parallel: each worker folds the items of each chunk it runs with
    /// `fold`, starting from a clone of `init`, and sends back only that chunk's partial result;
    /// the parent combines the partials with `combine`, in input order. No items: `init`.
    /// `fold` and `combine` are fn items or closures that capture nothing (work that needs
    /// captured data goes in an [`FnPool`](crate::FnPool)'s closure, whose results
    /// [`FnPool::fold`](crate::FnPool::fold) folds).
    ///
    /// The same contract as toolz's `fold(binop, seq, default, combine=..)` and rayon's
    /// `fold(..).reduce(..)`: the result equals a serial fold when `init` is an identity of
    /// `combine` (0 for a sum, an empty map for counts) and `combine` is associative; `init`
    /// is folded in once per chunk. Set the chunksize with
    /// [`CallOptions::fold`] (the default is [`map`](Pool::map)'s).
    ///
    /// Like `map`, it returns the failure of the lowest-indexed item that failed (a panic, a
    /// crash, a timeout), and cancels the rest; the other items' partials are discarded. When
    /// partials are big (tables), [`reduce_by_key`](Pool::reduce_by_key) merges them in the
    /// workers instead.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::collections::BTreeMap;
    /// fn count(mut counts: BTreeMap<char, u32>, word: String) -> BTreeMap<char, u32> {
    ///     for c in word.chars() {
    ///         *counts.entry(c).or_default() += 1;
    ///     }
    ///     counts
    /// }
    /// fn merge(mut a: BTreeMap<char, u32>, b: BTreeMap<char, u32>) -> BTreeMap<char, u32> {
    ///     for (c, n) in b {
    ///         *a.entry(c).or_default() += n;
    ///     }
    ///     a
    /// }
    /// let pool = forkpool::Pool::new(2)?;
    /// let words = ["fork", "pool", "fold"].map(String::from);
    /// let counts = pool.fold(count, BTreeMap::new(), merge, words)?;
    /// assert_eq!(counts[&'o'], 4);
    /// # Ok(()) }
    /// ```
    pub fn fold<T, A, I>(
        &self,
        fold: fn(A, T) -> A,
        init: A,
        combine: fn(A, A) -> A,
        items: I,
    ) -> Result<A, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        A: Serialize + DeserializeOwned + Clone + 'static,
    {
        CallOptions::new(self).fold(fold, init, combine, items)
    }

    /// Maps every item with `map` and reduces the results with `reduce`, both in the workers:
    /// each worker reduces the results of each chunk it runs and sends back only that chunk's
    /// partial; the parent reduces the partials, in input order. `None` for no items. `map`
    /// and `reduce` are fn items or closures that capture nothing (a `map` that captures: an
    /// [`FnPool`](crate::FnPool)'s closure, with
    /// [`FnPool::map_reduce`](crate::FnPool::map_reduce)).
    ///
    /// `reduce` must be associative for the result to equal a serial
    /// `items.map(map).reduce(reduce)`. Failures are as for [`map`](Pool::map): the lowest-indexed
    /// item that failed is returned, and the rest cancelled.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let total = pool.map_reduce(|x: u64| x * x, |a, b| a + b, 1..=10u64)?;
    /// assert_eq!(total, Some(385));
    /// assert_eq!(pool.map_reduce(|x: u64| x, |a, b| a + b, Vec::new())?, None);
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<T, R, I>(
        &self,
        map: fn(T) -> R,
        reduce: fn(R, R) -> R,
        items: I,
    ) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        CallOptions::new(self).map_reduce(map, reduce, items)
    }

    /// Maps every item to `(key, value)` pairs with `map` and combines the values of each key
    /// with `reduce`, all in the workers: Spark's `reduceByKey`, toolz's `reduceby`. Each
    /// worker combines the pairs of each chunk it runs into a table, split by key into
    /// partitions; each partition's tables are then merged in one worker, and the parent only
    /// joins the merged partitions into the returned map. A word count is its example: `map`
    /// counts one file's words, `reduce` adds counts. `map` and `reduce` are fn items or
    /// closures that capture nothing (a `map` that captures: an [`FnPool`](crate::FnPool)'s
    /// closure, with [`FnPool::reduce_by_key`](crate::FnPool::reduce_by_key)).
    ///
    /// `reduce` must be associative and commutative: the values of a key are combined in no
    /// particular order. Failures are as for [`map`](Pool::map): the lowest-indexed item that
    /// failed is returned and the rest cancelled; a failure while merging partitions is
    /// [`Error::Combine`]. Set the chunksize with [`CallOptions::reduce_by_key`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::collections::HashMap;
    /// fn words(line: String) -> HashMap<String, u64> {
    ///     let mut counts = HashMap::new();
    ///     for word in line.split_whitespace() {
    ///         *counts.entry(word.to_string()).or_default() += 1;
    ///     }
    ///     counts
    /// }
    /// let pool = forkpool::Pool::new(2)?;
    /// let lines = ["a rose is a rose", "is a rose"].map(String::from);
    /// let counts = pool.reduce_by_key(words, |a, b| a + b, lines)?;
    /// assert_eq!(counts["rose"], 3);
    /// assert_eq!(counts["a"], 3);
    /// assert_eq!(counts.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn reduce_by_key<T, M, K, V, I>(
        &self,
        map: fn(T) -> M,
        reduce: fn(V, V) -> V,
        items: I,
    ) -> Result<HashMap<K, V>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        M: IntoIterator<Item = (K, V)>,
        K: Hash + Eq + Serialize + DeserializeOwned + Send,
        V: Serialize + DeserializeOwned + Send,
    {
        CallOptions::new(self).reduce_by_key(map, reduce, items)
    }
}

impl ForksAnywhere for PoolMain {
    /// A `Pool`'s worker function runs fn pointers on items that travel encoded: a fork from
    /// any thread copies nothing it reads from the caller's memory.
    fn share(main: Box<Self>) -> (Box<Self>, Option<Arc<BackgroundMain>>) {
        let shared: Arc<PoolMain> = Arc::from(main);
        let background = Arc::clone(&shared);
        (Box::new(move |end| shared(end)), Some(background))
    }
}
