//! More than one machine: the same calls as [`Pool`] across the ranks of an MPI job,
//! each rank running items in its own local pool (cargo feature `mpi`).
//!
//! Run the same binary under `mpirun -n R` (or `srun`). [`init`], called once at the start of
//! `main`, forks this rank's local workers, initializes MPI, and checks that every rank runs the
//! identical executable. Rank 0 then gets a [`ClusterPool`]: `map`, `imap`, `imap_unordered`,
//! `starmap` and `map_with`, with chunksize and timeouts, and the outcome semantics of `Pool`
//! (one outcome per item, in order for `map` and `imap`, failures naming the item, rank, host
//! and worker pid). Every other rank is a node: `init` serves the driver's chunks in the local
//! pool until the driver drops its `ClusterPool`, then returns `Ok(None)`.
//!
//! ```no_run
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), forkpool::mpi::Error> {
//!     let Some(cluster) = forkpool::mpi::init()? else {
//!         return Ok(()); // a node: it served until the driver was done
//!     };
//!     let squares: Vec<u64> = cluster.map(square, 0..1_000_000u64)?;
//!     println!("{} squares from {} nodes", squares.len(), cluster.nodes().len());
//!     Ok(())
//! }
//! ```
//!
//! How it is built, and why (see also `docs/mpi.md`):
//! - **No user code in a rank process.** MPI is fail-stop: a rank that dies ends the job. A
//!   node's process only moves bytes; decoding an item, the function and encoding its result
//!   run in the node's forked workers, so a segfault costs an item, never a rank. Rank 0 runs
//!   no items.
//! - **Workers are forked before `MPI_Init`.** Open MPI warns that a fork after `MPI_Init` can
//!   corrupt memory registered with the network (RDMA). A pool forks its first workers in
//!   `init`, before MPI starts; a replacement for a crashed worker is forked later, from a rank
//!   in which MPI runs, and is safe because a worker never calls MPI, never returns into the
//!   program (it runs only the worker loop) and leaves with `_exit`, so no MPI handler or
//!   finalizer runs in it; the memory it shares copy-on-write with its rank is never written
//!   by it where MPI registered it (Linux copies pinned pages at fork since 5.9).
//! - **Functions travel as offsets.** Each rank loads the executable at its own random base, so
//!   a function pointer is sent as its offset from a fixed function of this crate, and only
//!   for code of the executable ([`Error::NotInExecutable`] otherwise); at start-up rank 0
//!   compares a hash of every rank's executable with its own ([`Error::NotIdentical`]).
//! - **Dynamic chunks.** A node holds at most two chunks (one running, one waiting) and gets
//!   the next when it answers, so faster nodes get more; input is pulled only to fill a free
//!   slot, so an endless input works in bounded memory.
//! - **A lost node ends the job.** MPI ends the whole job when a rank dies; nothing here can
//!   outlive that. `docs/mpi.md` says what a redelivering work queue would add.
//! - **A silent node is a timeout, not a hang.** Every wait of the driver for a node has an
//!   end ([`ClusterBuilder::node_timeout`]): a node running a chunk says it is alive every
//!   quarter of it, however long its items take, so one that holds work and says nothing that
//!   long is stopped, hung or cut off. Its items fail, it gets no more work, the call goes on
//!   with the others ([`Error::NodeLost`]).
//! - **No rank trusts another's bytes.** Every message, item, context and result is decoded
//!   by the worker crate's guarded codec, as in the local pool: a lying length is an error,
//!   not an allocation, and a value nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) is an
//!   error, not a stack overflow when it is dropped.

mod call;
mod cluster;
mod driver;
mod entry;
mod error;
mod guard;
mod identity;
mod node;
mod options;
mod transport;
mod wire;

pub use cluster::ClusterPool;
pub use error::{Error, Node};
#[allow(deprecated)]
pub use options::ClusterCall;
pub use options::ClusterImap;

use crate::{Pool, PoolBuilder, PoolError};
use driver::Driver;
use guard::Guard;
use identity::Identity;
use std::time::{Duration, Instant};
use transport::Transport;
use wire::{Hello, ToDriver, ToNode, WirePoolError};

/// Starts this rank with default local pools (one worker per CPU): rank 0 gets the
/// [`ClusterPool`], every other rank serves until the driver is done and gets `None`. Call it
/// once, at the start of `main`, before anything starts threads that matter or touches MPI.
/// [`ClusterBuilder`] configures the local pools.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// let lengths = cluster.map(|s: String| s.len(), ["a".to_string(), "bb".to_string()])?;
/// assert_eq!(lengths, [1, 2]);
/// # Ok(()) }
/// ```
pub fn init() -> Result<Option<ClusterPool>, Error> {
    ClusterBuilder::new().init()
}

/// Configures the cluster before [`init`](ClusterBuilder::init): how each node builds its
/// local pool.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// use std::time::Duration;
/// let pool = forkpool::Pool::builder()
///     .workers(8)
///     .timeout(Duration::from_secs(60))
///     .memory_limit(4 << 30);
/// let Some(cluster) = forkpool::mpi::ClusterBuilder::new().pool(pool).init()? else {
///     return Ok(());
/// };
/// assert!(cluster.nodes().iter().all(|n| n.workers == 8));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder starts nothing until `init`"]
pub struct ClusterBuilder {
    pool: PoolBuilder,
    restarts: (usize, Duration),
    node_timeout: Duration,
}

/// The default of [`ClusterBuilder::node_timeout`].
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            pool: PoolBuilder::default(),
            restarts: (32, Duration::from_secs(10)),
            node_timeout: NODE_TIMEOUT,
        }
    }
}

impl ClusterBuilder {
    /// Default local pools: one worker per CPU of each node.
    ///
    /// ```
    /// let builder = forkpool::mpi::ClusterBuilder::new();
    /// # drop(builder);
    /// ```
    pub fn new() -> Self {
        ClusterBuilder::default()
    }

    /// How every node builds its local pool: workers, default timeout, memory limit,
    /// initializer. (Its crash-loop guard is [`max_restarts`](Self::max_restarts)'s.)
    ///
    /// ```
    /// let builder = forkpool::mpi::ClusterBuilder::new().pool(forkpool::Pool::builder().workers(2));
    /// # drop(builder);
    /// ```
    pub fn pool(mut self, builder: PoolBuilder) -> Self {
        self.pool = builder;
        self
    }

    /// The crash-loop guard of every node: a call ends with [`Error::NodePool`] holding a
    /// [`PoolError::CrashLoop`] when more than `deaths` workers of one node die within `within`
    /// with no item of that node finishing in between, counted across the chunks of the call.
    /// Default: 32 deaths within 10 s, as [`PoolBuilder::max_restarts`], which this replaces
    /// for the nodes' pools. `usize::MAX` turns it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = forkpool::mpi::ClusterBuilder::new().max_restarts(3, Duration::from_secs(60));
    /// # drop(builder);
    /// ```
    pub fn max_restarts(mut self, deaths: usize, within: Duration) -> Self {
        self.restarts = (deaths, within);
        self
    }

    /// The longest the driver waits for word from a node that holds work (or that is to say
    /// hello at start-up, or goodbye when the cluster is dropped), on the driver's clock.
    /// A node running a chunk says it is alive every quarter of this, however long its items
    /// take (bound them with [`ClusterPool::timeout`]), so only a node that is stopped, hung or
    /// cut off says nothing that long: it is lost ([`Error::NodeLost`]), its items fail with
    /// [`ItemError::PoolFailed`](crate::ItemError::PoolFailed), and it gets no more work.
    /// Default: 60 s. `Duration::MAX` waits as long as it takes; zero makes
    /// [`init`](Self::init) fail with [`PoolError::InvalidTimeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = forkpool::mpi::ClusterBuilder::new().node_timeout(Duration::from_secs(10));
    /// # drop(builder);
    /// ```
    pub fn node_timeout(mut self, limit: Duration) -> Self {
        self.node_timeout = limit;
        self
    }

    /// Forks the local workers (on every rank but 0, as far as the launcher's environment tells
    /// the rank before MPI starts), initializes MPI (`MPI_THREAD_FUNNELED`: only this thread
    /// calls MPI), and checks every rank against rank 0. Rank 0 gets the [`ClusterPool`];
    /// another rank serves chunks until the driver drops it, and gets `Ok(None)`.
    ///
    /// Errors: [`Error::AlreadyInitialized`] if MPI was started (or ended) before, [`Error::TooFewRanks`]
    /// for a job of one rank, [`Error::NotIdentical`] (on rank 0; [`Error::Refused`] on the
    /// others) when a rank runs another executable, [`Error::NodePool`] when a node's pool
    /// could not be built.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let builder = forkpool::mpi::ClusterBuilder::new();
    /// let Some(cluster) = builder.init()? else { return Ok(()) };
    /// # drop(cluster);
    /// # Ok(()) }
    /// ```
    pub fn init(self) -> Result<Option<ClusterPool>, Error> {
        if self.node_timeout.is_zero() {
            let timeout = self.node_timeout;
            return Err(PoolError::InvalidTimeout { timeout }.into());
        }
        let me = identity::this_program().map_err(Error::Identity)?;
        if mpi::environment::is_initialized() || mpi::environment::is_finalized() {
            return Err(Error::AlreadyInitialized);
        }
        // Fork before MPI_Init (see the module's documentation).
        let (deaths, within) = self.restarts;
        let pool = self.pool.max_restarts(deaths, within);
        let local = (identity::rank_hint() != Some(0)).then(|| pool.clone().build());
        let Some((universe, _)) =
            mpi::environment::initialize_with_threading(mpi::Threading::Funneled)
        else {
            return Err(Error::AlreadyInitialized);
        };
        let mut transport = Transport::new(&universe.world());
        let host = mpi::environment::processor_name().unwrap_or_else(|_| "?".into());
        if transport.size() < 2 {
            return Err(Error::TooFewRanks {
                size: transport.size(),
            });
        }
        if transport.rank() == 0 {
            drop(local);
            transport.set_patience(self.node_timeout);
            return match start_driver(transport, host, me, self.node_timeout) {
                Ok(driver) => Ok(Some(ClusterPool::new(driver, universe))),
                Err(error @ Error::NodeLost { .. }) => {
                    // MPI's finalize would wait for the node that never said hello.
                    std::mem::forget(universe);
                    Err(error)
                }
                Err(error) => Err(error),
            };
        }
        // The launcher did not say this was a node: fork now (workers never touch MPI).
        let local = local.unwrap_or_else(|| pool.build());
        serve(&mut transport, host, me, local, Guard::new(deaths, within))?;
        Ok(None)
    }
}

/// Rank 0: collects every node's `Hello` (within `patience`), checks it, and answers
/// `Welcome` or `Refuse`.
fn start_driver(
    mut transport: Transport,
    host: String,
    me: Identity,
    patience: Duration,
) -> Result<Driver, Error> {
    let nodes = (transport.size() - 1) as usize;
    let mut hellos: Vec<Option<Result<Hello, String>>> = (0..nodes).map(|_| None).collect();
    let mut missing = nodes;
    let until = Instant::now().checked_add(patience);
    while missing > 0 {
        let Some((from, message)) = transport.receive_until::<ToDriver>(until) else {
            let silent = hellos.iter().position(Option::is_none).unwrap_or(0);
            let error = Error::NodeLost {
                rank: silent as i32 + 1,
                host: "?".into(),
                pid: 0,
                after: patience,
            };
            let reason = error.to_string();
            for (i, hello) in hellos.iter().enumerate() {
                if hello.is_some() {
                    let refuse = ToNode::Refuse {
                        reason: reason.clone(),
                    };
                    let _ = transport.send(i as i32 + 1, &refuse);
                }
            }
            return Err(error);
        };
        let Some(slot) = hellos.get_mut((from - 1) as usize) else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(message.and_then(|m| match m {
                ToDriver::Hello(hello) => Ok(hello),
                other => Err(format!("it said {other:?} before its Hello")),
            }));
            missing -= 1;
        }
    }
    let mut found = Vec::with_capacity(nodes);
    let mut problem = None;
    for (i, hello) in hellos.into_iter().flatten().enumerate() {
        let rank = i as i32 + 1;
        match check(rank, hello, me) {
            Ok(node) => found.push(node),
            Err(error) => {
                problem.get_or_insert(error);
            }
        }
    }
    let answer = match &problem {
        // Four beats within the node timeout: one late beat is no loss.
        None => ToNode::Welcome { beat: patience / 4 },
        Some(error) => ToNode::Refuse {
            reason: error.to_string(),
        },
    };
    for rank in 1..=nodes as i32 {
        let _ = transport.send(rank, &answer);
    }
    if let Some(error) = problem {
        return Err(error);
    }
    Ok(Driver::new(transport, found, patience, host))
}

/// A node as its `Hello` describes it, if it may serve.
fn check(rank: i32, hello: Result<Hello, String>, me: Identity) -> Result<Node, Error> {
    let hello = hello.map_err(|what| Error::NotIdentical {
        rank,
        host: "?".into(),
        what: format!("its start-up message could not be read ({what})"),
    })?;
    if (hello.exe_len, hello.exe_hash) != (me.len, me.hash) {
        return Err(Error::NotIdentical {
            rank,
            host: hello.host,
            what: format!(
                "its executable has {} bytes and hash {:016x}, rank 0's {} bytes and hash {:016x}",
                hello.exe_len, hello.exe_hash, me.len, me.hash
            ),
        });
    }
    if let Some(error) = hello.pool_error {
        return Err(Error::NodePool {
            rank,
            host: hello.host,
            pid: hello.pid,
            error: error.into_pool(),
        });
    }
    Ok(Node {
        rank,
        host: hello.host,
        pid: hello.pid,
        workers: hello.workers,
    })
}

/// Ranks 1 and up: says `Hello`, waits for rank 0's answer, then serves until `Shutdown`.
fn serve(
    transport: &mut Transport,
    host: String,
    me: Identity,
    local: Result<Pool, PoolError>,
    guard: Guard,
) -> Result<(), Error> {
    let hello = Hello {
        exe_hash: me.hash,
        exe_len: me.len,
        host,
        pid: std::process::id(),
        workers: local.as_ref().map_or(0, |p| p.workers()),
        pool_error: local.as_ref().err().map(WirePoolError::from_pool),
    };
    let refused = |reason| Error::Refused { reason };
    transport
        .send(0, &ToDriver::Hello(hello))
        .map_err(refused)?;
    let beat = loop {
        match transport.receive::<ToNode>() {
            (0, Ok(ToNode::Welcome { beat })) => break beat,
            (0, Ok(ToNode::Refuse { reason })) => return Err(refused(reason)),
            (0, Err(what)) => return Err(refused(format!("its answer could not be read: {what}"))),
            _ => {}
        }
    };
    let pool = local?;
    if let Err(what) = node::serve(&pool, transport, guard, beat) {
        // The driver would wait for this node forever: end the job instead.
        eprintln!(
            "forkpool::mpi: node {} stops the job: {what}",
            transport.rank()
        );
        transport.abort();
    }
    Ok(())
}
