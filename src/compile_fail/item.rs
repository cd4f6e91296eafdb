//! An item must be owned and serializable: a type without serde's derives is not an [`Item`]
//! (E0277, with a note that says to derive `Serialize` and `Deserialize`), and neither is a
//! reference (with a note that points to `parmap`, owned copies and `map_with`).
//!
//! [`Item`]: crate::Item
//!
//! ```compile_fail,E0277
//! # fn main() -> Result<(), forkpool::Error> {
//! struct Point {
//!     x: i32,
//! }
//! let pool = forkpool::Pool::new(1)?;
//! let xs: Vec<i32> = pool.map(|p: Point| p.x, [Point { x: 1 }])?;
//! # let _ = xs;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0277
//! # fn main() -> Result<(), forkpool::Error> {
//! let words = vec!["fork".to_string()];
//! let pool = forkpool::Pool::new(1)?;
//! let lens: Vec<usize> = pool.submit(|s: &String| s.len(), &words[0]).wait().map(|n| vec![n])?;
//! # let _ = lens;
//! # Ok(()) }
//! ```
