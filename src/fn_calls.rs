//! [`FnCalls`]: one call's chunksize, timeout and progress on an [`FnPool`], and every kind of
//! call made with them (what [`CallOptions`](crate::CallOptions) is to a `Pool`).

use crate::call::progress::{Progress, ProgressSink};
use crate::call::{CallSpec, Delivery};
use crate::error::Error;
use crate::fn_pool::FnPool;
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::reduce::combine_in_order;
use crate::task::Task;
use crate::task::start_task;
use forkpool_worker::protocol::TaskCode;
use forkpool_worker::{code_map, codec, job};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Calls on an [`FnPool`] with options: made by [`FnPool::chunksize`], [`FnPool::timeout`],
/// [`FnPool::on_progress`] (and, with the cargo feature `progress`, `FnPool::progress`); the
/// options combine, and a view is cheap to clone for several calls.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use std::time::Duration;
/// let pool = forkpool::FnPool::new(2, |x: u64| x * x)?;
/// let calls = pool.chunksize(2).timeout(Duration::from_secs(30));
/// assert_eq!(calls.clone().imap(0..5u64).count(), 5);
/// assert_eq!(calls.map([3u64])?, [9]);
/// # Ok(()) }
/// ```
pub struct FnCalls<'p, 'env, T, R> {
    pool: &'p FnPool<'env, T, R>,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    progress: Option<ProgressSink>,
}

impl<T, R> Clone for FnCalls<'_, '_, T, R> {
    fn clone(&self) -> Self {
        FnCalls {
            pool: self.pool,
            chunksize: self.chunksize,
            timeout: self.timeout,
            progress: self.progress.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for FnCalls<'_, '_, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCalls")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl<'p, 'env, T, R> FnCalls<'p, 'env, T, R>
where
    T: Item,
    R: Serialize + DeserializeOwned,
{
    /// The pool's own options: its timeout, the default chunksize, no progress.
    pub(crate) fn new(pool: &'p FnPool<'env, T, R>) -> Self {
        FnCalls {
            pool,
            chunksize: None,
            timeout: pool.timeout,
            progress: None,
        }
    }

    /// Cut the input into chunks of `chunksize` items (see
    /// [`Pool::chunksize`](crate::Pool::chunksize)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.on_progress(|_| {}).chunksize(1).map([7u8])?, [7]);
    /// # Ok(()) }
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Stop any item of these calls that runs longer than `limit` (see
    /// [`PoolBuilder::timeout`](crate::PoolBuilder::timeout)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::FnPool::new(1, |x: u8| x)?;
    /// assert_eq!(pool.chunksize(1).timeout(Duration::from_secs(5)).map([1u8])?, [1]);
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Report each finished item to `report` (see
    /// [`CallOptions::on_progress`](crate::CallOptions::on_progress)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: i8| -x)?;
    /// assert_eq!(pool.chunksize(1).on_progress(|_| {}).map([1i8, 2])?, [-1, -2]);
    /// # Ok(()) }
    /// ```
    pub fn on_progress(mut self, report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(ProgressSink::Callback(Arc::new(report)));
        self
    }

    /// Draw a progress bar on the terminal (see
    /// [`CallOptions::progress`](crate::CallOptions::progress)). Cargo feature `progress`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: u8| x)?;
    /// assert_eq!(pool.chunksize(4).progress().map(0..8u8)?.len(), 8);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.progress = Some(ProgressSink::Bar);
        self
    }

    /// Starts a call of `code` (none: the closure over each item) on `items`.
    fn start<I, Out>(
        self,
        code: TaskCode,
        items: I,
        delivery: Delivery,
        context: Option<Result<Vec<u8>, String>>,
    ) -> Stream<'p, I, Out>
    where
        I: Iterator<Item = T>,
        Out: DeserializeOwned,
    {
        let spec = CallSpec {
            code,
            chunksize: self.chunksize,
            delivery,
            context,
            timeout: self.timeout,
            progress: self.progress,
        };
        let shared = &self.pool.shared;
        Stream::start(shared.hub(), shared.main(), items, spec)
    }

    /// [`FnPool::map`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::FnPool::new(2, |x: i8| -x)?;
    /// assert_eq!(pool.chunksize(1).map([1i8, 2])?, [-1, -2]);
    /// # Ok(()) }
    /// ```
    pub fn map<I: IntoIterator<Item = T>>(self, items: I) -> Result<Vec<R>, Error> {
        let items = items.into_iter();
        let expected = items.size_hint().0;
        let stream = self.start(TaskCode::default(), items, Delivery::Collected, None);
        Imap::new(stream).into_vec(expected)
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
        Imap::new(self.start(TaskCode::default(), items, Delivery::InOrder, None))
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
        ImapUnordered::new(self.start(TaskCode::default(), items, Delivery::AsFinished, None))
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
        let shared = &self.pool.shared;
        let code = TaskCode::default();
        start_task(
            shared.hub(),
            shared.main(),
            code,
            item,
            self.timeout,
            self.progress,
        )
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
        let code = reduction_code(entry, fold as usize as u64);
        let context = codec::encode(&init);
        let partials = self.start(code, items.into_iter(), Delivery::Collected, Some(context));
        Ok(combine_in_order(Imap::new(partials), combine)?.unwrap_or(init))
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
        let code = reduction_code(entry, reduce as usize as u64);
        let partials = self.start(code, items.into_iter(), Delivery::Collected, None);
        combine_in_order(Imap::new(partials), reduce)
    }
}

/// The code of a reduction on an `FnPool`: its entry and the user's function, with the id of
/// the loaded objects holding them (see [`code_map`]).
fn reduction_code(entry: u64, function: u64) -> TaskCode {
    TaskCode {
        entry,
        function,
        code_id: code_map::code_id(entry, function),
    }
}
