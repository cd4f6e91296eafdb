//! What a forked child runs.
//!
//! - [`setup`]: what a child does right after `fork` (process group, signals, parent-death
//!   signal, memory limit, panic capture, exit codes).
//! - `serve`: the worker loop: read a chunk frame, run its items, reply.
//! - [`job`]: entries that decode items, call the user's function, encode outcomes.

pub mod job;
pub(crate) mod serve;
pub mod setup;
