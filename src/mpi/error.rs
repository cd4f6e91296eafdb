//! The errors of a cluster: what failed, for which item, on which rank, host and process.

use crate::{ItemError, PoolError};

/// A rank that serves chunks: where it runs and how many local workers it has.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// for node in cluster.nodes() {
///     println!("rank {} on {} (pid {}): {} workers", node.rank, node.host, node.pid, node.workers);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// Its rank in `MPI_COMM_WORLD` (1 and up; rank 0 is the driver).
    pub rank: i32,
    /// The host it runs on (`MPI_Get_processor_name`).
    pub host: String,
    /// The process id of the rank process (its workers are its children).
    pub pid: u32,
    /// The number of workers of its local pool.
    pub workers: usize,
}

/// What a cluster call, or [`init`](crate::mpi::init), can return.
///
/// An item's failure names the item (its index in the input), the rank and host that ran it,
/// and the worker process (in the [`ItemError`]):
///
/// ```
/// use forkpool::{Death, ItemError};
/// let e = forkpool::mpi::Error::Task {
///     rank: 2,
///     host: "node-b".into(),
///     error: ItemError::WorkerDied { index: 17, pid: 4242, death: Death::Signal(11) },
/// };
/// assert_eq!(
///     e.to_string(),
///     "item 17: worker 4242 killed by SIGSEGV (signal 11), on rank 2 (node-b)"
/// );
/// assert_eq!(e.rank(), Some(2));
/// assert_eq!(e.as_task().map(|t| t.index()), Some(17));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One item failed, on the rank named (rank 0 for an item the driver could not encode).
    #[error("{error}, on rank {rank} ({host})")]
    Task {
        /// The rank whose pool held the item (for [`ItemError::PoolFailed`], the rank whose
        /// pool failed).
        rank: i32,
        /// That rank's host.
        host: String,
        /// What happened to the item; its index counts from 0 in the call's input.
        error: ItemError,
    },
    /// The local pool of a rank failed (a crash loop, a replacement that could not be forked,
    /// an initializer that failed at start-up): the call ended. The items it had not finished
    /// got [`ItemError::PoolFailed`]; an input of unknown length ends with this error.
    #[error("the pool of rank {rank} ({host}, process {pid}) failed: {error}")]
    NodePool {
        /// The rank.
        rank: i32,
        /// Its host.
        host: String,
        /// The rank's process id.
        pid: u32,
        /// The failure, as its pool reported it (for example [`PoolError::CrashLoop`]).
        error: PoolError,
    },
    /// A call was refused before it started (a chunksize or timeout of zero), or this rank's
    /// pool could not be built.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The cluster is running another call (one call at a time on a cluster): finish or drop
    /// its iterator first.
    #[error("the cluster is already running a call: finish or drop its iterator first")]
    Busy,
    /// The job has fewer than two ranks: rank 0 drives and runs no items, so there would be
    /// no one to run them.
    #[error(
        "forkpool::mpi needs at least 2 ranks (rank 0 drives, the others run items), this job has {size}: start it with `mpirun -n 2 ...` or more"
    )]
    TooFewRanks {
        /// The number of ranks in `MPI_COMM_WORLD`.
        size: i32,
    },
    /// MPI was initialized (or already finalized) before [`init`](crate::mpi::init), which
    /// must be the one to start it (the local workers are forked first), once.
    #[error(
        "MPI is already initialized in this process: call forkpool::mpi::init() once, at the start of main, and let it initialize MPI"
    )]
    AlreadyInitialized,
    /// A rank runs another executable than rank 0: functions travel as offsets into the
    /// executable, which mean the same function only in the same binary.
    #[error(
        "rank {rank} ({host}) runs another executable than rank 0: {what}; every rank must run the identical binary"
    )]
    NotIdentical {
        /// The rank that differs.
        rank: i32,
        /// Its host.
        host: String,
        /// How it differs.
        what: String,
    },
    /// This rank was refused by rank 0 at start-up (rank 0's error says why, and which rank).
    #[error("rank 0 refused to start the cluster: {reason}")]
    Refused {
        /// Rank 0's error, in words.
        reason: String,
    },
    /// The function is not code of this program's executable (it is in a shared library),
    /// so its address means nothing in another rank.
    #[error(
        "the function at {address:#x} is in {object}, not in the executable: only functions of the executable can be sent to other ranks"
    )]
    NotInExecutable {
        /// The function's address here.
        address: u64,
        /// The object that holds it, as the dynamic loader names it.
        object: String,
    },
    /// The executable could not be read to identify it.
    #[error("could not read this program's executable to identify it: {0}")]
    Identity(std::io::Error),
    /// A node that held work (or was to say hello, or goodbye) said nothing for the cluster's
    /// [`node_timeout`](crate::mpi::ClusterBuilder::node_timeout): it is stopped, hung or cut
    /// off. Its items failed with [`ItemError::PoolFailed`] naming this error, it gets no more
    /// work, and the driver does not finalize MPI when the cluster is dropped (MPI's finalize
    /// would wait for that node): the launcher ends the job's other ranks when rank 0 exits.
    /// A call ends with this error when no node is left.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = forkpool::mpi::Error::NodeLost {
    ///     rank: 2,
    ///     host: "node-b".into(),
    ///     pid: 4242,
    ///     after: Duration::from_secs(60),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "rank 2 (node-b, process 4242) did not answer within 60s: it is stopped, hung or cut off, and gets no more work"
    /// );
    /// ```
    #[error(
        "rank {rank} ({host}, process {pid}) did not answer within {after:?}: it is stopped, hung or cut off, and gets no more work"
    )]
    NodeLost {
        /// The rank.
        rank: i32,
        /// Its host ("?" if it never said hello).
        host: String,
        /// The rank's process id (0 if it never said hello).
        pid: u32,
        /// The node timeout that passed.
        after: std::time::Duration,
    },
    /// A rank sent something it may not (a bug, or ranks of different builds).
    #[error("rank {rank} ({host}) broke the cluster protocol: {what}")]
    Protocol {
        /// The rank.
        rank: i32,
        /// Its host.
        host: String,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    /// The rank this error happened on, if it names one.
    ///
    /// ```
    /// let e = forkpool::mpi::Error::TooFewRanks { size: 1 };
    /// assert_eq!(e.rank(), None);
    /// ```
    pub fn rank(&self) -> Option<i32> {
        match self {
            Error::Task { rank, .. }
            | Error::NodePool { rank, .. }
            | Error::NotIdentical { rank, .. }
            | Error::NodeLost { rank, .. }
            | Error::Protocol { rank, .. } => Some(*rank),
            _ => None,
        }
    }

    /// The item's failure, if this is one.
    ///
    /// ```
    /// let e = forkpool::mpi::Error::TooFewRanks { size: 1 };
    /// assert!(e.as_task().is_none());
    /// ```
    pub fn as_task(&self) -> Option<&ItemError> {
        match self {
            Error::Task { error, .. } => Some(error),
            _ => None,
        }
    }
}
