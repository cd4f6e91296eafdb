//! Error types: what went wrong, with which item, in which worker; and [`ProcessError`], how a
//! [`ReturnProcess`](crate::ReturnProcess) child failed (an item's causes, without the item).

use std::fmt;
use std::time::Duration;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Death {
    /// A signal ended it (`SIGSEGV` is 11, `SIGABRT` 6, `SIGKILL` 9).
    Signal(i32),
    /// It exited with this code.
    Exit(i32),
    /// It could not be waited for (for example the program ignores `SIGCHLD`).
    Unknown,
}

impl Death {
    /// The signal's name, such as `"SIGSEGV"`, if a signal ended the process.
    ///
    /// ```
    /// use forkpool::Death;
    /// assert_eq!(Death::Signal(11).signal_name(), Some("SIGSEGV"));
    /// assert_eq!(Death::Exit(1).signal_name(), None);
    /// ```
    pub fn signal_name(&self) -> Option<&'static str> {
        match self {
            Death::Signal(n) => Some(
                nix::sys::signal::Signal::try_from(*n)
                    .map(|s| s.as_str())
                    .unwrap_or("an unknown signal"),
            ),
            _ => None,
        }
    }
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Death::Signal(n) => write!(
                f,
                "killed by {} (signal {n})",
                self.signal_name().unwrap_or("?")
            ),
            Death::Exit(code) => write!(f, "exited with code {code}"),
            Death::Unknown => write!(f, "ended in a way that could not be observed"),
        }
    }
}

/// Which side of the channel an encoding failure happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecStage {
    /// The parent could not encode the item.
    EncodeItem,
    /// The worker could not decode the item.
    DecodeItem,
    /// The worker could not encode the result.
    EncodeResult,
    /// The parent could not decode the result.
    DecodeResult,
}

impl fmt::Display for CodecStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecStage::EncodeItem => "encoding the item",
            CodecStage::DecodeItem => "decoding the item in the worker",
            CodecStage::EncodeResult => "encoding the result in the worker",
            CodecStage::DecodeResult => "decoding the result",
        })
    }
}

/// [`ItemError::Codec`] as a sentence: what could not be encoded or decoded, where.
fn codec_sentence(index: u64, pid: u32, stage: CodecStage, message: &str) -> String {
    match stage {
        CodecStage::EncodeItem => {
            format!("item {index} could not be encoded in the parent: {message}")
        }
        CodecStage::DecodeItem => {
            format!("item {index} could not be decoded in worker {pid}: {message}")
        }
        CodecStage::EncodeResult => {
            format!("the result of item {index} could not be encoded in worker {pid}: {message}")
        }
        CodecStage::DecodeResult => format!(
            "the result of item {index} could not be decoded in the parent (it came from worker {pid}): {message}"
        ),
    }
}

/// What happened to one item. `index` counts from 0 in the order the items were given;
/// `pid` is the worker process that held the item (0 when no worker had it yet).
///
/// The index is a `u64`, not a `usize`: it counts the items of inputs that may never end
/// (`0u64..`, a stream read from a socket), whose count outgrows a 32-bit `usize`, and it
/// travels between processes (in each chunk's frame, and between the ranks of `forkpool::mpi`)
/// as a fixed-width number, the same on every target. Convert with `usize::try_from(e.index())`
/// to index a slice.
///
/// ```
/// use forkpool::{Death, ItemError};
/// let e = ItemError::WorkerDied { index: 7, pid: 4242, death: Death::Signal(11) };
/// assert_eq!(e.to_string(), "item 7: worker 4242 killed by SIGSEGV (signal 11)");
/// assert_eq!(e.index(), 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// The function panicked on this item; the worker lived on.
    #[error("item {index}: panicked in worker {pid} at {}: {message}", location.as_deref().unwrap_or("<unknown location>"))]
    Panicked {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The worker died (signal or exit) while it held this item.
    #[error("item {index}: worker {pid} {death}")]
    WorkerDied {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// How the worker ended.
        death: Death,
    },
    /// The item ran longer than the time allowed: its worker was stopped (`SIGTERM` to its
    /// process group, then `SIGKILL` after a short grace) and, in a pool, replaced. (A
    /// [`ReturnProcess`](crate::ReturnProcess) gets it from `join_or_kill`; its
    /// `join_timeout` returns `Ok(None)` instead, the child running on.)
    #[error("item {index}: timed out after {after:?} in worker {pid}")]
    TimedOut {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// The time limit that passed.
        after: Duration,
    },
    /// The item needed more memory than the pool's `memory_limit`: an allocation failed, the
    /// worker aborted (`SIGABRT`), and a replacement was forked.
    #[error("item {index}: out of memory in worker {pid}: an allocation failed under the memory limit of {} MiB and the worker aborted (SIGABRT)", limit / (1 << 20))]
    OutOfMemory {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The item or its result could not be encoded or decoded. It reads as a sentence:
    /// "the result of item 3 could not be encoded in worker 1234: BadSer(0) refuses to
    /// serialize"; a decoding failure of the kind that serde attributes such as
    /// `skip_serializing_if` cause (bincode is not self-describing) says which to remove.
    ///
    /// ```
    /// use forkpool::{CodecStage, ItemError};
    /// let e = ItemError::Codec {
    ///     index: 3,
    ///     pid: 1234,
    ///     stage: CodecStage::EncodeResult,
    ///     message: "BadSer(0) refuses to serialize".into(),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "the result of item 3 could not be encoded in worker 1234: BadSer(0) refuses to serialize"
    /// );
    /// ```
    #[error("{}", codec_sentence(*index, *pid, *stage, message))]
    Codec {
        /// The item's index.
        index: u64,
        /// The worker's process id (0 if the item never reached one).
        pid: u32,
        /// Where it failed.
        stage: CodecStage,
        /// The codec's message.
        message: String,
    },
    /// The worker broke the wire protocol while it held this item (it wrote bytes that are not
    /// a frame it may send, or a reply for a chunk it was not running): the parent trusts
    /// nothing a worker sends, so it killed that worker and failed the item. Only a task that
    /// writes to the worker's channels (or memory corruption in the worker) causes this.
    #[error("item {index}: worker {pid} broke the protocol and was killed: {what}")]
    Protocol {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// What the worker sent that it may not.
        what: String,
    },
    /// The function's code is not mapped in the worker, or another library is mapped where it
    /// was: typically a function from a library loaded (`dlopen`) after the worker was forked.
    /// The item was not run.
    #[error(
        "item {index}: the function at {address:#x} is not loaded in worker {pid} (was its library loaded after the pool started?)"
    )]
    CodeNotLoaded {
        /// The item's index.
        index: u64,
        /// The worker's process id.
        pid: u32,
        /// The code address the worker refused to call.
        address: u64,
    },
    /// The pool failed while the call ran (a crash loop, a replacement worker that could not
    /// be forked, the pool terminated), and the call ended before this item had an outcome: it
    /// may have run or not, its result is lost. Every item the call had taken from its input
    /// gets this error, and so does every item of an input of known length (its exact
    /// `size_hint`), which the call drains; an input of unknown length is left where it was,
    /// and the call's last element is then the pool's error itself.
    ///
    /// ```
    /// use forkpool::ItemError;
    /// let e = ItemError::PoolFailed { index: 6, cause: "the pool is closed".into() };
    /// assert_eq!(e.to_string(), "item 6: not finished, the pool failed: the pool is closed");
    /// assert_eq!((e.index(), e.pid()), (6, 0));
    /// ```
    #[error("item {index}: not finished, the pool failed: {cause}")]
    PoolFailed {
        /// The item's index.
        index: u64,
        /// The pool's failure, in words (the `Display` of the [`PoolError`]).
        cause: String,
    },
    /// The item was cancelled ([`Task::cancel`](crate::Task::cancel)) before it finished: if it
    /// had not begun, it never ran; if it was running, its worker was stopped and replaced.
    ///
    /// ```
    /// use forkpool::ItemError;
    /// let e = ItemError::Cancelled { index: 0 };
    /// assert_eq!(e.to_string(), "item 0: cancelled");
    /// ```
    #[error("item {index}: cancelled")]
    Cancelled {
        /// The item's index.
        index: u64,
    },
}

// old names: begin
/// [`ItemError`] under the name it had: it is one item's failure (a [`Task`](crate::Task) is
/// one submitted item; a call's items fail with this too).
///
/// ```
/// # #![allow(deprecated)]
/// let e: forkpool::TaskError = forkpool::TaskError::Cancelled { index: 1 };
/// assert_eq!(e.index(), 1);
/// ```
#[deprecated(since = "0.2.0", note = "use `ItemError`")]
pub type TaskError = ItemError;
// old names: end

impl ItemError {
    /// The index of the item this error belongs to.
    pub fn index(&self) -> u64 {
        match self {
            ItemError::Panicked { index, .. }
            | ItemError::WorkerDied { index, .. }
            | ItemError::TimedOut { index, .. }
            | ItemError::OutOfMemory { index, .. }
            | ItemError::Codec { index, .. }
            | ItemError::Protocol { index, .. }
            | ItemError::CodeNotLoaded { index, .. }
            | ItemError::PoolFailed { index, .. }
            | ItemError::Cancelled { index } => *index,
        }
    }

    /// The process id of the worker that held the item (0 if none did).
    pub fn pid(&self) -> u32 {
        match self {
            ItemError::Panicked { pid, .. }
            | ItemError::WorkerDied { pid, .. }
            | ItemError::TimedOut { pid, .. }
            | ItemError::OutOfMemory { pid, .. }
            | ItemError::Codec { pid, .. }
            | ItemError::Protocol { pid, .. }
            | ItemError::CodeNotLoaded { pid, .. } => *pid,
            ItemError::PoolFailed { .. } | ItemError::Cancelled { .. } => 0,
        }
    }

    /// The same error, for the item at `index`.
    pub(crate) fn at_index(mut self, new: u64) -> ItemError {
        match &mut self {
            ItemError::Panicked { index, .. }
            | ItemError::WorkerDied { index, .. }
            | ItemError::TimedOut { index, .. }
            | ItemError::OutOfMemory { index, .. }
            | ItemError::Codec { index, .. }
            | ItemError::Protocol { index, .. }
            | ItemError::CodeNotLoaded { index, .. }
            | ItemError::PoolFailed { index, .. }
            | ItemError::Cancelled { index } => *index = new,
        }
        self
    }
}

/// A failure of the pool itself, or of how it was called, rather than of one item.
///
/// The variants that hold an I/O error ([`Fork`](PoolError::Fork),
/// [`Channel`](PoolError::Channel), [`Thread`](PoolError::Thread),
/// [`SharedMemory`](PoolError::SharedMemory)) say it in their message, which is the whole
/// story: their [`source`](std::error::Error::source) is `None`, so a report that walks the
/// chain of sources prints the I/O error once. Match the variant to reach it.
///
/// ```
/// use std::error::Error as _;
/// let e = forkpool::PoolError::Fork(std::io::Error::from_raw_os_error(11));
/// assert!(e.to_string().starts_with("could not fork a worker: "));
/// assert!(e.source().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one worker, got {workers}")]
    NoWorkers {
        /// The number asked for.
        workers: usize,
    },
    /// Chunks hold at least one item.
    #[error("chunksize must be at least 1, got {chunksize}")]
    InvalidChunksize {
        /// The chunksize asked for.
        chunksize: usize,
    },
    /// A time limit of zero allows no work at all: an item cannot be run in no time, and
    /// whether a very quick item beat the parent's clock would be a race. Refused at the call
    /// (or at `build()` for [`PoolBuilder::timeout`](crate::PoolBuilder::timeout)), as std's
    /// `set_read_timeout(Some(Duration::ZERO))` is. Any positive limit, however small, is
    /// accepted, and `Duration::MAX` means no limit.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let err = pool.timeout(Duration::ZERO).map(|x: u8| x, [1u8]).unwrap_err();
    /// assert_eq!(err.to_string(), "a timeout must be more than zero, got 0ns");
    /// # Ok(()) }
    /// ```
    #[error("a timeout must be more than zero, got {timeout:?}")]
    InvalidTimeout {
        /// The timeout asked for.
        timeout: Duration,
    },
    /// Each worker needs room for at least one chunk in flight.
    #[error("window must be at least 1 chunk per worker, got {window}")]
    InvalidWindow {
        /// The window asked for.
        window: usize,
    },
    /// `fork` failed.
    #[error("could not fork a worker: {0}")]
    Fork(std::io::Error),
    /// Creating or using an IPC channel failed.
    #[error("IPC channel failure: {0}")]
    Channel(std::io::Error),
    /// A thread the pool needs (a worker's reaper, a sender) could not be started.
    #[error("could not start a thread: {0}")]
    Thread(std::io::Error),
    /// The memory a worker shares with the pool (its progress page) could not be mapped.
    #[error("could not map memory shared with a worker: {0}")]
    SharedMemory(std::io::Error),
    /// The pool (or process handle) was used from another process than the one that built it,
    /// such as a forked child (a `ReturnProcess` closure, an `FnPool` worker) that captured it.
    /// Its workers belong to the process that built it; the child gets this error at once, and
    /// dropping the copy there leaves the workers alone.
    #[error(
        "the pool belongs to process {owner}, not to this process ({this}): a forked child cannot use its parent's pool"
    )]
    ForeignProcess {
        /// The process that built the pool.
        owner: u32,
        /// The process that tried to use it.
        this: u32,
    },
    /// The `map_with` context (or a `fold`'s initial value) could not be encoded.
    #[error("the call's context could not be encoded in the parent: {0}")]
    Context(String),
    /// The child process was already joined.
    #[error("the process was already joined")]
    AlreadyJoined,
    /// Workers died faster than the pool's restart limit allows, with no item finishing in
    /// between: the call ended instead of forking replacements forever.
    #[error("crash loop: {deaths} workers died within {within:?} with no item finishing; last causes: {}", last_causes.join("; "))]
    CrashLoop {
        /// Deaths counted.
        deaths: usize,
        /// The span they were counted over.
        within: Duration,
        /// The last few causes, newest last (e.g. `worker 812 killed by SIGSEGV (signal 11)`).
        last_causes: Vec<String>,
    },
    /// The pool's initializer failed in a worker: it panicked, the worker died, or it did not
    /// return within [`PoolBuilder::init_timeout`](crate::PoolBuilder::init_timeout).
    #[error("the initializer failed in worker {pid}: {message}")]
    Init {
        /// The worker's process id.
        pid: u32,
        /// The panic message, how the worker died before reporting, or the time limit it ran
        /// past.
        message: String,
    },
    /// The pool was closed or terminated: it takes no new work.
    #[error("the pool is closed: close(), join() or terminate() was called")]
    Closed,
    /// `join` was called on a pool that was neither closed nor terminated.
    #[error("join() needs close() or terminate() first")]
    NotClosed,
    /// The pool asked for something this platform cannot do, such as a `memory_limit` on macOS
    /// (which accepts `RLIMIT_AS` but does not enforce it).
    ///
    /// ```
    /// let err = forkpool::PoolError::Unsupported { what: "memory_limit", platform: "macOS" };
    /// assert_eq!(err.to_string(), "memory_limit is not supported on macOS");
    /// ```
    #[error("{what} is not supported on {platform}")]
    Unsupported {
        /// What was asked for (for example `"memory_limit"`).
        what: &'static str,
        /// The platform (for example `"macOS"`).
        platform: &'static str,
    },
}

/// Everything a call can return: one item's failure, the pool's, or (from
/// [`ReturnProcess`](crate::ReturnProcess)) its child's.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let err = pool.chunksize(0).map(|x: u32| x, [1, 2]).unwrap_err();
/// assert_eq!(err.to_string(), "chunksize must be at least 1, got 0");
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One item failed.
    #[error(transparent)]
    Task(#[from] ItemError),
    /// The pool failed or was misused.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A [`ReturnProcess`](crate::ReturnProcess) child failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A keyed reduction's reduce function failed while a worker merged the tables of one
    /// partition of keys (every item had succeeded): it panicked, killed its worker or ran
    /// past the timeout. The [`ItemError`]'s index counts the partitions of that merge step,
    /// not the call's items.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// fn fussy(a: u64, b: u64) -> u64 {
    ///     assert!(a + b < 10, "too big");
    ///     a + b
    /// }
    /// let pool = forkpool::Pool::new(2)?;
    /// let err = pool.chunksize(1).reduce_by_key(|x: u64| [(1u8, x)], fussy, [5u64, 6]);
    /// let err = err.unwrap_err();
    /// assert!(matches!(err, forkpool::Error::Combine(_)));
    /// assert!(err.to_string().contains("too big"));
    /// # Ok(()) }
    /// ```
    #[error("merging the tables of a keyed reduction: {0}")]
    Combine(ItemError),
}

impl Error {
    /// The item failure, if this is one (or a [`ReturnProcess`](crate::ReturnProcess)
    /// child's failure: its [`cause`](ProcessError::cause)).
    pub fn as_task(&self) -> Option<&ItemError> {
        match self {
            Error::Task(t) | Error::Combine(t) => Some(t),
            Error::Process(p) => Some(&p.cause),
            Error::Pool(_) => None,
        }
    }
}

impl PoolError {
    /// The same failure, for another call that shares it (the source of an I/O error is kept
    /// as its kind and text).
    pub(crate) fn duplicate(&self) -> PoolError {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            PoolError::NoWorkers { workers } => PoolError::NoWorkers { workers: *workers },
            PoolError::InvalidChunksize { chunksize } => PoolError::InvalidChunksize {
                chunksize: *chunksize,
            },
            PoolError::InvalidTimeout { timeout } => {
                PoolError::InvalidTimeout { timeout: *timeout }
            }
            PoolError::InvalidWindow { window } => PoolError::InvalidWindow { window: *window },
            PoolError::Fork(e) => PoolError::Fork(io(e)),
            PoolError::Channel(e) => PoolError::Channel(io(e)),
            PoolError::Thread(e) => PoolError::Thread(io(e)),
            PoolError::SharedMemory(e) => PoolError::SharedMemory(io(e)),
            PoolError::ForeignProcess { owner, this } => PoolError::ForeignProcess {
                owner: *owner,
                this: *this,
            },
            PoolError::Context(message) => PoolError::Context(message.clone()),
            PoolError::AlreadyJoined => PoolError::AlreadyJoined,
            PoolError::CrashLoop {
                deaths,
                within,
                last_causes,
            } => PoolError::CrashLoop {
                deaths: *deaths,
                within: *within,
                last_causes: last_causes.clone(),
            },
            PoolError::Init { pid, message } => PoolError::Init {
                pid: *pid,
                message: message.clone(),
            },
            PoolError::Closed => PoolError::Closed,
            PoolError::NotClosed => PoolError::NotClosed,
            PoolError::Unsupported { what, platform } => PoolError::Unsupported { what, platform },
        }
    }
}

/// A [`ReturnProcess`](crate::ReturnProcess) child failed: it panicked, died, ran past its
/// time, or its value could not travel. `cause` says which, as the same [`ItemError`] an item
/// of a pool would get (its index is 0); the message speaks of the process.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use forkpool::{Error, ProcessError, ItemError};
/// let p = forkpool::ReturnProcess::spawn(|| -> u8 { panic!("no value") })?;
/// let pid = p.pid();
/// match p.join() {
///     Err(Error::Process(e @ ProcessError { cause: ItemError::Panicked { .. }, .. })) => {
///         assert!(e.to_string().starts_with(&format!("the process {pid} panicked at ")));
///         assert!(e.to_string().ends_with(": no value"));
///     }
///     other => panic!("expected a panic, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessError {
    /// What happened, as an item's failure would say it (index 0).
    pub cause: ItemError,
}

impl ProcessError {
    /// The child's process id.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let mut p = forkpool::ReturnProcess::spawn(|| -> u8 { loop { std::hint::spin_loop() } })?;
    /// let pid = p.pid();
    /// p.kill();
    /// match p.join() {
    ///     Err(forkpool::Error::Process(e)) => assert_eq!(e.pid(), pid),
    ///     other => panic!("expected a death, got {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.cause.pid()
    }
}

impl From<ItemError> for ProcessError {
    fn from(cause: ItemError) -> ProcessError {
        ProcessError { cause }
    }
}

impl std::error::Error for ProcessError {}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            ItemError::Panicked {
                pid,
                message,
                location,
                ..
            } => {
                let at = location.as_deref().unwrap_or("<unknown location>");
                write!(f, "the process {pid} panicked at {at}: {message}")
            }
            ItemError::WorkerDied { pid, death, .. } => {
                write!(
                    f,
                    "the process {pid} died before sending its value: {death}"
                )
            }
            ItemError::TimedOut { pid, after, .. } => {
                write!(
                    f,
                    "the process {pid} did not send its value within {after:?}"
                )
            }
            ItemError::OutOfMemory { pid, limit, .. } => write!(
                f,
                "the process {pid} ran out of memory: an allocation failed under the limit of {} MiB",
                limit / (1 << 20)
            ),
            ItemError::Codec {
                pid,
                stage,
                message,
                ..
            } => match stage {
                CodecStage::EncodeResult | CodecStage::EncodeItem => {
                    write!(f, "the process {pid} could not encode its value: {message}")
                }
                CodecStage::DecodeResult | CodecStage::DecodeItem => write!(
                    f,
                    "the value of the process {pid} could not be decoded in the parent: {message}"
                ),
            },
            ItemError::Protocol { pid, what, .. } => {
                write!(
                    f,
                    "the process {pid} broke the protocol and was killed: {what}"
                )
            }
            ItemError::CodeNotLoaded { pid, address, .. } => write!(
                f,
                "the process {pid} refused to call the function at {address:#x}: it is not loaded there"
            ),
            ItemError::PoolFailed { cause, .. } => {
                write!(f, "the process did not finish: {cause}")
            }
            ItemError::Cancelled { .. } => f.write_str("the process was cancelled"),
        }
    }
}

#[cfg(test)]
mod process_error_tests {
    use super::*;
    use crate::error::Death;
    use std::time::Duration;

    /// Every cause reads as a process's failure: none speaks of an item or a worker.
    #[test]
    fn every_cause_speaks_of_the_process() {
        let (index, pid) = (0, 1234);
        let codec = |stage| ItemError::Codec {
            index,
            pid,
            stage,
            message: "BadSer(0) refuses to serialize".into(),
        };
        let cases = [
            (
                ItemError::Panicked {
                    index,
                    pid,
                    message: "boom".into(),
                    location: Some("src/main.rs:3:5".into()),
                },
                "the process 1234 panicked at src/main.rs:3:5: boom",
            ),
            (
                ItemError::WorkerDied {
                    index,
                    pid,
                    death: Death::Signal(11),
                },
                "the process 1234 died before sending its value: killed by SIGSEGV (signal 11)",
            ),
            (
                ItemError::TimedOut {
                    index,
                    pid,
                    after: Duration::from_millis(20),
                },
                "the process 1234 did not send its value within 20ms",
            ),
            (
                codec(CodecStage::EncodeResult),
                "the process 1234 could not encode its value: BadSer(0) refuses to serialize",
            ),
            (
                codec(CodecStage::DecodeResult),
                "the value of the process 1234 could not be decoded in the parent: BadSer(0) \
                 refuses to serialize",
            ),
            (
                ItemError::PoolFailed {
                    index,
                    cause: "the pool is closed".into(),
                },
                "the process did not finish: the pool is closed",
            ),
            (ItemError::Cancelled { index }, "the process was cancelled"),
        ];
        for (cause, text) in cases {
            assert_eq!(ProcessError::from(cause).to_string(), text);
        }
        let others = [
            ItemError::OutOfMemory {
                index,
                pid,
                limit: 64 << 20,
            },
            ItemError::Protocol {
                index,
                pid,
                what: "a stray frame".into(),
            },
            ItemError::CodeNotLoaded {
                index,
                pid,
                address: 0x1000,
            },
        ];
        for cause in others {
            let text = ProcessError::from(cause).to_string();
            assert!(text.starts_with("the process 1234 "), "{text}");
            assert!(!text.contains("item") && !text.contains("worker"), "{text}");
        }
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;
    use std::error::Error as StdError;

    /// The messages of `error` and of each of its sources, outermost first.
    fn chain(error: &dyn StdError) -> Vec<String> {
        let mut messages = vec![error.to_string()];
        let mut next = error.source();
        while let Some(source) = next {
            messages.push(source.to_string());
            next = source.source();
        }
        messages
    }

    /// Each message of the chain is printed once: none contains one of its sources'.
    fn assert_each_message_once(error: &dyn StdError) {
        let messages = chain(error);
        for (at, message) in messages.iter().enumerate() {
            for source in &messages[at + 1..] {
                assert!(
                    !message.contains(source.as_str()),
                    "{message:?} repeats its source {source:?} (chain {messages:?})"
                );
            }
        }
    }

    #[test]
    fn a_report_of_the_chain_of_sources_prints_each_message_once() {
        let io = || std::io::Error::other("the socket said no");
        let pool_errors = [
            PoolError::NoWorkers { workers: 0 },
            PoolError::InvalidChunksize { chunksize: 0 },
            PoolError::InvalidTimeout {
                timeout: Duration::ZERO,
            },
            PoolError::InvalidWindow { window: 0 },
            PoolError::Fork(io()),
            PoolError::Channel(io()),
            PoolError::Thread(io()),
            PoolError::SharedMemory(io()),
            PoolError::ForeignProcess { owner: 1, this: 2 },
            PoolError::Context("no".into()),
            PoolError::AlreadyJoined,
            PoolError::CrashLoop {
                deaths: 3,
                within: Duration::from_secs(1),
                last_causes: vec!["worker 9 killed by SIGSEGV (signal 11)".into()],
            },
            PoolError::Init {
                pid: 9,
                message: "boom".into(),
            },
            PoolError::Closed,
            PoolError::NotClosed,
            PoolError::Unsupported {
                what: "memory_limit",
                platform: "macOS",
            },
        ];
        for pool_error in pool_errors {
            assert_each_message_once(&pool_error);
            if let PoolError::Fork(_) | PoolError::Channel(_) = &pool_error {
                // The I/O error is said once, in the variant's message.
                assert_eq!(chain(&pool_error).len(), 1);
                assert!(pool_error.to_string().ends_with(": the socket said no"));
            }
            assert_each_message_once(&Error::from(pool_error));
        }
        let item = ItemError::Cancelled { index: 3 };
        assert_each_message_once(&item);
        assert_each_message_once(&Error::from(item.clone()));
        assert_each_message_once(&Error::Combine(item.clone()));
        assert_each_message_once(&Error::from(ProcessError::from(item)));
    }
}
