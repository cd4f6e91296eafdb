//! Workers that hold a closure: [`FnPool`], [`parmap`], and [`par_eval`].
//!
//! The workers are forked after the closure exists, so it may capture anything (borrowed,
//! non-`Send`, non-serializable data), shared copy-on-write and never serialized.

use crate::call::{Call, CallSpec, Delivery};
use crate::call_progress::{Progress, ProgressSink};
use crate::engine::{Engine, Settings};
use crate::error::{Error, PoolError, TaskError};
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::lifecycle::PoolState;
use crate::pool::default_workers;
use crate::process::ReturnProcess;
use crate::task::Task;
use forkpool_worker::protocol::TaskCode;
use forkpool_worker::{ChildEnd, ClosureRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;

type ClosureMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

/// A pool whose workers are forked holding one closure `Fn(T) -> R`.
///
/// The closure may borrow from the caller and capture non-`Send` data; each worker has its own
/// copy-on-write view of everything as it was at the fork. Replacement workers are forked from
/// the current state of the parent. Items `T` and results `R` travel bincode-encoded.
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
    shared: PoolState<ClosureMain<'env>>,
    _types: PhantomData<fn(T) -> R>,
}

impl<T, R> std::fmt::Debug for FnPool<'_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnPool").finish_non_exhaustive()
    }
}

impl<'env, T, R> FnPool<'env, T, R>
where
    T: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Forks `workers` processes holding `f`.
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
        if workers == 0 {
            return Err(PoolError::NoWorkers { workers: 0 });
        }
        let main: Box<ClosureMain<'env>> = Box::new(move |end| {
            // SAFETY: this closure runs only in a worker this pool forked, whose task channel
            // carries only frames `call` wrote: items of type `T`, which `ClosureRunner`
            // decodes and passes to `f` (it calls no address from the frame).
            unsafe { forkpool_worker::serve(end, None, &mut ClosureRunner::new(&f)) }
        });
        let engine = Engine::new(Settings::new(workers))?;
        let shared = PoolState::new(engine, main);
        shared.hub_unchecked().lock().fill(shared.main())?;
        Ok(FnPool {
            shared,
            _types: PhantomData,
        })
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

    fn call<I>(&self, chunksize: Option<usize>, items: I, delivery: Delivery) -> Stream<'_, I, R>
    where
        I: Iterator<Item = T>,
    {
        self.call_reporting(chunksize, items, delivery, None)
    }

    fn call_reporting<I>(
        &self,
        chunksize: Option<usize>,
        items: I,
        delivery: Delivery,
        progress: Option<ProgressSink>,
    ) -> Stream<'_, I, R>
    where
        I: Iterator<Item = T>,
    {
        let spec = CallSpec {
            code: TaskCode::default(),
            chunksize,
            delivery,
            context: None,
            timeout: None,
            progress,
        };
        Stream::start(self.shared.hub(), self.shared.main(), items, spec)
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
        report: impl Fn(Progress) + Send + Sync + 'static,
    ) -> FnCalls<'_, 'env, T, R> {
        FnCalls {
            pool: self,
            progress: ProgressSink::Callback(Arc::new(report)),
        }
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
    pub fn progress(&self) -> FnCalls<'_, 'env, T, R> {
        FnCalls {
            pool: self,
            progress: ProgressSink::Bar,
        }
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
        let items = items.into_iter();
        let expected = items.size_hint().0;
        Imap::new(self.call(None, items, Delivery::Collected)).into_vec(expected)
    }

    /// Submits one item and returns at once with its [`Task`] (like [`Pool::submit`]).
    ///
    /// [`Pool::submit`]: crate::Pool::submit
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
        let spec = CallSpec {
            code: TaskCode::default(),
            chunksize: Some(1),
            delivery: Delivery::Collected,
            context: None,
            timeout: None,
            progress: None,
        };
        match self.shared.hub() {
            Ok(hub) => {
                let mut call = Call::start(hub, self.shared.main(), Some(item).into_iter(), spec);
                call.start_sending();
                Task::new(Box::new(call))
            }
            Err(error) => Task::failed(error),
        }
    }

    /// Runs one item and waits for its outcome (like [`Pool::apply`]).
    ///
    /// [`Pool::apply`]: crate::Pool::apply
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

    /// Like [`map`](FnPool::map) with chunks of `chunksize` items (0 is an error).
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
        Imap::new(self.call(Some(chunksize), items.into_iter(), Delivery::Collected)).collect()
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
        Imap::new(self.call(None, items.into_iter(), Delivery::InOrder))
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
        ImapUnordered::new(self.call(None, items.into_iter(), Delivery::AsFinished))
    }
}

/// Calls on an [`FnPool`] that report their progress: made by [`FnPool::on_progress`] (and,
/// with the cargo feature `progress`, `FnPool::progress`).
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::FnPool::new(2, |x: u64| x * x)?;
/// let reporting = pool.on_progress(|p: forkpool::Progress| assert!(p.done <= 5));
/// assert_eq!(reporting.clone().imap(0..5u64).count(), 5);
/// assert_eq!(reporting.imap_unordered(0..5u64).count(), 5);
/// # Ok(()) }
/// ```
pub struct FnCalls<'p, 'env, T, R> {
    pool: &'p FnPool<'env, T, R>,
    progress: ProgressSink,
}

impl<T, R> Clone for FnCalls<'_, '_, T, R> {
    fn clone(&self) -> Self {
        FnCalls {
            pool: self.pool,
            progress: self.progress.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for FnCalls<'_, '_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCalls")
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl<'p, T, R> FnCalls<'p, '_, T, R>
where
    T: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// [`FnPool::map`], reporting.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: i8| -x)?;
    /// assert_eq!(pool.on_progress(|_| {}).map([1i8, 2])?, [-1, -2]);
    /// # Ok(()) }
    /// ```
    pub fn map<I: IntoIterator<Item = T>>(self, items: I) -> Result<Vec<R>, Error> {
        let items = items.into_iter();
        let expected = items.size_hint().0;
        let stream =
            self.pool
                .call_reporting(None, items, Delivery::Collected, Some(self.progress));
        Imap::new(stream).into_vec(expected)
    }

    /// [`FnPool::imap`], reporting.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.on_progress(|_| {}).imap(0..3u8).count(), 3);
    /// # Ok(()) }
    /// ```
    pub fn imap<I: IntoIterator<Item = T>>(self, items: I) -> Imap<'p, I::IntoIter, R> {
        let items = items.into_iter();
        Imap::new(
            self.pool
                .call_reporting(None, items, Delivery::InOrder, Some(self.progress)),
        )
    }

    /// [`FnPool::imap_unordered`], reporting.
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
        ImapUnordered::new(self.pool.call_reporting(
            None,
            items,
            Delivery::AsFinished,
            Some(self.progress),
        ))
    }
}

/// Forks workers holding `f`, maps it over `items`, and reaps the workers: one call, no set-up.
///
/// The items are not serialized: each worker reads them from its copy-on-write view of the
/// slice, and only indices travel. Results come back in order, or the lowest-indexed failure.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let words = vec!["apple", "fig", "banana"];
/// let lengths = forkpool::parmap(|w: &&str| w.len(), &words)?;
/// assert_eq!(lengths, [5, 3, 6]);
/// # Ok(()) }
/// ```
pub fn parmap<T, R, F>(f: F, items: &[T]) -> Result<Vec<R>, Error>
where
    F: Fn(&T) -> R,
    R: Serialize + DeserializeOwned,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let workers = default_workers().min(items.len());
    let pool = FnPool::new(workers, |i: usize| f(&items[i]))?;
    pool.map(0..items.len())
}

/// Splits `items` into `workers` contiguous pieces, runs `f` on each piece in its own forked
/// child, and concatenates the outputs in order. The input is never serialized; only outputs
/// travel back.
///
/// A failing piece fails the call with the index of the piece's first item.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let xs: Vec<f64> = (0..1000).map(f64::from).collect();
/// let doubled = forkpool::par_eval(4, &xs, |piece: &[f64]| piece.iter().map(|x| x * 2.0).collect())?;
/// assert_eq!(doubled[999], 1998.0);
/// # Ok(()) }
/// ```
pub fn par_eval<T, R, F>(workers: usize, items: &[T], f: F) -> Result<Vec<R>, Error>
where
    F: Fn(&[T]) -> Vec<R>,
    R: Serialize + DeserializeOwned,
{
    if workers == 0 {
        return Err(PoolError::NoWorkers { workers: 0 }.into());
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let pieces = workers.min(items.len());
    let bound = |i: usize| i * items.len() / pieces;
    let mut children = Vec::with_capacity(pieces);
    for i in 0..pieces {
        let piece = &items[bound(i)..bound(i + 1)];
        let f = &f;
        children.push((bound(i), ReturnProcess::spawn(move || f(piece))?));
    }
    let mut out = Vec::with_capacity(items.len());
    for (start, child) in children {
        match child.join() {
            Ok(mut values) => out.append(&mut values),
            Err(Error::Task(e)) => return Err(e.at_index(start as u64).into()),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl TaskError {
    /// The same error, for the item at `index`.
    pub(crate) fn at_index(mut self, new: u64) -> TaskError {
        match &mut self {
            TaskError::Panicked { index, .. }
            | TaskError::WorkerDied { index, .. }
            | TaskError::TimedOut { index, .. }
            | TaskError::OutOfMemory { index, .. }
            | TaskError::Codec { index, .. }
            | TaskError::Protocol { index, .. }
            | TaskError::CodeNotLoaded { index, .. }
            | TaskError::PoolFailed { index, .. }
            | TaskError::Cancelled { index } => *index = new,
        }
        self
    }
}
