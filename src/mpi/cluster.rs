//! [`ClusterPool`]: the driver's pool-like handle on the nodes, and its per-call options.

use crate::StarArgs;
use crate::mpi::entry::EntryFn;
use crate::mpi::identity;
use crate::mpi::options::{ClusterCall, ClusterImap};
use crate::mpi::transport::Transport;
use crate::mpi::wire::{ToDriver, ToNode};
use crate::mpi::{Error, Node};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{RefCell, RefMut};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// The driver's side of the cluster, lent to one call at a time.
///
/// Every wait for a node has an end: a node that holds work (or owes a goodbye) and says
/// nothing for `patience` on the driver's clock is lost. A node running a chunk says `Alive`
/// every quarter of it, so only a node that is stopped, hung or cut off is lost, however long
/// its items take.
pub(crate) struct Driver {
    pub transport: Transport,
    pub nodes: Vec<Node>,
    /// Chunks each node holds, of any call (a cancelled call's chunks still count until their
    /// node answers).
    pub held: Vec<usize>,
    /// When the driver last heard from each node, or handed work to it while it held none.
    heard: Vec<Instant>,
    /// Nodes owed a `Bye` (the driver is shutting down).
    owes_bye: Vec<bool>,
    /// Nodes that said nothing for `patience` while they held work: they get nothing more,
    /// and what they send is ignored.
    lost: Vec<bool>,
    /// The longest a node that holds work may say nothing (`ClusterBuilder::node_timeout`).
    pub patience: Duration,
    pub next_call: u64,
    pub host: String,
}

/// What a wait for the nodes brought.
pub(crate) enum Event {
    /// A message of the node at this index.
    Message(usize, Result<ToDriver, String>),
    /// These nodes said nothing for the patience while they held work: they are lost now.
    Lost(Vec<usize>),
}

impl Driver {
    pub(crate) fn new(
        transport: Transport,
        nodes: Vec<Node>,
        patience: Duration,
        host: String,
    ) -> Driver {
        let count = nodes.len();
        Driver {
            transport,
            nodes,
            held: vec![0; count],
            heard: vec![Instant::now(); count],
            owes_bye: vec![false; count],
            lost: vec![false; count],
            patience,
            next_call: 1,
            host,
        }
    }

    /// Whether node `node` still answers (it gets work).
    pub fn is_live(&self, node: usize) -> bool {
        !self.lost[node]
    }

    /// Whether any node still answers.
    pub fn any_live(&self) -> bool {
        self.lost.iter().any(|&lost| !lost)
    }

    /// The first lost node, if any.
    pub fn first_lost(&self) -> Option<usize> {
        self.lost.iter().position(|&lost| lost)
    }

    /// The error of lost node `node`.
    pub fn lost_error(&self, node: usize) -> Error {
        let Node {
            rank, host, pid, ..
        } = self.nodes[node].clone();
        Error::NodeLost {
            rank,
            host,
            pid,
            after: self.patience,
        }
    }

    /// Sends `message` to node `node` (nothing goes to a lost node).
    pub fn send(&mut self, node: usize, message: &ToNode) -> Result<(), String> {
        if self.lost[node] {
            return Ok(());
        }
        self.transport.send(self.nodes[node].rank, message)
    }

    /// Node `node` was handed a chunk: from now on it must be heard from.
    pub fn gave(&mut self, node: usize) {
        if self.held[node] == 0 {
            self.heard[node] = Instant::now();
        }
        self.held[node] += 1;
    }

    /// Node `node` answered a chunk.
    pub fn answered(&mut self, node: usize) {
        self.held[node] = self.held[node].saturating_sub(1);
    }

    /// Whether the driver waits for word from node `node`.
    fn owes(&self, node: usize) -> bool {
        !self.lost[node] && (self.held[node] > 0 || self.owes_bye[node])
    }

    /// Waits for the next message of a node, or until a node that owes one has said nothing
    /// for the patience. Only called while some node owes a message.
    pub fn wait(&mut self) -> Event {
        loop {
            let due = (0..self.nodes.len())
                .filter(|&n| self.owes(n))
                .filter_map(|n| self.heard[n].checked_add(self.patience))
                .min();
            match self.transport.receive_until::<ToDriver>(due) {
                Some((from, message)) => {
                    let Some(node) = self.nodes.iter().position(|n| n.rank == from) else {
                        continue;
                    };
                    if self.lost[node] {
                        continue; // a lost node that woke up: its chunks failed already
                    }
                    self.heard[node] = Instant::now();
                    return Event::Message(node, message);
                }
                None => {
                    let now = Instant::now();
                    let gone: Vec<usize> = (0..self.nodes.len())
                        .filter(|&n| self.owes(n))
                        .filter(|&n| {
                            self.heard[n]
                                .checked_add(self.patience)
                                .is_some_and(|due| now >= due)
                        })
                        .collect();
                    for &node in &gone {
                        self.lost[node] = true;
                        self.owes_bye[node] = false;
                        self.transport.forsake(self.nodes[node].rank);
                    }
                    if !gone.is_empty() {
                        return Event::Lost(gone);
                    }
                }
            }
        }
    }

    /// Tells every node that answers to stop and waits for each one's `Bye` (or its loss);
    /// whether every node answered.
    fn shut_down(&mut self) -> bool {
        for node in 0..self.nodes.len() {
            if self.is_live(node) && self.send(node, &ToNode::Shutdown).is_ok() {
                self.owes_bye[node] = true;
                if self.held[node] == 0 {
                    self.heard[node] = Instant::now();
                }
            }
        }
        // Replies of cancelled chunks may come first: every node ends with `Bye`.
        while self.owes_bye.iter().any(|&owes| owes) {
            if let Event::Message(node, Ok(ToDriver::Bye)) = self.wait() {
                self.owes_bye[node] = false;
            }
        }
        self.first_lost().is_none()
    }
}

/// What a call runs: the offsets of its entry and of the user's function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Code {
    pub entry: u64,
    pub function: u64,
}

impl Code {
    pub(crate) fn new(entry: EntryFn, function: u64) -> Result<Code, Error> {
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

    fn options(&self) -> ClusterCall<'_> {
        ClusterCall::new(self)
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
        if !self.driver.get_mut().shut_down() {
            // MPI's finalize would wait for the lost node: leave MPI as it is. (The launcher
            // ends the other ranks when this process exits.)
            std::mem::forget(self.universe.take());
        }
    }
}
