//! What the parent and a worker say to each other, and how.
//!
//! - [`protocol`]: frame layouts for tasks, contexts, replies and the exit sentinel.
//! - [`wire`]: frames over a datagram socket (whole, or in parts).
//! - [`codec`]: the item encoding (bincode 2, serde API), guarded against lying lengths and
//!   deep nesting.
//! - [`code_map`]: which code is mapped, so a worker calls only addresses valid in it.

pub mod code_map;
pub mod codec;
pub mod protocol;
pub mod wire;
