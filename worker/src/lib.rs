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
//! - [`child`]: what a child does right after `fork`.
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

pub mod arena;
pub mod child;
pub mod code_map;
pub mod codec;
pub mod job;
mod panic;
pub mod progress;
pub mod protocol;
pub mod reply_ring;
mod serve;
mod sys;
pub mod wire;

pub use job::{ClosureRunner, EntryRunner, Runner, StarArgs, WorkerState};
pub use serve::{ChildEnd, InitFn, serve, serve_once};
