//! One-shot calls on borrowed data: [`parmap`] (an [`FnPool`] over a slice's indices) and
//! [`par_eval`] (one child per contiguous piece of a slice).

use crate::error::{Error, PoolError};
use crate::fn_pool::FnPool;
use crate::pool::default_workers;
use crate::process::ReturnProcess;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Forks workers holding `f`, maps it over `items`, and reaps the workers: one call, no set-up.
///
/// The items are not serialized: each worker reads them from its copy-on-write view of the
/// slice, and only indices travel. Results come back in order, or the lowest-indexed failure.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let words = vec!["apple", "fig", "banana"];
/// let lengths = forkpool::parmap(|w: &&str| w.len(), &words)?;
/// assert_eq!(lengths, [5, 3, 6]);
/// # Ok(()) }
/// ```
pub fn parmap<T, R, F>(f: F, items: &[T]) -> Result<Vec<R>, Error>
where
    F: Fn(&T) -> R,
    R: Serialize + DeserializeOwned,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let workers = default_workers().min(items.len());
    let pool = FnPool::new(workers, |i: usize| f(&items[i]))?;
    pool.map(0..items.len())
}

/// Splits `items` into `workers` contiguous pieces, runs `f` on each piece in its own forked
/// child, and concatenates the outputs in order. The input is never serialized; only outputs
/// travel back.
///
/// A failing piece fails the call with the index of the piece's first item.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let xs: Vec<f64> = (0..1000).map(f64::from).collect();
/// let doubled = forkpool::par_eval(4, &xs, |piece: &[f64]| piece.iter().map(|x| x * 2.0).collect())?;
/// assert_eq!(doubled[999], 1998.0);
/// # Ok(()) }
/// ```
pub fn par_eval<T, R, F>(workers: usize, items: &[T], f: F) -> Result<Vec<R>, Error>
where
    F: Fn(&[T]) -> Vec<R>,
    R: Serialize + DeserializeOwned,
{
    if workers == 0 {
        return Err(PoolError::NoWorkers { workers: 0 }.into());
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let pieces = workers.min(items.len());
    let bound = |i: usize| i * items.len() / pieces;
    let mut children = Vec::with_capacity(pieces);
    for i in 0..pieces {
        let piece = &items[bound(i)..bound(i + 1)];
        let f = &f;
        children.push((bound(i), ReturnProcess::spawn(move || f(piece))?));
    }
    let mut out = Vec::with_capacity(items.len());
    for (start, child) in children {
        match child.join() {
            Ok(mut values) => out.append(&mut values),
            Err(Error::Process(e)) => return Err(e.cause.at_index(start as u64).into()),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
