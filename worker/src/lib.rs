//! The child side of [forkpool](https://docs.rs/forkpool): the worker loop, child set-up, and the
//! wire protocol both sides speak.
//!
//! Users do not call this crate directly; `forkpool` forks a process and runs [`serve`] (pool
//! workers) or [`serve_once`] (one closure) in it. The pieces:
//! - [`protocol`]: frame layouts for tasks, contexts, replies and the exit sentinel.
//! - [`arena`]: big frames through shared memory, copied once.
//! - [`codec`]: the item encoding (bincode 2, serde API).
//! - [`job`]: entries that decode items, call the user's function, encode outcomes.
//! - [`code_map`]: which code is mapped, so a worker calls only addresses valid in it.
//! - [`child`]: what a child does right after `fork` ([`child::setup`]), and its serve loop.
//!
//! Invariant: a worker answers every task with exactly one reply of one outcome per item, and
//! never lets a panic escape; a child leaves only through `_exit` in the parent crate's fork
//! module.
//!
//! Calling code by address is unsafe: [`serve`], [`Runner::run`], [`EntryRunner::new`] and the
//! entries of [`job`] are `unsafe fn`s, for the parent crate to use on frames it wrote.
//!
//! ```compile_fail,E0133
//! // `serve` cannot be called from safe code: it runs whatever task frames arrive.
//! fn worker(end: forkpool_worker::ChildEnd, runner: &mut dyn forkpool_worker::Runner) -> i32 {
//!     forkpool_worker::serve(end, None, runner)
//! }
//! ```

#![warn(missing_docs)]
// On docs.rs (`--cfg docsrs`, nightly): items behind a cargo feature or a platform say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Layers, each using only the ones below it (`.ci/layers` checks): `child` (what a forked
// child runs: set-up, the serve loop, jobs) > `proto` (frames, the wire, the item codec, the
// code map) > `shared` (the memory a worker shares with its parent: item counters, reply
// ring, arenas) > `sys` (the platform). `panic` (the hook and its report) is a leaf any layer
// may use. The modules the parent crate uses are re-exported here by name.
pub mod child;
mod panic;
pub mod proto;
pub mod shared;
mod sys;

pub use child::job;
pub use child::serve::{ChildEnd, InitFn, serve, serve_once};
pub use job::{ClosureRunner, EntryRunner, Runner, StarArgs, WorkerState};
pub use proto::{code_map, codec, protocol, wire};
pub use shared::{arena, progress, reply_ring};
