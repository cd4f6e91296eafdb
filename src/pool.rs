//! [`Pool`]: worker processes forked once and reused by every call, and its builder.

use crate::call::{Call, CallSpec, Delivery};
use crate::crash_guard::RestartLimit;
use crate::engine::{DEFAULT_INIT_TIMEOUT, Engine, Settings};
use crate::error::{Error, PoolError};
use crate::iter::{Imap, ImapUnordered, Stream};
use crate::lifecycle::PoolState;
use crate::task::Task;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::code_map;
use forkpool_worker::job::{self, EntryFn};
use forkpool_worker::protocol::TaskCode;
use forkpool_worker::{EntryRunner, InitFn, StarArgs};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The function a pool worker runs after fork: the worker loop, calling entries by address.
type PoolMain = dyn Fn(forkpool_worker::ChildEnd) -> i32 + Send + Sync;

/// The default number of workers: the number of CPUs this process may use.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A pool of worker processes, forked when the pool is built and reused by every call.
///
/// Functions given to a pool are fn pointers: fn items, or closures that capture nothing (see
/// [Functions](#functions) below). Items and results are `Serialize + DeserializeOwned` and
/// travel bincode-encoded.
///
/// Any number of calls and tasks run at once, from any number of threads (a pool is `Sync`):
/// their chunks share the workers fairly, and a call may start while another's iterator is open.
///
/// Dropping the pool asks the workers to exit, waits up to half a second, then kills and reaps
/// them all. [`close`](Pool::close), [`join`](Pool::join) and [`terminate`](Pool::terminate)
/// end it explicitly, as in Python.
///
/// A worker that dies (segfault, abort, `SIGKILL`) costs only the item it was running: the
/// other items of its chunk are sent again (see [`PoolBuilder::pinpoint_crashes`]) and a
/// replacement is forked. An item that runs past [`PoolBuilder::timeout`] or
/// [`CallOptions::timeout`] has its worker stopped and replaced.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let squares: Vec<u64> = pool.map(|x: u64| x * x, 0..10u64)?;
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok(()) }
/// ```
///
/// # Functions
///
/// A pool's functions are fn pointers: `fn(T) -> R` for [`map`](Pool::map), [`imap`](Pool::imap)
/// and [`imap_unordered`](Pool::imap_unordered), `fn(A, B, ..) -> R` for
/// [`starmap`](Pool::starmap), `fn(&C, T) -> R` for [`map_with`](Pool::map_with), `fn()` for
/// [`PoolBuilder::init`]. Fn items and closures that capture nothing coerce to them. The workers
/// were forked before the function was chosen, so what travels is its code address (valid in a
/// forked child) and the encoded items; nothing else of the function exists in the worker. The
/// worker checks that the address points into code loaded at the same place as in the parent
/// (a function of a library loaded after the workers were forked fails its items with
/// [`TaskError::CodeNotLoaded`](crate::TaskError::CodeNotLoaded); a pool built after the load
/// runs it).
///
/// A closure that captures anything, even a value of a zero-sized type, is a type error
/// (E0308, "closures can only be coerced to `fn` types if they do not capture any variables"),
/// reported on the call by `cargo check`. Pass the data as a context with
/// [`Pool::map_with`], or fork workers that hold the closure itself with
/// [`FnPool::new`](crate::FnPool::new) or [`forkpool::parmap`](crate::parmap).
///
/// A fn item given to `starmap` needs a cast or a closure around it, because the argument
/// types come from the items, which the compiler reads after the function:
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// fn add(a: u64, b: u64) -> u64 { a + b }
/// let pool = forkpool::Pool::new(1)?;
/// let sums: Vec<u64> = pool.starmap(add as fn(_, _) -> _, [(1u64, 2u64)])?;
/// assert_eq!(sums, [3]);
/// let sums: Vec<u64> = pool.starmap(|a, b| add(a, b), [(1, 2)])?;
/// assert_eq!(sums, [3]);
/// # Ok(()) }
/// ```
///
/// A closure that captures a `u64`, given to `map`, `starmap` or `map_with`:
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &offset; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &offset; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let offset = 10u64;
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &offset; c + x }, [1u64])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// One that captures a zero-sized value whose type has a destructor (a worker would have to
/// invent the value, and drop it):
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &token; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &token; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// struct Token;
/// impl Drop for Token {
///     fn drop(&mut self) { println!("token dropped"); }
/// }
/// let token = Token;
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &token; c + x }, [1u64])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// One that captures a zero-sized token (inventing it in a worker would forge whatever it
/// proves):
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &proof; x }, 0..10u64)?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &proof; a + b }, [(1u64, 2u64)])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// // A zero-sized proof that some check passed (only its module can make one).
/// struct Proof(());
/// let proof = Proof(());
/// let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &proof; c + x }, [1u64])?;
/// # let _ = v;
/// # Ok(()) }
/// ```
pub struct Pool {
    shared: PoolState<PoolMain>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Pool`] before its workers are forked.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::builder().workers(2).window(3).build()?;
/// assert_eq!(pool.workers(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    workers: usize,
    window: Option<usize>,
    show_panics: bool,
    timeout: Option<Duration>,
    init: Option<InitFn>,
    max_tasks: Option<usize>,
    memory_limit: Option<u64>,
    pinpoint: bool,
    restarts: RestartLimit,
    init_timeout: Duration,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: default_workers(),
            window: None,
            show_panics: false,
            timeout: None,
            init: None,
            max_tasks: None,
            memory_limit: None,
            pinpoint: true,
            restarts: RestartLimit::default(),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }
}

impl PoolBuilder {
    /// How many worker processes to fork (default: the number of CPUs available).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(3).build()?;
    /// assert_eq!(pool.pids().len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// How many chunks each worker may hold at once. By default each call picks: 2 (one
    /// running, the next already queued, so a worker never waits for a round trip to the
    /// parent), or, when chunks hold 16 items or fewer, enough chunks for about 1 ms of work,
    /// from 2 to 32, learnt from their run times (a round trip costs about 70 µs, far more
    /// than a small chunk of trivial items runs; slow items should not queue up behind one
    /// worker). Either way a worker is refilled once it is down to half its window.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).window(4).build()?;
    /// assert_eq!(pool.map(|x: u8| x + 1, [1u8, 2])?, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn window(mut self, window: usize) -> Self {
        self.window = Some(window);
        self
    }

    /// Also print task panics on the workers' stderr (default: they are only reported in the
    /// item's [`TaskError::Panicked`](crate::TaskError::Panicked)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).show_panics(true).build()?;
    /// # drop(pool);
    /// # Ok(()) }
    /// ```
    pub fn show_panics(mut self, show: bool) -> Self {
        self.show_panics = show;
        self
    }

    /// The default time limit of one item, for every call (a call can set its own with
    /// [`CallOptions::timeout`]). An item still running after it fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut); its worker gets `SIGTERM` (its whole
    /// process group, so processes the task started go too, and `SIGCONT` so a stopped one acts
    /// on it), then `SIGKILL` after 100 ms, and is replaced; the call goes on. Decoding the item
    /// counts as part of it.
    ///
    /// A worker that holds chunks but makes no progress for the timeout (no item begins or
    /// ends: it was stopped with `SIGSTOP`, or is stuck receiving its chunk) is stopped the same
    /// way: the item it was running, or else its first unstarted item, fails with `TimedOut`,
    /// and the rest of its chunks run elsewhere.
    ///
    /// `Duration::MAX` (or anything too long to add to the clock) means no limit. A zero
    /// timeout makes [`build`](Self::build) return [`PoolError::InvalidTimeout`]; a tiny one
    /// (1 ns) times out every item within about a millisecond, without the parent spinning.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::builder().workers(1).timeout(Duration::from_millis(300)).build()?;
    /// let err = pool.map(|s: u64| std::thread::sleep(Duration::from_secs(s)), [0, 60]).unwrap_err();
    /// assert!(matches!(err.as_task(), Some(forkpool::TaskError::TimedOut { index: 1, .. })));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// A function every worker runs once after it is forked and before its first item,
    /// replacements included (Python's `initializer`). A fn pointer, like the functions given to
    /// [`Pool::map`]: a fn item or a closure that captures nothing. If it panics in a first
    /// worker, [`build`](Self::build) returns [`PoolError::Init`] with its message; if it panics
    /// in a replacement, that worker dies, and the crash-loop guard ends the call if it keeps
    /// happening.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let err = forkpool::Pool::builder()
    ///     .workers(2)
    ///     .init(|| panic!("no licence file"))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("no licence file"));
    /// # Ok(()) }
    /// ```
    pub fn init(mut self, f: fn()) -> Self {
        self.init = Some(f);
        self
    }

    /// How long the [`init`](Self::init) function may run in a worker (default: 30 s). Past
    /// it the worker is killed: in a first worker, [`build`](Self::build) returns
    /// [`PoolError::Init`] naming the limit; in a replacement, the death counts for the
    /// crash-loop guard ([`max_restarts`](Self::max_restarts)), and the chunks it was given run
    /// elsewhere. While a replacement holds chunks of a call with a timeout, that timeout
    /// bounds its initializer too. `Duration::MAX` means no limit.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let err = forkpool::Pool::builder()
    ///     .workers(1)
    ///     .init(|| std::thread::sleep(Duration::from_secs(3600)))
    ///     .init_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("did not return within 200ms"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn init_timeout(mut self, limit: Duration) -> Self {
        self.init_timeout = limit;
        self
    }

    /// Replace each worker with a fresh one after it has been given `items` items (Python's
    /// `maxtasksperchild`, counted in items): memory a task leaks goes with its worker. Chunks
    /// are cut so that no worker gets more. Nothing fails or changes order. 0 is treated as 1.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).max_tasks_per_worker(2).build()?;
    /// let pids = pool.map(|_: u8| std::process::id(), [0u8, 1, 2, 3])?;
    /// assert_eq!(pids[0], pids[1]);
    /// assert_ne!(pids[1], pids[2]);
    /// # Ok(()) }
    /// ```
    pub fn max_tasks_per_worker(mut self, items: usize) -> Self {
        self.max_tasks = Some(items.max(1));
        self
    }

    /// Cap each worker's address space at `bytes` (`RLIMIT_AS`). An item whose allocation
    /// fails under it aborts its worker and fails with
    /// [`TaskError::OutOfMemory`](crate::TaskError::OutOfMemory); the pool goes on. The cap
    /// counts virtual memory, code and stacks included, so leave room above what items really
    /// use. (While a limit is set, a worker that dies of `SIGABRT` during an item is reported as
    /// out of memory: Rust aborts on a failed allocation, and std offers no stable hook to tell
    /// that abort from an explicit one.) On macOS, which does not enforce `RLIMIT_AS`, `build()`
    /// returns [`PoolError::Unsupported`](crate::PoolError::Unsupported).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).memory_limit(1 << 30).build()?;
    /// assert_eq!(pool.map(|n: usize| vec![1u8; n].len(), [1000usize])?, [1000]);
    /// # Ok(()) }
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Crash pinpointing (default on): when a worker dies running an item, only that item fails
    /// (the pool knows which item was running from a page of memory the worker shares with it);
    /// the other items of its chunk are sent again. Off, every item of the chunk fails with
    /// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied), as in pebble: use that if items
    /// must never run twice (with pinpointing, items of the chunk that had finished before the
    /// crash run again).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(1).pinpoint_crashes(false).build()?;
    /// let outcomes: Vec<_> = pool
    ///     .chunksize(4)
    ///     .imap(|x: u32| if x == 2 { std::process::abort() } else { x }, 0..4u32)
    ///     .collect();
    /// assert!(outcomes.iter().all(|r| r.is_err()));
    /// # Ok(()) }
    /// ```
    pub fn pinpoint_crashes(mut self, on: bool) -> Self {
        self.pinpoint = on;
        self
    }

    /// The crash-loop guard: a call ends with [`PoolError::CrashLoop`] when more than `deaths`
    /// workers die within `within` with no item finishing in between (billiard's
    /// `max_restarts`). Default: 32 deaths within 10 s. `usize::MAX` deaths turns the guard off.
    ///
    /// Ending the call loses no item: every item already taken from the input, and every item
    /// of an input of known length, gets [`TaskError::PoolFailed`](crate::TaskError::PoolFailed)
    /// naming the crash loop; an input of unknown length is left alone, and the call's last
    /// element is the [`PoolError::CrashLoop`] itself.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::builder()
    ///     .workers(1)
    ///     .max_restarts(3, Duration::from_secs(60))
    ///     .build()?;
    /// let outcomes: Vec<_> = pool
    ///     .chunksize(1)
    ///     .imap(|_: u8| -> u8 { std::process::abort() }, 0..100u8)
    ///     .collect();
    /// // Every item has its one outcome: the first four failed with their worker's death; then
    /// // the guard ended the call, and the others (the input has a known length) fail with it.
    /// assert_eq!(outcomes.len(), 100);
    /// use forkpool::TaskError;
    /// let task = |i: usize| outcomes[i].as_ref().unwrap_err().as_task().unwrap();
    /// assert!((0..4).all(|i| matches!(task(i), TaskError::WorkerDied { .. })));
    /// assert!((4..100).all(|i| matches!(task(i), TaskError::PoolFailed { cause, .. }
    ///     if cause.starts_with("crash loop"))));
    /// # Ok(()) }
    /// ```
    pub fn max_restarts(mut self, deaths: usize, within: Duration) -> Self {
        self.restarts = RestartLimit { deaths, within };
        self
    }

    /// Forks the workers (and waits for their initializer, if there is one).
    ///
    /// ```
    /// let err = forkpool::Pool::builder().workers(0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "a pool needs at least one worker, got 0");
    /// ```
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.workers == 0 {
            return Err(PoolError::NoWorkers { workers: 0 });
        }
        if self.window == Some(0) {
            return Err(PoolError::InvalidWindow { window: 0 });
        }
        if let Some(timeout) = self.timeout.filter(|t| t.is_zero()) {
            return Err(PoolError::InvalidTimeout { timeout });
        }
        let settings = Settings {
            size: self.workers,
            window: self.window,
            child: ChildOptions {
                ignore_sigint: true,
                show_panics: self.show_panics,
                memory_limit: self.memory_limit,
            },
            has_init: self.init.is_some(),
            max_tasks: self.max_tasks,
            pinpoint: self.pinpoint,
            restarts: self.restarts,
            init_timeout: self.init_timeout,
        };
        let init = self.init;
        let main: Box<PoolMain> = Box::new(move |end| {
            // SAFETY: this closure runs only in a worker this pool forked (see `Engine::fill`),
            // whose task channel carries only frames `call` wrote for `EntryRunner`: entry
            // addresses of `job` entries and fn pointers of the types each entry expects.
            unsafe {
                let mut runner = EntryRunner::new();
                forkpool_worker::serve(end, init, &mut runner)
            }
        });
        let shared = PoolState::new(Engine::new(settings)?, main);
        {
            let mut engine = shared.hub_unchecked().lock();
            engine.fill(shared.main())?;
            engine.wait_ready()?;
        }
        Ok(Pool {
            shared,
            timeout: self.timeout,
        })
    }
}

impl Pool {
    /// A pool of `workers` processes with default settings.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.workers(), 2);
    /// # Ok(()) }
    /// ```
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        Pool::builder().workers(workers).build()
    }

    /// A builder for a pool with non-default settings.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::builder().workers(2).build()?;
    /// # drop(pool);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The configured number of workers.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// assert_eq!(forkpool::Pool::new(2)?.workers(), 2);
    /// # Ok(()) }
    /// ```
    pub fn workers(&self) -> usize {
        self.shared.size()
    }

    /// The process ids of the live workers, as of the last fork or death the pool handled.
    /// Never waits for a running call.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let pids = pool.pids();
    /// assert_eq!(pids.len(), 2);
    /// assert!(!pids.contains(&std::process::id()));
    /// # Ok(()) }
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Options for one call: [`CallOptions::chunksize`] and the call methods.
    fn options(&self) -> CallOptions<'_> {
        CallOptions {
            pool: self,
            chunksize: None,
            timeout: self.timeout,
        }
    }

    /// A view of the pool whose calls stop any item that runs longer than `limit` (see
    /// [`PoolBuilder::timeout`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(2)?;
    /// let v = pool.timeout(Duration::from_secs(30)).map(|x: u8| x + 1, [1u8, 2])?;
    /// assert_eq!(v, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self, limit: Duration) -> CallOptions<'_> {
        self.options().timeout(limit)
    }

    /// Takes no new work: every later call returns [`PoolError::Closed`]. A call already
    /// running finishes. Python's `Pool.close`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// pool.close();
    /// let err = pool.map(|x: u8| x, [1u8]).unwrap_err();
    /// assert!(matches!(err, forkpool::Error::Pool(forkpool::PoolError::Closed)));
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits for a running call (on another thread) to finish, then for every worker to exit,
    /// and reaps them (a worker that has not exited half a second after being told to is
    /// killed). Needs [`close`](Pool::close) or [`terminate`](Pool::terminate) first, as in
    /// Python; otherwise returns [`PoolError::NotClosed`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.map(|x: u8| x * 2, [4u8])?, [8]);
    /// pool.close();
    /// pool.join()?;
    /// assert!(pool.pids().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        self.shared.join()
    }

    /// Kills every worker now (`SIGKILL` to each worker's process group) and closes the pool.
    /// A call running on another thread ends: items that were running fail with
    /// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied), the rest of its items (all of
    /// an input of known length) with [`TaskError::PoolFailed`](crate::TaskError::PoolFailed)
    /// naming [`PoolError::Closed`]; an input of unknown length ends the call with
    /// [`PoolError::Closed`] itself. Reaps the workers before returning.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let pids = pool.pids();
    /// pool.terminate();
    /// assert!(pool.pids().is_empty());
    /// # let _ = pids;
    /// # Ok(()) }
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// A view of the pool whose calls cut their input into chunks of `chunksize` items.
    /// Chunksize 0 makes every call return [`PoolError::InvalidChunksize`]. Whatever is asked,
    /// a chunk holds at most 1,048,576 items and stops growing once its encoded items take
    /// 16 MiB (a chunk is encoded whole before it is sent: this keeps memory bounded even for
    /// `chunksize(usize::MAX)` over endless input).
    ///
    /// Without it, `map`, `starmap` and `map_with` on input of known length use
    /// ceil(len / (4 × workers)) like Python's `Pool.map`, but at most 8,192 items; lazy calls
    /// (`imap`, `imap_unordered`, `istarmap`) and input of unknown length adapt: chunks start
    /// at one item, so the first outcome comes after a few item-times, and grow while they take
    /// under 2 ms of worker time (shrinking when they take over 20 ms).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let v: Vec<u32> = pool.chunksize(3).map(|x: u32| x + 1, 0..10u32)?;
    /// assert_eq!(v, (1..11).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> CallOptions<'_> {
        self.options().chunksize(chunksize)
    }

    /// Applies `f` to every item in parallel and returns the results in input order, or the
    /// failure of the lowest-indexed item that failed (the rest of the work is then cancelled).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = forkpool::Pool::new(2)?;
    /// assert_eq!(pool.map(square, [1u64, 2, 3])?, [1, 4, 9]);
    /// // A closure needs no annotations: its argument type comes from the items.
    /// assert_eq!(pool.map(|x| x * 2, 0..5)?, [0, 2, 4, 6, 8]);
    /// assert_eq!(pool.map(|x: u64| x * x, 0..4u64)?, [0, 1, 4, 9]);
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

    /// Like [`map`](Pool::map), but lazy: yields each item's outcome in input order as soon as
    /// it and all before it are done. Input is pulled only as workers have room, so an endless
    /// input works and memory stays bounded. Dropping the iterator cancels the rest.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool
    ///     .imap(|x: u64| x * 2, 0u64..)
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> Imap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap(f, items)
    }

    /// Like [`imap`](Pool::imap), but yields outcomes as they finish, in any order.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut v: Vec<u32> = pool
    ///     .imap_unordered(|x: u32| x + 1, 0..100u32)
    ///     .collect::<Result<_, _>>()?;
    /// v.sort();
    /// assert_eq!(v, (1..101).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> ImapUnordered<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().imap_unordered(f, items)
    }

    /// Like [`map`](Pool::map), but each item is a tuple whose fields are the function's
    /// arguments (1 to 6 of them).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let sums: Vec<u64> = pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
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

    /// The lazy, ordered form of [`starmap`](Pool::starmap) (Python has no `istarmap`).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let mut products = pool.istarmap(|a: u32, b: u32| a * b, [(2, 3), (4, 5)]);
    /// assert_eq!(products.next().transpose()?, Some(6));
    /// assert_eq!(products.next().transpose()?, Some(20));
    /// # Ok(()) }
    /// ```
    pub fn istarmap<Args, R, I>(
        &self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Imap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.options().istarmap(f, items)
    }

    /// Like [`map`](Pool::map), with a context value sent once to each worker for this call and
    /// passed by reference to every call of `f`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let offset = 100u64;
    /// let v: Vec<u64> = pool.map_with(&offset, |off: &u64, x: u64| off + x, [1u64, 2])?;
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

/// What a call runs: `entry` (instantiated for the call's types) and the user's fn pointer
/// at `function`, by address, with the id of the loaded objects holding them (see
/// [`code_map`]).
impl Pool {
    /// Submits one item to run on a worker and returns at once with its [`Task`] (Python's
    /// `apply_async`, `ProcessPoolExecutor.submit`). Any number of tasks and calls may run at
    /// once, from any number of threads; take the outcome with [`Task::wait`], or take finished
    /// tasks in order with [`as_completed`](crate::as_completed).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let tasks: Vec<_> = (1..=3u64).map(|n| pool.submit(|n: u64| (1..=n).product::<u64>(), n)).collect();
    /// let factorials: Vec<u64> = tasks.into_iter().map(|t| t.wait()).collect::<Result<_, _>>()?;
    /// assert_eq!(factorials, [1, 2, 6]);
    /// # Ok(()) }
    /// ```
    pub fn submit<'p, T, R>(&'p self, f: fn(T) -> R, item: T) -> Task<'p, R>
    where
        T: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().submit(f, item)
    }

    /// Submits one tuple of arguments for a function of several (like [`Pool::starmap`]).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool.starsubmit(|a: String, n: usize| a.repeat(n), ("ab".to_string(), 3));
    /// assert_eq!(task.wait()?, "ababab");
    /// # Ok(()) }
    /// ```
    pub fn starsubmit<'p, Args, R>(
        &'p self,
        f: <Args as StarArgs<R>>::Fn,
        args: Args,
    ) -> Task<'p, R>
    where
        Args: StarArgs<R> + Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().starsubmit(f, args)
    }

    /// Runs one item on a worker and waits for its outcome (Python's `Pool.apply`): a crash,
    /// panic or timeout is this call's error, and the pool lives on.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// assert_eq!(pool.apply(|s: String| s.to_uppercase(), "hi".to_string())?, "HI");
    /// # Ok(()) }
    /// ```
    pub fn apply<'p, T, R>(&'p self, f: fn(T) -> R, item: T) -> Result<R, Error>
    where
        T: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.options().apply(f, item)
    }
}

fn task_code(entry: EntryFn, function: u64) -> TaskCode {
    let entry = job::entry_address(entry);
    TaskCode {
        entry,
        function,
        code_id: code_map::code_id(entry, function),
    }
}

/// One call's options on a [`Pool`]: made by [`Pool::chunksize`], cheap to copy.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let by_four = pool.chunksize(4);
/// assert_eq!(by_four.map(|x: u8| x * 2, [1u8, 2, 3])?, [2, 4, 6]);
/// assert_eq!(by_four.starmap(|a: u8, b: u8| a - b, [(3u8, 1u8)])?, [2]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CallOptions<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl<'p> CallOptions<'p> {
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
    /// [`PoolBuilder::timeout`]). A zero limit makes the call return
    /// [`PoolError::InvalidTimeout`]; `Duration::MAX` means no limit.
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

    fn call<I, R>(
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
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let code = task_code(job::plain_entry::<T, R>, f as usize as u64);
        Imap::new(self.call(code, items.into_iter(), Delivery::Collected, None)).collect()
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
        T: Serialize + DeserializeOwned,
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
        T: Serialize + DeserializeOwned,
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
        Args: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let code = task_code(job::star_entry::<Args, R>, Args::address(f));
        Imap::new(self.call(code, items.into_iter(), Delivery::Collected, None)).collect()
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
        Args: StarArgs<R> + Serialize + DeserializeOwned,
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
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let code = task_code(job::context_entry::<C, T, R>, f as usize as u64);
        let mut encoded = Vec::new();
        let context = forkpool_worker::codec::encode_into(&mut encoded, context).map(|()| encoded);
        let delivery = Delivery::Collected;
        Imap::new(self.call(code, items.into_iter(), delivery, Some(context))).collect()
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
        T: Serialize + DeserializeOwned + 'p,
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
        Args: StarArgs<R> + Serialize + DeserializeOwned + 'p,
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
        T: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
    {
        self.submit(f, item).wait()
    }

    fn task<T, R>(self, code: TaskCode, item: T) -> Task<'p, R>
    where
        T: Serialize + DeserializeOwned + 'p,
        R: DeserializeOwned + 'p,
    {
        let spec = CallSpec {
            code,
            chunksize: Some(1),
            delivery: Delivery::Collected,
            context: None,
            timeout: self.timeout,
        };
        let shared = &self.pool.shared;
        match shared.hub() {
            Ok(hub) => {
                let mut call = Call::start(hub, shared.main(), Some(item).into_iter(), spec);
                call.start_sending();
                Task::new(Box::new(call))
            }
            Err(error) => Task::failed(error),
        }
    }
}
