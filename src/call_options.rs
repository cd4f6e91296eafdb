//! [`CallOptions`]: one call's chunksize, timeout and progress on a pool ([`Pool`],
//! [`FnPool`], or `mpi::ClusterPool` with the feature `mpi`), and every
//! kind of call made with them. The options are written once for every pool; the calls, once
//! per kind of pool (a `Pool` and a cluster take a fn pointer per call, an `FnPool` runs its
//! closure; the cluster's are in `mpi/options.rs`).

use crate::call::progress::{Progress, ProgressSink};
use crate::call::{CallSpec, Delivery};
use crate::engine::CallMain;
use crate::engine::registry::Registry;
use crate::error::{Error, PoolError};
use crate::fn_pool::FnPool;
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::pool::Pool;
use crate::reduce::{
    by_partition, combine_error, combine_in_order, join_partitions, keyed_partitions,
};
use crate::task::Task;
use crate::task::start_task;
use forkpool_worker::StarArgs;
use forkpool_worker::code_map;
use forkpool_worker::codec;
use forkpool_worker::job::{self, Encoded, EntryFn, KeyedCode, ReduceCode};
use forkpool_worker::protocol::CallCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// What a call runs: `entry` (instantiated for the call's types) and the user's fn pointer
/// at `function`, by address, with the id of the loaded objects holding them (see
/// [`code_map`]).
pub(crate) fn call_code(entry: EntryFn, function: u64) -> CallCode {
    call_code_at(job::entry_address(entry), function)
}

/// [`call_code`] of an entry given by address.
fn call_code_at(entry: u64, function: u64) -> CallCode {
    CallCode {
        entry,
        function,
        code_id: code_map::code_id(entry, function),
    }
}

/// Merges each partition's pieces into one table in the workers (one item per partition of
/// more than one piece, running `combine`): the merged tables, encoded, one per partition.
fn merge_partitions<P: LocalPool + ?Sized>(
    pool: &P,
    timeout: Option<Duration>,
    combine: CallCode,
    pieces: Vec<Vec<Encoded>>,
) -> Result<Vec<Encoded>, Error> {
    let (many, single): (Vec<_>, Vec<_>) = pieces.into_iter().partition(|p| p.len() > 1);
    let mut merged: Vec<Encoded> = single.into_iter().flatten().collect();
    if !many.is_empty() {
        let step = CallOptions {
            pool,
            chunksize: Some(1),
            timeout,
            progress: None,
        };
        let tables: Vec<Encoded> = step
            .collect(combine, many.into_iter(), None)
            .map_err(combine_error)?;
        merged.extend(tables);
    }
    Ok(merged)
}

/// The bound of `progress` and `progress_with` when the cargo feature `progress` is off:
/// implemented by nothing, so a call of them fails to compile with a message that names the
/// feature (instead of "no method named `progress`").
#[cfg(not(feature = "progress"))]
mod feature {
    #[diagnostic::on_unimplemented(
        message = "`progress()` and `progress_with(..)` need the cargo feature `progress` of forkpool",
        label = "a method of the feature `progress`",
        note = "turn it on: `features = [\"progress\"]` in forkpool's line of Cargo.toml, or `cargo add forkpool --features progress`; `on_progress(callback)` needs no feature"
    )]
    pub trait ProgressFeature {}
}
#[cfg(not(feature = "progress"))]
pub(crate) use feature::ProgressFeature;

/// Sealed (a public trait in a private module: nameable and implementable only in this crate),
/// so its methods, which name the engine's crate-private types, are not callable outside it.
#[allow(private_interfaces)]
mod local {
    use super::*;

    /// A pool of this process: its engine, the function its workers run, and its default
    /// per-item time limit. Implemented by [`Pool`] and [`FnPool`].
    pub trait LocalPool {
        /// The engine to start a call on (an error once the pool is closed, or in another
        /// process), and the workers' function, to fork replacements with.
        fn engine(&self) -> (Result<&Registry, PoolError>, CallMain<'_>);
        /// The pool's default per-item time limit (its builder's).
        fn default_timeout(&self) -> Option<Duration>;
        /// How many workers the pool keeps.
        fn worker_count(&self) -> usize;
    }
}
use local::LocalPool;

#[allow(private_interfaces)]
impl LocalPool for Pool {
    fn engine(&self) -> (Result<&Registry, PoolError>, CallMain<'_>) {
        (
            self.shared.registry(),
            CallMain::Anywhere(self.shared.main()),
        )
    }
    fn default_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn worker_count(&self) -> usize {
        self.shared.size()
    }
}

#[allow(private_interfaces)]
impl<T, R> LocalPool for FnPool<'_, T, R> {
    fn engine(&self) -> (Result<&Registry, PoolError>, CallMain<'_>) {
        (
            self.shared.registry(),
            CallMain::owner_thread(self.shared.main()),
        )
    }
    fn default_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn worker_count(&self) -> usize {
        self.shared.size()
    }
}

/// One call's options on a pool: made by a pool's `chunksize`, `timeout` or `on_progress`
/// ([`Pool::chunksize`], [`FnPool::chunksize`], ...); the options combine, and a value is cheap
/// to clone for several calls. `P` is the pool: [`Pool`] (the default), [`FnPool`], or
/// `mpi::ClusterPool` (feature `mpi`). The terminal progress bar, `progress()` and
/// `progress_with(label)`, needs the cargo feature `progress`: without it, a call of either is
/// a compile error that names the feature.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let by_four = pool.chunksize(4);
/// assert_eq!(by_four.clone().map(|x: u8| x * 2, [1u8, 2, 3])?, [2, 4, 6]);
/// assert_eq!(by_four.starmap(|a: u8, b: u8| a - b, [(3u8, 1u8)])?, [2]);
///
/// let squares = forkpool::FnPool::new(2, |x: u64| x * x)?;
/// assert_eq!(squares.chunksize(2).map([3u64])?, [9]);
/// # Ok(()) }
/// ```
#[must_use = "call options do nothing until a call is made with them (`map`, `imap`, `submit`, ...)"]
pub struct CallOptions<'p, P: ?Sized = Pool> {
    pool: &'p P,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    progress: Option<ProgressSink>,
}

/// Calls on an [`FnPool`] with options: [`CallOptions`] of an `FnPool`, under the name it had
/// before every pool shared one options type.
///
/// ```
/// # #![allow(deprecated)]
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::FnPool::new(2, |x: u8| x + 1)?;
/// let calls: forkpool::FnCalls<'_, '_, u8, u8> = pool.chunksize(1);
/// assert_eq!(calls.map([1u8])?, [2]);
/// # Ok(()) }
/// ```
#[deprecated(since = "0.2.0", note = "use `CallOptions<'p, FnPool<'env, T, R>>`")]
pub type FnCalls<'p, 'env, T, R> = CallOptions<'p, FnPool<'env, T, R>>;

impl<P: ?Sized> Clone for CallOptions<'_, P> {
    fn clone(&self) -> Self {
        CallOptions {
            pool: self.pool,
            chunksize: self.chunksize,
            timeout: self.timeout,
            progress: self.progress.clone(),
        }
    }
}

impl<P: ?Sized> std::fmt::Debug for CallOptions<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl<'p, P: ?Sized> CallOptions<'p, P> {
    /// Options for calls on `pool`: per-item limit `timeout` (the pool's default), the default
    /// chunksize, no progress report.
    pub(crate) fn with_timeout(pool: &'p P, timeout: Option<Duration>) -> Self {
        CallOptions {
            pool,
            chunksize: None,
            timeout,
            progress: None,
        }
    }

    /// The pool these options are for.
    #[cfg(feature = "mpi")]
    pub(crate) fn pool(&self) -> &'p P {
        self.pool
    }

    /// The chunksize set, if any.
    #[cfg(feature = "mpi")]
    pub(crate) fn chosen_chunksize(&self) -> Option<usize> {
        self.chunksize
    }

    /// The per-item time limit set, if any.
    #[cfg(feature = "mpi")]
    pub(crate) fn chosen_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Cut the input into chunks of `chunksize` items: one message per chunk to a worker
    /// (see [`Pool::chunksize`] for the default). 0 makes the call return
    /// [`PoolError::InvalidChunksize`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.chunksize(100).chunksize(1).map(|x: u8| x, [7u8])?;
    /// assert_eq!(v, [7]);
    /// # Ok(()) }
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Stop any item of these calls that runs longer than `limit`: it fails with
    /// [`ItemError::TimedOut`](crate::ItemError::TimedOut), its worker is replaced, the call
    /// goes on (see [`PoolBuilder::timeout`](crate::PoolBuilder::timeout) for the pool's
    /// default). A zero limit makes the call return [`PoolError::InvalidTimeout`];
    /// `Duration::MAX` means no limit.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let outcomes: Vec<_> = pool
    ///     .chunksize(1)
    ///     .timeout(Duration::from_millis(200))
    ///     .imap(|s: u64| { std::thread::sleep(Duration::from_secs(s)); s }, [0, 30, 0])
    ///     .collect();
    /// assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    /// assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("timed out"));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

impl<'p, P: LocalPool + ?Sized> CallOptions<'p, P> {
    /// The pool's own options: its timeout, the default chunksize, no progress report.
    pub(crate) fn new(pool: &'p P) -> Self {
        CallOptions::with_timeout(pool, pool.default_timeout())
    }

    /// Calls `report` once per finished item, results and errors alike, in the order items
    /// finish, with how many are done and how many there are (when the input states its
    /// length). It runs on whichever thread drives the pool at that moment: keep it short.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool
    ///     .on_progress(|p: forkpool::Progress| eprintln!("{} of {:?}", p.done, p.total))
    ///     .map(|x: u32| x + 1, 0..4u32)?;
    /// assert_eq!(v, [1, 2, 3, 4]);
    /// # Ok(()) }
    /// ```
    pub fn on_progress(mut self, report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(ProgressSink::Callback(Arc::new(report)));
        self
    }

    /// Draws a progress bar on the terminal (stderr) for each call made with these options,
    /// counted per item (not per chunk): "312/1,000 items" with the rate ("35.9/s") and the time
    /// left; a spinner with a count ("1 item", "2 items") when the input does not state its
    /// length. [`progress_with`](Self::progress_with) puts a label in front. Cargo feature
    /// `progress`.
    ///
    /// The bar is drawn only when stderr is a terminal: into a file, a pipe or a CI log nothing
    /// is written, so logs do not fill with redrawn bars. That is the default on purpose (it is
    /// indicatif's); the call runs the same either way. For a report that goes anywhere, use
    /// [`on_progress`](Self::on_progress).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.progress().map(|x: u32| x * 2, 0..1000u32)?;
    /// assert_eq!(v[999], 1998);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.progress = Some(ProgressSink::Bar(None));
        self
    }

    /// [`progress`](Self::progress), with `label` in front of each call's bar, to tell the bars
    /// of several calls apart ("squares ████░░░░ 312/1,000 items ..."). Cargo feature
    /// `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let squares = pool.chunksize(10).progress_with("squares").map(|x: u64| x * x, 0..500u64)?;
    /// let files = format!("{} files", 3);
    /// let sizes = pool.progress_with(files).map(|n: u64| n * 1024, [1u64, 2, 3])?;
    /// assert_eq!((squares[499], sizes[2]), (249_001, 3072));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_with(mut self, label: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.progress = Some(ProgressSink::Bar(Some(label.into())));
        self
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress(self) -> Self
    where
        Self: ProgressFeature,
    {
        self
    }

    /// Without the cargo feature `progress`: a compile error that names the feature.
    #[cfg(not(feature = "progress"))]
    #[doc(hidden)]
    pub fn progress_with(self, _label: impl Into<std::borrow::Cow<'static, str>>) -> Self
    where
        Self: ProgressFeature,
    {
        self
    }

    /// Starts a call of `code` on `items`.
    fn stream<I, R>(
        self,
        code: CallCode,
        items: I,
        delivery: Delivery,
        context: Option<Result<Vec<u8>, String>>,
    ) -> Stream<'p, I, R>
    where
        I: Iterator,
        I::Item: Serialize + DeserializeOwned,
        R: DeserializeOwned,
    {
        let spec = CallSpec {
            code,
            chunksize: self.chunksize,
            delivery,
            context,
            timeout: self.timeout,
            progress: self.progress,
        };
        let (registry, main) = self.pool.engine();
        Stream::start(registry, main, items, spec)
    }

    /// Starts a call of `code` on `items` whose outcomes are collected in input order.
    fn collect<I, R>(
        self,
        code: CallCode,
        items: I,
        context: Option<Result<Vec<u8>, String>>,
    ) -> Result<Vec<R>, Error>
    where
        I: Iterator,
        I::Item: Serialize + DeserializeOwned,
        R: DeserializeOwned,
    {
        let expected = items.size_hint().0;
        Imap::new(self.stream(code, items, Delivery::Collected, context)).into_vec(expected)
    }

    /// Runs a fold (`code`, whose context is `init`) over `items`: each chunk's partial comes
    /// back, and they are combined with `combine` in input order; `init` for no items.
    fn fold_chunks<I, A>(
        self,
        code: CallCode,
        items: I,
        init: A,
        combine: fn(A, A) -> A,
    ) -> Result<A, Error>
    where
        I: Iterator,
        I::Item: Serialize + DeserializeOwned,
        A: Serialize + DeserializeOwned,
    {
        let context = codec::encode(&init);
        let partials = self.stream(code, items, Delivery::Collected, Some(context));
        Ok(combine_in_order(Imap::new(partials), combine)?.unwrap_or(init))
    }

    /// Runs a keyed reduction (`code`, whose reduce function is at `reduce`) over `items`:
    /// each chunk's table comes back split into partitions, each partition's tables are merged
    /// in the workers by `combine` (a keyed combine entry), and the parent joins the merged
    /// partitions.
    fn keyed_chunks<I, K, V>(
        self,
        code: CallCode,
        reduce: u64,
        combine: CallCode,
        items: I,
    ) -> Result<HashMap<K, V>, Error>
    where
        I: Iterator,
        I::Item: Serialize + DeserializeOwned,
        K: Hash + Eq + DeserializeOwned + Send,
        V: DeserializeOwned + Send,
    {
        let partitions = keyed_partitions(self.pool.worker_count());
        let keyed = KeyedCode {
            reduce: ReduceCode {
                function: reduce,
                code_id: code_map::code_id(code.entry, reduce),
            },
            partitions,
        };
        let (pool, timeout) = (self.pool, self.timeout);
        let context = Some(codec::encode(&keyed));
        let tables: Vec<Option<Vec<Encoded>>> = self.collect(code, items, context)?;
        let pieces = by_partition(tables.into_iter().flatten(), partitions)?;
        let merged = merge_partitions(pool, timeout, combine, pieces)?;
        join_partitions(merged)
    }

    /// Starts a task: one item of `code`.
    fn task<T, R>(self, code: CallCode, item: T) -> Task<'p, R>
    where
        T: Item + 'p,
        R: DeserializeOwned + 'p,
    {
        let (registry, main) = self.pool.engine();
        start_task(registry, main, code, item, self.timeout, self.progress)
    }
}

impl<'p> CallOptions<'p, Pool> {
    /// [`Pool::map`] with these options. `f` is a fn item or a closure that captures nothing;
    /// a closure that captures a variable (rustc's E0308) needs [`map_with`](Self::map_with)
    /// or an [`FnPool`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.chunksize(2).map(|x: i32| -x, [1, 2, 3])?, [-1, -2, -3]);
    /// # Ok(()) }
    /// ```
    pub fn map<T, R, I>(self, f: fn(T) -> R, items: I) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::plain_entry::<T, R>, f as usize as u64);
        self.collect(code, items.into_iter(), None)
    }

    /// [`Pool::imap`] with these options. `f` is a fn item or a closure that captures nothing
    /// (a capturing closure: [`FnPool::imap`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut it = pool.chunksize(1).imap(|x: u8| x + 1, [1u8, 2]);
    /// assert_eq!(it.next().transpose()?, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(self, f: fn(T) -> R, items: I) -> Imap<'p, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::plain_entry::<T, R>, f as usize as u64);
        Imap::new(self.stream(code, items.into_iter(), Delivery::InOrder, None))
    }

    /// [`Pool::imap_unordered`] with these options. `f` is a fn item or a closure that
    /// captures nothing (a capturing closure: [`FnPool::imap_unordered`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let n = pool.chunksize(8).imap_unordered(|x: u8| x, 0..50u8).count();
    /// assert_eq!(n, 50);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(
        self,
        f: fn(T) -> R,
        items: I,
    ) -> ImapUnordered<'p, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::plain_entry::<T, R>, f as usize as u64);
        ImapUnordered::new(self.stream(code, items.into_iter(), Delivery::AsFinished, None))
    }

    /// [`Pool::starmap`] with these options. `f` is a closure that captures nothing, or a fn
    /// item cast to a fn pointer (`add as fn(_, _) -> _`); a capturing closure needs
    /// [`map_with`](Self::map_with) or an [`FnPool`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.chunksize(1).starmap(|a: u8, b: u8, c: u8| a + b + c, [(1u8, 2u8, 3u8)])?;
    /// assert_eq!(v, [6]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<Args, R, I>(
        self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::star_entry::<Args, R>, Args::address(f));
        self.collect(code, items.into_iter(), None)
    }

    /// [`Pool::istarmap`] with these options. `f` is a closure that captures nothing, or a fn
    /// item cast to a fn pointer (a capturing closure: [`FnPool::imap`] over tuples).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v: Vec<u8> = pool.chunksize(1).istarmap(|a: u8| a, [(5u8,)]).collect::<Result<_, _>>()?;
    /// assert_eq!(v, [5]);
    /// # Ok(()) }
    /// ```
    pub fn istarmap<Args, R, I>(
        self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Imap<'p, I::IntoIter, R>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::star_entry::<Args, R>, Args::address(f));
        Imap::new(self.stream(code, items.into_iter(), Delivery::InOrder, None))
    }

    /// [`Pool::map_with`] with these options: what a closure would capture goes in `context`,
    /// since `f` too is a fn item or a closure that captures nothing (or use an [`FnPool`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let words = vec!["a".to_string(), "bb".to_string()];
    /// let v = pool.chunksize(1).map_with(&words, |w: &Vec<String>, i: usize| w[i].len(), [0usize, 1])?;
    /// assert_eq!(v, [1, 2]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<C, T, R, I>(
        self,
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
        let code = call_code(job::context_entry::<C, T, R>, f as usize as u64);
        let context = forkpool_worker::codec::encode(context);
        self.collect(code, items.into_iter(), Some(context))
    }

    /// Submits one item: [`Pool::submit`] with these options (a per-task timeout, say). `f`
    /// is a fn item or a closure that captures nothing (a capturing closure:
    /// [`FnPool::submit`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool
    ///     .timeout(Duration::from_millis(100))
    ///     .submit(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60);
    /// let error = task.wait().unwrap_err();
    /// assert!(error.to_string().contains("timed out"));
    /// # Ok(()) }
    /// ```
    pub fn submit<T, R>(self, f: fn(T) -> R, item: T) -> Task<'p, R>
    where
        T: Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        let code = call_code(job::plain_entry::<T, R>, f as usize as u64);
        self.task(code, item)
    }

    /// Submits one tuple of arguments: [`Pool::starsubmit`] with these options. `f` is a
    /// closure that captures nothing, or a fn item cast to a fn pointer (a capturing closure:
    /// [`FnPool::submit`] with a tuple item).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool.chunksize(1).starsubmit(|a: u32, b: u32| a.pow(b), (2, 10));
    /// assert_eq!(task.wait()?, 1024);
    /// # Ok(()) }
    /// ```
    pub fn starsubmit<Args, R>(self, f: <Args as StarArgs<R>>::Fn, args: Args) -> Task<'p, R>
    where
        Args: StarArgs<R> + Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        let code = call_code(job::star_entry::<Args, R>, Args::address(f));
        self.task(code, args)
    }

    /// Submits one item and waits for its outcome: [`Pool::apply`] with these options. `f` is
    /// a fn item or a closure that captures nothing (a capturing closure: [`FnPool::apply`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// assert_eq!(pool.chunksize(1).apply(|x: u8| x + 1, 41)?, 42);
    /// # Ok(()) }
    /// ```
    pub fn apply<T, R>(self, f: fn(T) -> R, item: T) -> Result<R, Error>
    where
        T: Item + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.submit(f, item).wait()
    }

    /// [`Pool::fold`] with these options (the chunksize sets how many items each partial
    /// covers). `fold` and `combine` are fn items or closures that capture nothing (work that
    /// needs captured data goes in an [`FnPool`]'s closure: [`FnPool::fold`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let sum = pool.chunksize(10).fold(|acc: u64, x: u64| acc + x, 0, |a, b| a + b, 1..=100u64)?;
    /// assert_eq!(sum, 5050);
    /// # Ok(()) }
    /// ```
    pub fn fold<T, A, I>(
        self,
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
        let code = call_code(job::fold_entry::<A, T>, fold as usize as u64);
        self.fold_chunks(code, items.into_iter(), init, combine)
    }

    /// [`Pool::map_reduce`] with these options. `map` and `reduce` are fn items or closures
    /// that capture nothing (a `map` that captures: an [`FnPool`]'s closure, with
    /// [`FnPool::map_reduce`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let longest = pool
    ///     .chunksize(2)
    ///     .map_reduce(|w: String| w.len(), usize::max, ["a", "abc", "ab"].map(String::from))?;
    /// assert_eq!(longest, Some(3));
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<T, R, I>(
        self,
        map: fn(T) -> R,
        reduce: fn(R, R) -> R,
        items: I,
    ) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = call_code(job::reduce_entry::<T, R>, map as usize as u64);
        let reduce_code = ReduceCode {
            function: reduce as usize as u64,
            code_id: code_map::code_id(code.entry, reduce as usize as u64),
        };
        let context = codec::encode(&reduce_code);
        let items = items.into_iter();
        let partials = self.stream(code, items, Delivery::Collected, Some(context));
        combine_in_order(Imap::new(partials), reduce)
    }

    /// [`Pool::reduce_by_key`] with these options (the chunksize sets how many items each
    /// worker's table covers before it is split and sent). `map` and `reduce` are fn items or
    /// closures that capture nothing (a `map` that captures: an [`FnPool`]'s closure, with
    /// [`FnPool::reduce_by_key`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let parity = pool
    ///     .chunksize(3)
    ///     .reduce_by_key(|x: u32| [(x % 2, 1u32)], |a, b| a + b, 0..10u32)?;
    /// assert_eq!(parity[&0], 5);
    /// # Ok(()) }
    /// ```
    pub fn reduce_by_key<T, M, K, V, I>(
        self,
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
        let code = call_code(job::keyed_entry::<T, M, K, V>, map as usize as u64);
        let combine = call_code(job::keyed_combine_entry::<K, V>, reduce as usize as u64);
        self.keyed_chunks(code, reduce as usize as u64, combine, items.into_iter())
    }
}

impl<'p, 'env, T, R> CallOptions<'p, FnPool<'env, T, R>>
where
    T: Item,
    R: Serialize + DeserializeOwned,
{
    /// [`FnPool::map`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: i8| -x)?;
    /// assert_eq!(pool.chunksize(1).map([1i8, 2])?, [-1, -2]);
    /// # Ok(()) }
    /// ```
    pub fn map<I: IntoIterator<Item = T>>(self, items: I) -> Result<Vec<R>, Error> {
        self.collect(CallCode::default(), items.into_iter(), None)
    }

    /// [`FnPool::imap`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.on_progress(|_| {}).imap(0..3u8).count(), 3);
    /// # Ok(()) }
    /// ```
    pub fn imap<I: IntoIterator<Item = T>>(self, items: I) -> Imap<'p, I::IntoIter, R> {
        let items = items.into_iter();
        Imap::new(self.stream(CallCode::default(), items, Delivery::InOrder, None))
    }

    /// [`FnPool::imap_unordered`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.on_progress(|_| {}).imap_unordered(0..3u8).count(), 3);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<I: IntoIterator<Item = T>>(
        self,
        items: I,
    ) -> ImapUnordered<'p, I::IntoIter, R> {
        let items = items.into_iter();
        ImapUnordered::new(self.stream(CallCode::default(), items, Delivery::AsFinished, None))
    }

    /// [`FnPool::submit`] with these options (a per-task timeout, say; the chunksize does not
    /// apply to one item).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::FnPool::new(1, |s: u64| std::thread::sleep(Duration::from_secs(s)))?;
    /// let task = pool.timeout(Duration::from_millis(100)).submit(60);
    /// assert!(task.wait().unwrap_err().to_string().contains("timed out"));
    /// # Ok(()) }
    /// ```
    pub fn submit(self, item: T) -> Task<'p, R>
    where
        T: 'p,
        R: 'p,
    {
        self.task(CallCode::default(), item)
    }

    /// [`FnPool::apply`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(1, |x: u8| x + 1)?;
    /// assert_eq!(pool.chunksize(1).apply(41)?, 42);
    /// # Ok(()) }
    /// ```
    pub fn apply(self, item: T) -> Result<R, Error>
    where
        T: 'p,
        R: 'p,
    {
        self.submit(item).wait()
    }

    /// [`FnPool::fold`] with these options (the chunksize sets how many items each partial
    /// covers).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u64| x * 2)?;
    /// let sum = pool.chunksize(5).fold(|acc: u64, x: u64| acc + x, 0, |a, b| a + b, 1..=10u64)?;
    /// assert_eq!(sum, 110);
    /// # Ok(()) }
    /// ```
    pub fn fold<A, I>(
        self,
        fold: fn(A, R) -> A,
        init: A,
        combine: fn(A, A) -> A,
        items: I,
    ) -> Result<A, Error>
    where
        I: IntoIterator<Item = T>,
        A: Serialize + DeserializeOwned + Clone + 'static,
    {
        let entry = job::closure_entry_address(job::closure_fold_entry::<T, R, A>);
        let code = call_code_at(entry, fold as usize as u64);
        self.fold_chunks(code, items.into_iter(), init, combine)
    }

    /// [`FnPool::map_reduce`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u64| x + 1)?;
    /// assert_eq!(pool.chunksize(2).map_reduce(|a, b| a * b, [1u64, 2, 3])?, Some(24));
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<I>(self, reduce: fn(R, R) -> R, items: I) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
    {
        let entry = job::closure_entry_address(job::closure_reduce_entry::<T, R>);
        let code = call_code_at(entry, reduce as usize as u64);
        let partials = self.stream(code, items.into_iter(), Delivery::Collected, None);
        combine_in_order(Imap::new(partials), reduce)
    }

    /// [`FnPool::reduce_by_key`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u32| [(x % 3, 1u32)])?;
    /// let counts = pool.chunksize(4).reduce_by_key(|a, b| a + b, 0..30u32)?;
    /// assert_eq!(counts[&2], 10);
    /// # Ok(()) }
    /// ```
    pub fn reduce_by_key<K, V, I>(
        self,
        reduce: fn(V, V) -> V,
        items: I,
    ) -> Result<HashMap<K, V>, Error>
    where
        I: IntoIterator<Item = T>,
        R: IntoIterator<Item = (K, V)>,
        K: Hash + Eq + Serialize + DeserializeOwned + Send,
        V: Serialize + DeserializeOwned + Send,
    {
        let entry = job::closure_entry_address(job::closure_keyed_entry::<T, R, K, V>);
        let code = call_code_at(entry, reduce as usize as u64);
        let entry = job::closure_entry_address(job::closure_keyed_combine_entry::<T, R, K, V>);
        let combine = call_code_at(entry, reduce as usize as u64);
        self.keyed_chunks(code, reduce as usize as u64, combine, items.into_iter())
    }
}
