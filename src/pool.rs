//! [`Pool`]: worker processes forked once and reused by every call (its options are in
//! `builder.rs`, one call's in `call_options.rs`, one task's in `task.rs`).

use crate::builder::PoolBuilder;
use crate::call_options::CallOptions;
use crate::error::{Error, PoolError};
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered};
use crate::lifecycle::PoolState;
use forkpool_worker::StarArgs;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The function a pool worker runs after fork: the worker loop, calling entries by address.
pub(crate) type PoolMain = dyn Fn(forkpool_worker::ChildEnd) -> i32 + Send + Sync;

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
/// [`TaskError::CodeNotLoaded`](crate::TaskError::CodeNotLoaded); a pool built after the load
/// runs it).
///
/// A closure that captures anything, even a value of a zero-sized type, is a type error
/// (E0308, "closures can only be coerced to `fn` types if they do not capture any variables"),
/// reported on the call by `cargo check`. Pass the data as a context with
/// [`Pool::map_with`], or fork workers that hold the closure itself with
/// [`FnPool::new`](crate::FnPool::new) or [`forkpool::parmap`](crate::parmap).
///
/// A fn item given to `starmap` needs a cast or a closure around it, because the argument
/// types come from the items, which the compiler reads after the function:
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
///
/// A closure that captures a `u64`, given to `map`, `starmap` or `map_with`:
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &offset; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &offset; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &offset; c + x }, [1u64])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// One that captures a zero-sized value whose type has a destructor (a worker would have to
/// invent the value, and drop it):
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &token; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &token; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &token; c + x }, [1u64])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// One that captures a zero-sized token (inventing it in a worker would forge whatever it
/// proves):
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &proof; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &proof; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &proof; c + x }, [1u64])?;
/// # let _ = v;
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
    /// tasks started before it are accepted work: they run to their end, lazy ones pulling
    /// their input as before, and a worker that dies meanwhile is replaced. Once none of them
    /// needs a worker any more (everything sent has been answered and no input is left), the
    /// workers exit on their own; [`join`](Pool::join) then only reaps them. Python's
    /// `Pool.close`. (Replies are read by threads that wait on the pool: work nobody waits on
    /// is noticed as finished at the next wait, or at `join`.)
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

    /// Waits for a running call (on another thread) to finish, then for every worker to exit,
    /// and reaps them (a worker that has not exited half a second after being told to is
    /// killed). Needs [`close`](Pool::close) or [`terminate`](Pool::terminate) first, as in
    /// Python; otherwise returns [`PoolError::NotClosed`].
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
    /// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied), the rest of its items (all of
    /// an input of known length) with [`TaskError::PoolFailed`](crate::TaskError::PoolFailed)
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
    /// Without it, `map`, `starmap` and `map_with` on input of known length use
    /// ceil(len / (4 × workers)) like Python's `Pool.map`, but at most 8,192 items; lazy calls
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
    /// it and all before it are done. Input is pulled only as workers have room, so an endless
    /// input works and memory stays bounded. Dropping the iterator cancels the rest. A panic
    /// in the input's `next` comes in its place, after every earlier item's outcome (see
    /// [`Imap`]).
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
    /// arguments (1 to 6 of them).
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
