//! [`Pool`]: worker processes forked once and reused by every call, and its builder.

use crate::engine::Engine;
use crate::error::{Error, PoolError};
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::schedule::CallSpec;
use crate::shared::Shared;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::job::{self, EntryFn};
use forkpool_worker::{EntryRunner, StarFn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// The function a pool worker runs after fork: the worker loop, calling entries by address.
type PoolMain = dyn Fn(forkpool_worker::ChildEnd) -> i32 + Send + Sync;

/// The default number of workers: the number of CPUs this process may use.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A pool of worker processes, forked when the pool is built and reused by every call.
///
/// Functions given to a pool are fn items or closures that capture nothing: the workers were
/// forked before the function existed, so what travels is the function's code address (valid in
/// a forked child) and the encoded items. Items and results are `Serialize + DeserializeOwned`
/// and travel bincode-encoded.
///
/// One call runs at a time: a second thread's call waits for the first to finish; a second
/// call from the thread whose iterator is still running gets [`PoolError::Busy`].
///
/// Dropping the pool asks the workers to exit, waits up to half a second, then kills and reaps
/// them all.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let squares: Vec<u64> = pool.map(|x: u64| x * x, 0..10u64)?;
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok(()) }
/// ```
///
/// A function that captures is a compile error that points to the alternatives:
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let offset = 10u64;
/// // error: forkpool: a function given to Pool must not capture variables ...
/// //        use Pool::map_with, FnPool::new or forkpool::parmap
/// let shifted: Vec<u64> = pool.map(move |x: u64| x + offset, 0..10u64)?;
/// # Ok(()) }
/// ```
pub struct Pool {
    shared: Shared<PoolMain>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Pool`] before its workers are forked.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::builder().workers(2).window(3).build()?;
/// assert_eq!(pool.workers(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    workers: usize,
    window: usize,
    show_panics: bool,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: default_workers(),
            window: 2,
            show_panics: false,
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
        self.workers = workers;
        self
    }

    /// How many chunks each worker may hold at once (default 2): one running, the next already
    /// queued, so a worker never waits for a round trip to the parent.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).window(4).build()?;
    /// assert_eq!(pool.map(|x: u8| x + 1, [1u8, 2])?, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Also print task panics on the workers' stderr (default: they are only reported in the
    /// item's [`TaskError::Panicked`](crate::TaskError::Panicked)).
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

    /// Forks the workers.
    ///
    /// ```
    /// let err = forkpool::Pool::builder().workers(0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "a pool needs at least one worker, got 0");
    /// ```
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.workers == 0 {
            return Err(PoolError::NoWorkers { workers: 0 });
        }
        if self.window == 0 {
            return Err(PoolError::InvalidWindow { window: 0 });
        }
        let options = ChildOptions {
            ignore_sigint: true,
            show_panics: self.show_panics,
        };
        let main: Box<PoolMain> = Box::new(|end| forkpool_worker::serve(end, &mut EntryRunner));
        let shared = Shared::new(Engine::new(self.workers, self.window, options), main);
        shared.lease()?.fill(shared.main())?;
        Ok(Pool { shared })
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
    fn options(&self) -> CallOptions<'_> {
        CallOptions {
            pool: self,
            chunksize: None,
        }
    }

    /// A view of the pool whose calls cut their input into chunks of `chunksize` items.
    /// Chunksize 0 makes every call return [`PoolError::InvalidChunksize`].
    ///
    /// Without it, input of known length uses ceil(len / (4 × workers)) like Python's
    /// `Pool.map`, and input of unknown length adapts: chunks grow while they take under 2 ms
    /// of worker time and shrink when they take over 20 ms.
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
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.map(square, [1u64, 2, 3])?, [1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn map<F, T, R, I>(&self, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().map(f, items)
    }

    /// Like [`map`](Pool::map), but lazy: yields each item's outcome in input order as soon as
    /// it and all before it are done. Input is pulled only as workers have room, so an endless
    /// input works and memory stays bounded. Dropping the iterator cancels the rest.
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
    pub fn imap<F, T, R, I>(&self, f: F, items: I) -> Imap<'_, I::IntoIter, R>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap(f, items)
    }

    /// Like [`imap`](Pool::imap), but yields outcomes as they finish, in any order.
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
    pub fn imap_unordered<F, T, R, I>(&self, f: F, items: I) -> ImapUnordered<'_, I::IntoIter, R>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap_unordered(f, items)
    }

    /// Like [`map`](Pool::map), but each item is a tuple whose fields are the function's
    /// arguments (1 to 6 of them).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let sums: Vec<u64> = pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<F, Args, R, I>(&self, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: StarFn<Args, Output = R>,
        I: IntoIterator<Item = Args>,
        Args: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().starmap(f, items)
    }

    /// The lazy, ordered form of [`starmap`](Pool::starmap) (Python has no `istarmap`).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut products = pool.istarmap(|a: u32, b: u32| a * b, [(2, 3), (4, 5)]);
    /// assert_eq!(products.next().transpose()?, Some(6));
    /// assert_eq!(products.next().transpose()?, Some(20));
    /// # Ok(()) }
    /// ```
    pub fn istarmap<F, Args, R, I>(&self, f: F, items: I) -> Imap<'_, I::IntoIter, R>
    where
        F: StarFn<Args, Output = R>,
        I: IntoIterator<Item = Args>,
        Args: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().istarmap(f, items)
    }

    /// Like [`map`](Pool::map), with a context value sent once to each worker for this call and
    /// passed by reference to every call of `f`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let offset = 100u64;
    /// let v: Vec<u64> = pool.map_with(&offset, |off: &u64, x: u64| off + x, [1u64, 2])?;
    /// assert_eq!(v, [101, 102]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<F, C, T, R, I>(&self, context: &C, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: Fn(&C, T) -> R,
        C: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().map_with(context, f, items)
    }
}

/// Compile-time proof that a function type captures nothing: only fn items and capture-free
/// closures are zero-sized, and only they can be rebuilt in a worker forked before they existed.
struct CapturesNothing<F>(PhantomData<F>);

impl<F> CapturesNothing<F> {
    const CHECK: () = assert!(
        std::mem::size_of::<F>() == 0,
        "forkpool: a function given to Pool must not capture variables (the workers were forked \
         before it existed). Pass the data with Pool::map_with, or fork workers that hold the \
         closure with FnPool::new or forkpool::parmap."
    );
}

/// The address of `entry`, after checking at compile time that `F` captures nothing.
fn entry_for<F>(entry: EntryFn) -> u64 {
    #[allow(clippy::let_unit_value)]
    let () = CapturesNothing::<F>::CHECK;
    job::entry_address(entry)
}

/// One call's options on a [`Pool`]: made by [`Pool::chunksize`], cheap to copy.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let by_four = pool.chunksize(4);
/// assert_eq!(by_four.map(|x: u8| x * 2, [1u8, 2, 3])?, [2, 4, 6]);
/// assert_eq!(by_four.starmap(|a: u8, b: u8| a - b, [(3u8, 1u8)])?, [2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CallOptions<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
}

impl<'p> CallOptions<'p> {
    /// Cut the input into chunks of `chunksize` items (see [`Pool::chunksize`]).
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

    fn call<I, R>(
        self,
        entry: u64,
        items: I,
        ordered: bool,
        context: Option<Result<Vec<u8>, String>>,
    ) -> Stream<'p, I, R>
    where
        I: Iterator,
        I::Item: Serialize,
        R: DeserializeOwned,
    {
        let spec = CallSpec {
            entry,
            chunksize: self.chunksize,
            ordered,
            context,
        };
        let shared = &self.pool.shared;
        Stream::start(shared.lease(), shared.main(), items, spec)
    }

    /// [`Pool::map`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.chunksize(2).map(|x: i32| -x, [1, 2, 3])?, [-1, -2, -3]);
    /// # Ok(()) }
    /// ```
    pub fn map<F, T, R, I>(self, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap(f, items).collect()
    }

    /// [`Pool::imap`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut it = pool.chunksize(1).imap(|x: u8| x + 1, [1u8, 2]);
    /// assert_eq!(it.next().transpose()?, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn imap<F, T, R, I>(self, f: F, items: I) -> Imap<'p, I::IntoIter, R>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let _ = f;
        let entry = entry_for::<F>(job::plain_entry::<F, T, R>);
        Imap::new(self.call(entry, items.into_iter(), true, None))
    }

    /// [`Pool::imap_unordered`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let n = pool.chunksize(8).imap_unordered(|x: u8| x, 0..50u8).count();
    /// assert_eq!(n, 50);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<F, T, R, I>(self, f: F, items: I) -> ImapUnordered<'p, I::IntoIter, R>
    where
        F: Fn(T) -> R,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let _ = f;
        let entry = entry_for::<F>(job::plain_entry::<F, T, R>);
        ImapUnordered::new(self.call(entry, items.into_iter(), false, None))
    }

    /// [`Pool::starmap`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.chunksize(1).starmap(|a: u8, b: u8, c: u8| a + b + c, [(1u8, 2u8, 3u8)])?;
    /// assert_eq!(v, [6]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<F, Args, R, I>(self, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: StarFn<Args, Output = R>,
        I: IntoIterator<Item = Args>,
        Args: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.istarmap(f, items).collect()
    }

    /// [`Pool::istarmap`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v: Vec<u8> = pool.chunksize(1).istarmap(|a: u8| a, [(5u8,)]).collect::<Result<_, _>>()?;
    /// assert_eq!(v, [5]);
    /// # Ok(()) }
    /// ```
    pub fn istarmap<F, Args, R, I>(self, f: F, items: I) -> Imap<'p, I::IntoIter, R>
    where
        F: StarFn<Args, Output = R>,
        I: IntoIterator<Item = Args>,
        Args: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let _ = f;
        let entry = entry_for::<F>(job::star_entry::<F, Args, R>);
        Imap::new(self.call(entry, items.into_iter(), true, None))
    }

    /// [`Pool::map_with`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let words = vec!["a".to_string(), "bb".to_string()];
    /// let v = pool.chunksize(1).map_with(&words, |w: &Vec<String>, i: usize| w[i].len(), [0usize, 1])?;
    /// assert_eq!(v, [1, 2]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<F, C, T, R, I>(self, context: &C, f: F, items: I) -> Result<Vec<R>, Error>
    where
        F: Fn(&C, T) -> R,
        C: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let _ = f;
        let entry = entry_for::<F>(job::context_entry::<F, C, T, R>);
        let mut encoded = Vec::new();
        let context = forkpool_worker::codec::encode_into(&mut encoded, context).map(|()| encoded);
        Imap::new(self.call(entry, items.into_iter(), true, Some(context))).collect()
    }
}
