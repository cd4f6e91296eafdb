//! [`CallOptions`]: one call's chunksize and timeout, and every kind of call made with them.

use crate::call::progress::{Progress, ProgressSink};
use crate::call::{CallSpec, Delivery};
use crate::error::Error;
use crate::item::Item;
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::pool::Pool;
use crate::reduce::combine_in_order;
use crate::task::Task;
use crate::task::start_task;
use forkpool_worker::StarArgs;
use forkpool_worker::code_map;
use forkpool_worker::codec;
use forkpool_worker::job::{self, EntryFn, ReduceCode};
use forkpool_worker::protocol::TaskCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// What a call runs: `entry` (instantiated for the call's types) and the user's fn pointer
/// at `function`, by address, with the id of the loaded objects holding them (see
/// [`code_map`]).
pub(crate) fn task_code(entry: EntryFn, function: u64) -> TaskCode {
    let entry = job::entry_address(entry);
    TaskCode {
        entry,
        function,
        code_id: code_map::code_id(entry, function),
    }
}

/// One call's options on a [`Pool`]: made by [`Pool::chunksize`], [`Pool::timeout`] or
/// [`Pool::on_progress`]; cheap to clone for several calls.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let by_four = pool.chunksize(4);
/// assert_eq!(by_four.clone().map(|x: u8| x * 2, [1u8, 2, 3])?, [2, 4, 6]);
/// assert_eq!(by_four.starmap(|a: u8, b: u8| a - b, [(3u8, 1u8)])?, [2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CallOptions<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    progress: Option<ProgressSink>,
}

impl<'p> CallOptions<'p> {
    /// The pool's own options: its timeout, the default chunksize.
    pub(crate) fn new(pool: &'p Pool) -> CallOptions<'p> {
        CallOptions {
            pool,
            chunksize: None,
            timeout: pool.timeout,
            progress: None,
        }
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
    /// counted per item (not per chunk), with the rate and the time left; a spinner with a
    /// count when the input does not state its length. Cargo feature `progress`.
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
        self.progress = Some(ProgressSink::Bar);
        self
    }

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

    /// Stop any item of these calls that runs longer than `limit` (see
    /// [`PoolBuilder::timeout`](crate::PoolBuilder::timeout)). A zero limit makes the call return
    /// [`PoolError::InvalidTimeout`](crate::PoolError::InvalidTimeout); `Duration::MAX` means no limit.
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

    pub(crate) fn call<I, R>(
        self,
        code: TaskCode,
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
        let shared = &self.pool.shared;
        Stream::start(shared.hub(), shared.main(), items, spec)
    }

    /// [`Pool::map`] with these options.
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
        let code = task_code(job::plain_entry::<T, R>, f as usize as u64);
        let items = items.into_iter();
        let expected = items.size_hint().0;
        Imap::new(self.call(code, items, Delivery::Collected, None)).into_vec(expected)
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
    pub fn imap<T, R, I>(self, f: fn(T) -> R, items: I) -> Imap<'p, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = task_code(job::plain_entry::<T, R>, f as usize as u64);
        Imap::new(self.call(code, items.into_iter(), Delivery::InOrder, None))
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
        let code = task_code(job::plain_entry::<T, R>, f as usize as u64);
        ImapUnordered::new(self.call(code, items.into_iter(), Delivery::AsFinished, None))
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
        let code = task_code(job::star_entry::<Args, R>, Args::address(f));
        let items = items.into_iter();
        let expected = items.size_hint().0;
        Imap::new(self.call(code, items, Delivery::Collected, None)).into_vec(expected)
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
        let code = task_code(job::star_entry::<Args, R>, Args::address(f));
        Imap::new(self.call(code, items.into_iter(), Delivery::InOrder, None))
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
        let code = task_code(job::context_entry::<C, T, R>, f as usize as u64);
        let context = forkpool_worker::codec::encode(context);
        let delivery = Delivery::Collected;
        let items = items.into_iter();
        let expected = items.size_hint().0;
        Imap::new(self.call(code, items, delivery, Some(context))).into_vec(expected)
    }

    /// Submits one item: [`Pool::submit`] with these options (a per-task timeout, say).
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
        let code = task_code(job::plain_entry::<T, R>, f as usize as u64);
        self.task(code, item)
    }

    /// Submits one tuple of arguments: [`Pool::starsubmit`] with these options.
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
        let code = task_code(job::star_entry::<Args, R>, Args::address(f));
        self.task(code, args)
    }

    /// Submits one item and waits for its outcome: [`Pool::apply`] with these options.
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

    fn task<T, R>(self, code: TaskCode, item: T) -> Task<'p, R>
    where
        T: Item + 'p,
        R: DeserializeOwned + 'p,
    {
        let shared = &self.pool.shared;
        start_task(
            shared.hub(),
            shared.main(),
            code,
            item,
            self.timeout,
            self.progress,
        )
    }
}

impl<'p> CallOptions<'p> {
    /// [`Pool::fold`] with these options (the chunksize sets how many items each partial
    /// covers).
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
        let code = task_code(job::fold_entry::<A, T>, fold as usize as u64);
        let context = codec::encode(&init);
        let items = items.into_iter();
        let partials = self.call(code, items, Delivery::Collected, Some(context));
        Ok(combine_in_order(Imap::new(partials), combine)?.unwrap_or(init))
    }

    /// [`Pool::map_reduce`] with these options.
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
        let code = task_code(job::reduce_entry::<T, R>, map as usize as u64);
        let reduce_code = ReduceCode {
            function: reduce as usize as u64,
            code_id: code_map::code_id(code.entry, reduce as usize as u64),
        };
        let context = codec::encode(&reduce_code);
        let items = items.into_iter();
        let partials = self.call(code, items, Delivery::Collected, Some(context));
        combine_in_order(Imap::new(partials), reduce)
    }
}
