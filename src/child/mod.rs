//! Making, signalling and reaping processes, and the descriptors they share.
//!
//! - `fork`: every fork of this crate, with the lock order it keeps.
//! - `channel`: the descriptor register (every descriptor this crate opens), socket pairs and
//!   shared mappings.
//! - `child_handle`: a forked process: its pid, pidfd and signals.
//! - `reaper`: the thread that waits for children's exits and posts them.
//! - `pool_worker`: the life of a `Pool` worker (the worker loop with the pool's initializer).
//! - `owner`: the process a value belongs to (a forked copy leaves it alone).
//! - `zygote`: a small process forked early that forks workers on request.

pub(crate) mod channel;
pub(crate) mod child_handle;
pub(crate) mod fork;
pub(crate) mod owner;
pub(crate) mod pool_worker;
pub(crate) mod reaper;
pub(crate) mod zygote;
