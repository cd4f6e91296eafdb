//! [`ClusterPool`]: the driver's pool-like handle on the nodes, and its per-call options.

use crate::mpi::call::{Call, Spec};
use crate::mpi::entry::{self, EntryFn};
use crate::mpi::identity;
use crate::mpi::transport::Transport;
use crate::mpi::wire::{ToDriver, ToNode};
use crate::mpi::{Error, Node};
use crate::{PoolError, StarArgs};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

/// The driver's side of the cluster, lent to one call at a time.
pub(crate) struct Driver {
    pub transport: Transport,
    pub nodes: Vec<Node>,
    /// Chunks each node holds, of any call (a cancelled call's chunks still count until their
    /// node answers).
    pub held: Vec<usize>,
    pub next_call: u64,
    pub host: String,
}

/// What a call runs: the offsets of its entry and of the user's function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Code {
    pub entry: u64,
    pub function: u64,
}

impl Code {
    fn new(entry: EntryFn, function: u64) -> Result<Code, Error> {
        Ok(Code {
            entry: identity::offset_of(entry as usize as u64)?,
            function: identity::offset_of(function)?,
        })
    }
}

/// The pool-like handle of the driver (rank 0): the same calls as [`Pool`](crate::Pool), run on
/// the local pools of the other ranks.
///
/// Made by [`init`](crate::mpi::init). One outcome per item, in input order for `map`, `imap`,
/// `starmap` and `map_with`; an item's failure is an [`Error::Task`] naming the item, the rank
/// and host that ran it, and the worker's pid. Chunks are handed out as nodes finish them, so a
/// slow node gets fewer. One call runs at a time: a call made while an iterator of this cluster
/// is running returns [`PoolError::Busy`].
///
/// A `ClusterPool` stays on the thread that called `init` (MPI is initialized for calls from
/// that thread only), so it is neither `Send` nor `Sync`. Dropping it tells the nodes to stop,
/// waits for their answer, and finalizes MPI; their `init` then returns `Ok(None)`.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// fn square(x: u64) -> u64 { x * x }
///
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// let squares: Vec<u64> = cluster.map(square, 0..100_000u64)?;
/// assert_eq!(squares[3], 9);
/// # Ok(()) }
/// ```
pub struct ClusterPool {
    // Dropped in this order: the driver (its transport frees the communicator), then MPI.
    driver: RefCell<Driver>,
    nodes: Vec<Node>,
    _universe: mpi::environment::Universe,
    _one_thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPool")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl ClusterPool {
    pub(crate) fn new(driver: Driver, universe: mpi::environment::Universe) -> Self {
        ClusterPool {
            nodes: driver.nodes.clone(),
            driver: RefCell::new(driver),
            _universe: universe,
            _one_thread: PhantomData,
        }
    }

    /// The ranks that run items: rank 1 and up, with host, pid and local workers.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.nodes()[0].rank, 1);
    /// # Ok(()) }
    /// ```
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The local workers of all nodes together.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// println!("{} workers on {} nodes", cluster.workers(), cluster.nodes().len());
    /// # Ok(()) }
    /// ```
    pub fn workers(&self) -> usize {
        self.nodes.iter().map(|n| n.workers).sum()
    }

    fn options(&self) -> ClusterCall<'_> {
        ClusterCall {
            cluster: self,
            chunksize: None,
            timeout: None,
        }
    }

    /// Cut the input into chunks of `chunksize` items per node message (each node splits a
    /// chunk among its workers). Without it, `map`, `starmap` and `map_with` on input of known
    /// length use ceil(len / (4 × all workers)), and lazy calls adapt the size to about 20 ms
    /// of a node's time per chunk. 0 is refused with [`PoolError::InvalidChunksize`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let v = cluster.chunksize(1_000).map(|x: u32| x + 1, 0..10_000u32)?;
    /// assert_eq!(v[0], 1);
    /// # Ok(()) }
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> ClusterCall<'_> {
        self.options().chunksize(chunksize)
    }

    /// Stop any item of these calls that runs longer than `limit` on its node: it fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut), its worker is replaced, the call
    /// goes on (as [`CallOptions::timeout`](crate::CallOptions::timeout)). Without it, the
    /// nodes' pools apply their own default ([`ClusterBuilder::pool`](crate::mpi::ClusterBuilder::pool)).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// use std::time::Duration;
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let sleepy = |s: u64| std::thread::sleep(Duration::from_secs(s));
    /// let outcomes: Vec<_> = cluster.timeout(Duration::from_millis(300)).imap(sleepy, [0, 60]).collect();
    /// assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("timed out"));
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self, limit: Duration) -> ClusterCall<'_> {
        self.options().timeout(limit)
    }

    /// Applies `f` to every item on the nodes; the results in input order, or the first
    /// failure in input order (the rest of the call is cancelled).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.map(|x: u64| x * x, 0..4u64)?, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn map<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().map(f, items)
    }

    /// The lazy form of [`map`](ClusterPool::map): one `Result` per item, in input order.
    /// Input is pulled only as nodes have room, so an endless input works in bounded memory;
    /// dropping the iterator cancels the rest.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let firsts: Vec<u64> = cluster.imap(|x: u64| x * 2, 0u64..).take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> ClusterImap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap(f, items)
    }

    /// Like [`imap`](ClusterPool::imap), in the order outcomes arrive.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let total: u64 = cluster.imap_unordered(|x: u64| x, 1..=100u64).map(|r| r.unwrap()).sum();
    /// assert_eq!(total, 5050);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> ClusterImap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap_unordered(f, items)
    }

    /// Like [`map`](ClusterPool::map), each item a tuple of the function's arguments (1 to 6).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<Args, R, I>(
        &self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().starmap(f, items)
    }

    /// Like [`map`](ClusterPool::map), with a context sent once to each node for this call
    /// (and read once by each of its workers) and passed by reference to every call of `f`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let v = cluster.map_with(&100u64, |off: &u64, x: u64| off + x, [1u64, 2])?;
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
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().map_with(context, f, items)
    }
}

impl Drop for ClusterPool {
    fn drop(&mut self) {
        let driver = self.driver.get_mut();
        let ranks: Vec<i32> = driver.nodes.iter().map(|n| n.rank).collect();
        let mut waiting = 0;
        for &rank in &ranks {
            if driver.transport.send(rank, &ToNode::Shutdown).is_ok() {
                waiting += 1;
            }
        }
        // Replies of cancelled chunks may come first: every node ends with `Bye`.
        while waiting > 0 {
            if let (_, Ok(ToDriver::Bye)) = driver.transport.receive::<ToDriver>() {
                waiting -= 1;
            }
        }
        driver.transport.flush();
    }
}

/// One call's options on a [`ClusterPool`]: made by [`ClusterPool::chunksize`] and
/// [`ClusterPool::timeout`], cheap to copy.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// use std::time::Duration;
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// let options = cluster.chunksize(64).timeout(Duration::from_secs(5));
/// assert_eq!(options.map(|x: u8| x, [1u8, 2])?, [1, 2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClusterCall<'c> {
    cluster: &'c ClusterPool,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl<'c> ClusterCall<'c> {
    /// See [`ClusterPool::chunksize`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let err = cluster.chunksize(0).map(|x: u8| x, [1u8]).unwrap_err();
    /// assert_eq!(err.to_string(), "chunksize must be at least 1, got 0");
    /// # Ok(()) }
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// See [`ClusterPool::timeout`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// use std::time::Duration;
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let err = cluster.timeout(Duration::ZERO).map(|x: u8| x, [1u8]).unwrap_err();
    /// assert_eq!(err.to_string(), "a timeout must be more than zero, got 0ns");
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    fn call<I, R>(
        self,
        entry: EntryFn,
        function: u64,
        items: I,
        ordered: bool,
        collected: bool,
        context: Option<Vec<u8>>,
    ) -> ClusterImap<'c, I, R>
    where
        I: Iterator,
        I::Item: Serialize,
        R: DeserializeOwned,
    {
        let started = || -> Result<_, Error> {
            if let Some(chunksize @ 0) = self.chunksize {
                return Err(PoolError::InvalidChunksize { chunksize }.into());
            }
            if let Some(timeout) = self.timeout.filter(|t| t.is_zero()) {
                return Err(PoolError::InvalidTimeout { timeout }.into());
            }
            let code = Code::new(entry, function)?;
            let driver = self
                .cluster
                .driver
                .try_borrow_mut()
                .map_err(|_| PoolError::Busy)?;
            Ok((driver, code))
        };
        ClusterImap {
            state: match started() {
                Ok((driver, code)) => {
                    let spec = Spec {
                        code,
                        chunksize: self.chunksize,
                        timeout: self.timeout,
                        ordered,
                        collected,
                        context,
                    };
                    State::Running(Box::new(Call::start(driver, items, spec)))
                }
                Err(error) => State::Failed(Some(error)),
            },
        }
    }

    /// [`ClusterPool::map`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.chunksize(2).map(|x: i32| -x, [1, 2, 3])?, [-1, -2, -3]);
    /// # Ok(()) }
    /// ```
    pub fn map<T, R, I>(self, f: fn(T) -> R, items: I) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            true,
            true,
            None,
        )
        .collect()
    }

    /// [`ClusterPool::imap`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let mut it = cluster.chunksize(1).imap(|x: u8| x + 1, [1u8, 2]);
    /// assert_eq!(it.next().transpose()?, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(self, f: fn(T) -> R, items: I) -> ClusterImap<'c, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            true,
            false,
            None,
        )
    }

    /// [`ClusterPool::imap_unordered`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.chunksize(8).imap_unordered(|x: u8| x, 0..50u8).count(), 50);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(self, f: fn(T) -> R, items: I) -> ClusterImap<'c, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            false,
            false,
            None,
        )
    }

    /// [`ClusterPool::starmap`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let v = cluster.chunksize(1).starmap(|a: u8, b: u8, c: u8| a + b + c, [(1u8, 2u8, 3u8)])?;
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
        Args: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::star::<Args, R> as EntryFn;
        self.call(entry, Args::address(f), items.into_iter(), true, true, None)
            .collect()
    }

    /// [`ClusterPool::map_with`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let words = vec!["a".to_string(), "bb".to_string()];
    /// let v = cluster.chunksize(1).map_with(&words, |w: &Vec<String>, i: usize| w[i].len(), [0usize, 1])?;
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
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let context = crate::mpi::codec::encode(context).map_err(PoolError::Context)?;
        let entry = entry::with_context::<C, T, R> as EntryFn;
        let items = items.into_iter();
        self.call(entry, f as usize as u64, items, true, true, Some(context))
            .collect()
    }
}

enum State<'c, I, R> {
    Running(Box<Call<'c, I, R>>),
    Failed(Option<Error>),
}

/// The outcomes of a lazy cluster call: made by [`ClusterPool::imap`] (input order) and
/// [`ClusterPool::imap_unordered`] (arrival order).
///
/// One `Result` per input item, so one failing item does not end the stream. A failure of a
/// node's pool ends it: the items without an outcome fail with
/// [`TaskError::PoolFailed`](crate::TaskError::PoolFailed), and an input of unknown length ends
/// with [`Error::NodePool`]. Dropping the iterator cancels the rest of its work.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// for (i, r) in cluster.imap(|x: u32| x * 10, 0..3u32).enumerate() {
///     assert_eq!(r?, i as u32 * 10);
/// }
/// # Ok(()) }
/// ```
pub struct ClusterImap<'c, I, R> {
    state: State<'c, I, R>,
}

impl<I, R> Iterator for ClusterImap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.state {
            State::Running(call) => call.next_outcome(),
            State::Failed(error) => error.take().map(Err),
        }
    }
}
