//! A handle whose drop cancels or discards work is `#[must_use]`: left unused, it warns
//! (an error under `#![deny(unused_must_use)]`). Each case that must not compile is followed
//! by the same code with the value used, which compiles.
//!
//! A `Task` dropped at once cancels its item:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! pool.submit(|x: u64| x + 1, 1);
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! let task = pool.submit(|x: u64| x + 1, 1);
//! assert_eq!(task.wait().unwrap(), 2);
//! ```
//!
//! An `Imap` (and an `ImapUnordered`) never iterated runs nothing:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! pool.imap(|x: u64| x + 1, 0..4u64);
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! pool.imap_unordered(|x: u64| x + 1, 0..4u64);
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! let imap = pool.imap(|x: u64| x + 1, 0..4u64);
//! assert_eq!(imap.count(), 4);
//! let unordered = pool.imap_unordered(|x: u64| x + 1, 0..4u64);
//! assert_eq!(unordered.count(), 4);
//! ```
//!
//! A `ReturnProcess` dropped kills its child:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! # fn main() -> Result<(), forkpool::PoolError> {
//! forkpool::ReturnProcess::spawn(|| 7u8)?;
//! # Ok(()) }
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! # fn main() -> Result<(), forkpool::Error> {
//! let child = forkpool::ReturnProcess::spawn(|| 7u8)?;
//! assert_eq!(child.join()?, 7);
//! # Ok(()) }
//! ```
//!
//! `as_completed`'s iterator, call options and a builder do nothing unused:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! forkpool::as_completed([pool.submit(|x: u64| x, 1)]);
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! pool.chunksize(2);
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::FnPool::new(1, |x: u64| x).unwrap();
//! pool.chunksize(2);
//! ```
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! forkpool::Pool::builder().workers(2);
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::builder().workers(2).build().unwrap();
//! let by_two = pool.chunksize(2);
//! assert_eq!(by_two.map(|x: u64| x, [1u64]).unwrap(), [1]);
//! let fn_pool = forkpool::FnPool::new(1, |x: u64| x).unwrap();
//! assert_eq!(fn_pool.chunksize(2).map([1u64]).unwrap(), [1]);
//! let tasks = [pool.submit(|x: u64| x, 1)];
//! for task in forkpool::as_completed(tasks) {
//!     assert_eq!(task.wait().unwrap(), 1);
//! }
//! ```
//!
//! A task's outcome taken by `try_wait` and dropped is lost:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! let mut task = pool.submit(|x: u64| x, 1);
//! task.try_wait();
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! let pool = forkpool::Pool::new(1).unwrap();
//! let mut task = pool.submit(|x: u64| x, 1);
//! let outcome = loop {
//!     if let Some(outcome) = task.try_wait() {
//!         break outcome;
//!     }
//!     std::thread::yield_now();
//! };
//! assert_eq!(outcome.unwrap(), 1);
//! ```
