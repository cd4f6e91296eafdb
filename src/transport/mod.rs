//! Frames to and from one worker process, over its socket pair and the memory it shares with
//! the parent.
//!
//! - `outbox`: sends chunk frames to one worker (small ones at once, big ones through its
//!   chunk arena, the rest by a send thread).
//! - `inbox`: reads every worker's replies and exits in one wait (socket frames, reply ring,
//!   reply arena).
//! - `peer`: one worker's end as the inbox sees it (its socket, notify pipe and shared memory).
//! - `outcome`: a reply's outcomes decoded into one result or error per item.
//! - `frame_buffers`: frame buffers a pool keeps between calls.

pub(crate) mod frame_buffers;
pub(crate) mod inbox;
pub(crate) mod outbox;
pub(crate) mod outcome;
pub(crate) mod peer;
