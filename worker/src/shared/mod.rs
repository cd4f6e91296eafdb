//! The memory a worker shares with its parent.
//!
//! - [`progress`]: the shared mapping's layout and the worker's item counters in it.
//! - [`reply_ring`]: small replies written into shared memory instead of the socket.
//! - [`arena`]: big frames through shared memory, copied once, with checked spans.

pub mod arena;
pub mod progress;
pub mod reply_ring;
