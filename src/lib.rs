//! A process pool for Rust, like Python's `multiprocessing.Pool` without its hangs.
//!
//! The parent forks worker processes once, sends them chunks of items bincode-encoded over
//! one socket per worker, and gets one outcome per item back. A panic, segfault, abort, timeout or
//! allocation past the memory limit in an item costs that item (its item gets an [`ItemError`]),
//! never the program or the pool: a dead worker is noticed, the item it was running fails with
//! the cause ([`ItemError::WorkerDied`], [`ItemError::TimedOut`], [`ItemError::OutOfMemory`]),
//! the rest of its chunk is sent again, a replacement is forked, and the call goes on. Workers
//! die with the program (even on `SIGKILL`), and a crash loop ends the call with
//! [`PoolError::CrashLoop`] instead of forking forever.
//!
//! ```
//! # fn main() -> Result<(), forkpool::Error> {
//! use forkpool::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = Pool::new(2)?;
//! let squares: Vec<u64> = pool.map(square, 0..1_000u64)?;
//! assert_eq!(squares[999], 998_001);
//! # Ok(()) }
//! ```
//!
//! The pieces:
//! - [`Pool`]: persistent workers for fn pointers (fn items and capture-free closures):
//!   [`Pool::map`],
//!   [`Pool::imap`], [`Pool::imap_unordered`], [`Pool::starmap`], [`Pool::map_with`], and
//!   per-call [`Pool::chunksize`] and [`Pool::timeout`]; [`PoolBuilder`] for timeouts,
//!   initializers, recycling, memory limits and the crash-loop guard; [`Pool::close`],
//!   [`Pool::join`], [`Pool::terminate`].
//! - [`Pool::fold`] and [`Pool::map_reduce`]: reductions inside the workers, one partial per
//!   chunk sent back.
//! - [`FnPool`] and [`parmap`]: workers forked holding one closure that may capture anything
//!   (built with the same [`PoolBuilder`], [`PoolBuilder::build_fn`]).
//! - [`Pool::stats`]: what each worker did and how ended workers ended; `tracing` events at
//!   debug level for forks, deaths, recycling, stops and crash-loop trips.
//! - [`ReturnProcess`]: one closure in one child, its value on `join`.
//! - [`par_eval`]: one contiguous piece of a slice per child, outputs concatenated.
//! - `mpi` (cargo feature `mpi`): the same calls across the ranks of an MPI job, each rank
//!   running items in its own local pool.
//! - [`Pool::submit`], [`Pool::apply`], [`as_completed`]: many callers and tasks on one pool;
//!   [`Pool::on_progress`] (and, with the cargo feature `progress`, `Pool::progress`): a report
//!   per finished item.
//!
//! Items and results travel bincode-encoded, so their types implement serde's `Serialize` and
//! `Deserialize` (derive them with your own `serde` dependency, or through [`serde`], re-exported
//! here, with `#[serde(crate = "forkpool::serde")]`).
//!
//! bincode is not self-describing: serde attributes that skip or reshape fields
//! (`skip_serializing_if`, `untagged`, `flatten`, internally tagged enums) and types that ask the
//! format what comes next (`serde_json::Value`) compile, then fail at run time with a
//! [`ItemError::Codec`] that names them. Use plain `Option` fields and externally tagged enums in
//! item and result types. A borrowed item (`&String`) is a compile error that points to
//! [`parmap`] (see [`Item`]).
//!
//! New here? The [`guide`] says which entry point fits, what chunksize does, what each failure
//! costs, and how calls from Python's `multiprocessing` and from procspawn translate.
//!
//! Platforms: Linux (tested); macOS is written and type-checked but has never run. Other
//! systems do not build.

#![warn(missing_docs)]
// On docs.rs (`--cfg docsrs`, nightly): items behind a cargo feature or a platform say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// A `tracing::debug!` event emitted once this thread holds no lock of the crate: a subscriber
/// is user code (see `call_queue::Due`). Costs one check of the level when debug events are off.
macro_rules! debug_unlocked {
    ($($event:tt)*) => {
        if tracing::enabled!(tracing::Level::DEBUG) {
            crate::engine::call_queue::Due::event(Box::new(move || tracing::debug!($($event)*)));
        }
    };
}

// The public API: one file per public noun (and `lifecycle`, `reduce`: the pools' shared state
// and reductions), over the internals in folders, each layer using only the ones below it
// (`.ci/layers` checks): `call` (one call, from input to one outcome per item) > `engine` (the
// workers and the scheduler) > `transport` (frames to and from one child) > `child` (making,
// signalling and reaping processes) > `sys` (the platform). `error`, `stats`, `item` and
// `id_hash` are leaves any layer may use.
mod builder;
mod call;
mod call_options;
mod child;
mod engine;
mod error;
mod fn_pool;
pub mod guide;
mod id_hash;
mod item;
mod iter;
mod lifecycle;
#[cfg(feature = "mpi")]
pub mod mpi;
mod one_shot;
mod pool;
mod process;
mod reduce;
mod stats;
mod sys;
mod task;
mod transport;

pub use builder::PoolBuilder;
pub use call::progress::Progress;
pub use call_options::CallOptions;
#[allow(deprecated)]
pub use call_options::FnCalls;
pub use child::zygote::zygote;
pub use error::{CodecStage, Death, Error, ItemError, PoolError, ProcessError};
// old names: begin
#[allow(deprecated)]
pub use error::TaskError;
// old names: end
pub use fn_pool::FnPool;
pub use forkpool_worker::StarArgs;
/// The deepest an item or result may nest, in serde levels (each `Option`, sequence, map,
/// struct, enum and newtype struct is one; `Box` is free). A result nested deeper fails its
/// item with [`ItemError::Codec`] ("nested deeper than 512 levels"); the program and the pool
/// live on. Decoding never overflows the calling thread's stack, and a value within the limit
/// drops in under 64 KiB of stack.
///
/// ```
/// assert_eq!(forkpool::MAX_DEPTH, 512);
/// ```
pub use forkpool_worker::codec::MAX_DEPTH;
/// The most bytes the results of one chunk may take together, encoded (1 GiB): the parent holds
/// a chunk's reply whole, so this bounds what a worker can make it hold. A result that would
/// take its chunk past it fails its item alone with [`ItemError::Codec`] (stage
/// [`CodecStage::EncodeResult`], naming this limit); the other items keep their results. With
/// results this big, use a small chunksize.
///
/// ```
/// assert_eq!(forkpool::MAX_REPLY_BYTES, 1 << 30);
/// ```
pub use forkpool_worker::protocol::MAX_REPLY_BYTES;
pub use item::Item;
pub use iter::{Imap, ImapUnordered};
pub use one_shot::{par_eval, parmap};
pub use pool::Pool;
pub use process::ReturnProcess;
/// The serde this crate uses: item and result types need `Serialize` and `Deserialize`, and
/// `#[derive(forkpool::serde::Serialize, forkpool::serde::Deserialize)]` with
/// `#[serde(crate = "forkpool::serde")]` works without a `serde` line of your own.
///
/// ```
/// use forkpool::serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// #[serde(crate = "forkpool::serde")]
/// struct Point { x: i32, y: i32 }
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(1)?;
/// let moved = pool.map(|p: Point| Point { x: p.x + 1, y: p.y }, [Point { x: 1, y: 2 }])?;
/// assert_eq!(moved, [Point { x: 2, y: 2 }]);
/// # Ok(()) }
/// ```
pub use serde;
pub use stats::{PoolStats, WorkerEnd, WorkerStats};
pub use task::{AsCompleted, Task, as_completed, wait_all};

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
mod compile_fail;
