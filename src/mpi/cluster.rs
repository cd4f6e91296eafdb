//! [`ClusterPool`]: the driver's pool-like handle on the nodes, and its per-call options.

use crate::CallOptions;
use crate::StarArgs;
use crate::mpi::driver::Driver;
use crate::mpi::options::ClusterImap;
use crate::mpi::{Error, Node};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{RefCell, RefMut};
use std::marker::PhantomData;
use std::time::Duration;

/// The pool-like handle of the driver (rank 0): the same calls as [`Pool`](crate::Pool), run on
/// the local pools of the other ranks.
///
/// Made by [`init`](crate::mpi::init). One outcome per item, in input order for `map`, `imap`,
/// `starmap` and `map_with`; an item's failure is an [`Error::Task`] naming the item, the rank
/// and host that ran it, and the worker's pid. Chunks are handed out as nodes finish them, so a
/// slow node gets fewer. One call runs at a time: a call made while an iterator of this cluster
/// is running returns [`Error::Busy`].
///
/// A `ClusterPool` stays on the thread that called `init` (MPI is initialized for calls from
/// that thread only), so it is neither `Send` nor `Sync`. Dropping it tells the nodes to stop,
/// waits for their answer, and finalizes MPI; their `init` then returns `Ok(None)`. No wait for
/// a node lasts longer than the [`node_timeout`](crate::mpi::ClusterBuilder::node_timeout): a
/// node that held work and said nothing for that long is lost ([`Error::NodeLost`]), and when
/// one was, dropping the cluster leaves MPI unfinalized (its finalize would wait for that node).
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
    /// `None` once dropping found a node lost: MPI is then left unfinalized.
    universe: Option<mpi::environment::Universe>,
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
            universe: Some(universe),
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

    fn options(&self) -> CallOptions<'_, ClusterPool> {
        CallOptions::with_timeout(self, None)
    }

    /// The driver, for one call; `None` while another call has it.
    pub(crate) fn lend(&self) -> Option<RefMut<'_, Driver>> {
        self.driver.try_borrow_mut().ok()
    }

    /// Cut the input into chunks of `chunksize` items per node message (each node splits a
    /// chunk among its workers). Without it, `map`, `starmap` and `map_with` on input of known
    /// length use ceil(len / (4 × all workers)), and lazy calls adapt the size to about 20 ms
    /// of a node's time per chunk. 0 is refused with
    /// [`PoolError::InvalidChunksize`](crate::PoolError::InvalidChunksize).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let v = cluster.chunksize(1_000).map(|x: u32| x + 1, 0..10_000u32)?;
    /// assert_eq!(v[0], 1);
    /// # Ok(()) }
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> CallOptions<'_, ClusterPool> {
        self.options().chunksize(chunksize)
    }

    /// Stop any item of these calls that runs longer than `limit` on its node: it fails with
    /// [`ItemError::TimedOut`](crate::ItemError::TimedOut), its worker is replaced, the call
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
    pub fn timeout(&self, limit: Duration) -> CallOptions<'_, ClusterPool> {
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
        if !self.driver.get_mut().shut_down() {
            // MPI's finalize would wait for the lost node: leave MPI as it is. (The launcher
            // ends the other ranks when this process exits.)
            std::mem::forget(self.universe.take());
        }
    }
}
