//! A `Pool`'s functions are fn pointers: a closure that captures anything is a type error
//! (E0308) on the call, whatever it captures, for `map`, `starmap` and `map_with` alike (the
//! Functions section of `Pool`'s docs says why and what to use instead).
//!
//! A closure that captures a `u64`, given to `map`, `starmap` or `map_with`:
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! let offset = 10u64;
//! let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &offset; x }, 0..10u64)?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! let offset = 10u64;
//! let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &offset; a + b }, [(1u64, 2u64)])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! let offset = 10u64;
//! let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &offset; c + x }, [1u64])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! One that captures a zero-sized value whose type has a destructor (a worker would have to
//! invent the value, and drop it):
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! struct Token;
//! impl Drop for Token {
//!     fn drop(&mut self) { println!("token dropped"); }
//! }
//! let token = Token;
//! let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &token; x }, 0..10u64)?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! struct Token;
//! impl Drop for Token {
//!     fn drop(&mut self) { println!("token dropped"); }
//! }
//! let token = Token;
//! let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &token; a + b }, [(1u64, 2u64)])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! struct Token;
//! impl Drop for Token {
//!     fn drop(&mut self) { println!("token dropped"); }
//! }
//! let token = Token;
//! let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &token; c + x }, [1u64])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! One that captures a zero-sized token (inventing it in a worker would forge whatever it
//! proves):
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! // A zero-sized proof that some check passed (only its module can make one).
//! struct Proof(());
//! let proof = Proof(());
//! let v: Vec<u64> = pool.map(move |x: u64| { let _keep = &proof; x }, 0..10u64)?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! // A zero-sized proof that some check passed (only its module can make one).
//! struct Proof(());
//! let proof = Proof(());
//! let v: Vec<u64> = pool.starmap(move |a: u64, b: u64| { let _keep = &proof; a + b }, [(1u64, 2u64)])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn main() -> Result<(), forkpool::Error> {
//! let pool = forkpool::Pool::new(1)?;
//! // A zero-sized proof that some check passed (only its module can make one).
//! struct Proof(());
//! let proof = Proof(());
//! let v: Vec<u64> = pool.map_with(&1u64, move |c: &u64, x: u64| { let _keep = &proof; c + x }, [1u64])?;
//! # let _ = v;
//! # Ok(()) }
//! ```
