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

mod call;
mod cluster;
mod codec;
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
pub use options::{ClusterCall, ClusterImap};

use crate::{Pool, PoolBuilder, PoolError};
use cluster::Driver;
use guard::Guard;
use identity::Identity;
use std::time::Duration;
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
pub struct ClusterBuilder {
    pool: PoolBuilder,
    restarts: (usize, Duration),
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            pool: PoolBuilder::default(),
            restarts: (32, Duration::from_secs(10)),
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
            let driver = start_driver(transport, host, me)?;
            return Ok(Some(ClusterPool::new(driver, universe)));
        }
        // The launcher did not say this was a node: fork now (workers never touch MPI).
        let local = local.unwrap_or_else(|| pool.build());
        serve(&mut transport, host, me, local, Guard::new(deaths, within))?;
        Ok(None)
    }
}

/// Rank 0: collects every node's `Hello`, checks it, and answers `Welcome` or `Refuse`.
fn start_driver(mut transport: Transport, host: String, me: Identity) -> Result<Driver, Error> {
    let nodes = (transport.size() - 1) as usize;
    let mut hellos: Vec<Option<Result<Hello, String>>> = (0..nodes).map(|_| None).collect();
    let mut missing = nodes;
    while missing > 0 {
        let (from, message) = transport.receive::<ToDriver>();
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
        None => ToNode::Welcome,
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
    Ok(Driver {
        transport,
        held: vec![0; nodes],
        nodes: found,
        next_call: 1,
        host,
    })
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
    loop {
        match transport.receive::<ToNode>() {
            (0, Ok(ToNode::Welcome)) => break,
            (0, Ok(ToNode::Refuse { reason })) => return Err(refused(reason)),
            (0, Err(what)) => return Err(refused(format!("its answer could not be read: {what}"))),
            _ => {}
        }
    }
    let pool = local?;
    if let Err(what) = node::serve(&pool, transport, guard) {
        // The driver would wait for this node forever: end the job instead.
        eprintln!(
            "forkpool::mpi: node {} stops the job: {what}",
            transport.rank()
        );
        transport.abort();
    }
    Ok(())
}
