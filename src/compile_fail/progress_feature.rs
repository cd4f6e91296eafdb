//! Without the cargo feature `progress`, `progress()` and `progress_with(..)` exist only to fail
//! to compile with a message that names the feature (E0277), on a pool and on its options.
//!
//! ```compile_fail,E0277
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! let v: Vec<u8> = pool.progress().map(|x: u8| x, [1u8])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0277
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! let v: Vec<u8> = pool.chunksize(1).progress_with("label").map(|x: u8| x, [1u8])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0277
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::FnPool::new(1, |x: u8| x)?;
//! let v: Vec<u8> = pool.progress().map([1u8])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
