//! [`Item`]: what a pool's items must be (owned and serializable), with the compiler's message
//! for what they must not (borrowed data).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What can travel to a worker as an item: an owned value that is `Serialize` and
/// `DeserializeOwned` (so bincode encodes it in the parent and decodes it in the worker).
/// Implemented for every such type; nothing to implement by hand. A type of yours becomes one
/// with `#[derive(Serialize, Deserialize)]` (serde's; the compiler's error says so).
///
/// A borrowed item (`pool.map(|s: &String| s.len(), &words)`) is not one: the worker runs in
/// another process, where the parent's reference means nothing. The compiler says so and points
/// to the ways out: [`parmap`](crate::parmap) (and [`par_eval`](crate::par_eval)) read the
/// items from the workers' copy-on-write view of the slice and send only indices;
/// `words.iter().cloned()` (or owned items from the start) sends copies;
/// [`Pool::map_with`](crate::Pool::map_with) sends shared read-only data once per worker.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let words = vec!["fork".to_string(), "pool".to_string()];
/// let pool = forkpool::Pool::new(2)?;
/// assert_eq!(pool.map(|s: String| s.len(), words.iter().cloned())?, [4, 4]);
/// assert_eq!(forkpool::parmap(|s: &String| s.len(), &words)?, [4, 4]);
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), forkpool::Error> {
/// let words = vec!["fork".to_string()];
/// let pool = forkpool::Pool::new(1)?;
/// pool.map(|s: &String| s.len(), &words)?; // a borrowed item: not an `Item`
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to a worker as an item: items must be owned and `Serialize + DeserializeOwned`",
    label = "not an owned, serializable item",
    note = "if `{Self}` is a type of yours, derive both: `#[derive(serde::Serialize, serde::Deserialize)]` (or through `forkpool::serde`, with `#[serde(crate = \"forkpool::serde\")]`); if it comes from another crate, look for a `serde` feature of that crate",
    note = "if `{Self}` is a reference: a worker is another process, where a reference into the parent's memory means nothing; `forkpool::parmap(f, &items)` (or `par_eval`) reads borrowed items from the workers' copy of the slice; or send owned copies with `items.iter().cloned()`; or share read-only data with `pool.map_with(&data, f, indices)`"
)]
pub trait Item: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Item for T {}
