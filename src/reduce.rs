//! Reductions: [`Pool::fold`] and [`Pool::map_reduce`] (and their [`CallOptions`] forms), which
//! reduce each chunk inside its worker so that only one partial result per chunk travels back,
//! then combine the partials in the parent, in input order.
//!
//! Underneath, a reduction is a collected call whose items answer `Option<A>`: `None` for an item
//! folded into its chunk's accumulator, `Some(partial)` for the last item folded into it (see
//! `forkpool_worker::job::fold_entry`). Every item still has its own outcome, so failures,
//! crashes, timeouts and progress work per item as in a `map`.

use crate::call::Delivery;
use crate::call_options::{CallOptions, task_code};
use crate::error::Error;
use crate::item::Item;
use crate::iter::Imap;
use crate::pool::Pool;
use forkpool_worker::code_map;
use forkpool_worker::codec;
use forkpool_worker::job::{self, ReduceCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Combines the partials of a reduction in the order they come (input order), or returns the
/// failure of the first item that failed (dropping the call cancels the rest).
pub(crate) fn combine_in_order<A>(
    outcomes: impl Iterator<Item = Result<Option<A>, Error>>,
    combine: fn(A, A) -> A,
) -> Result<Option<A>, Error> {
    let mut total = None;
    for outcome in outcomes {
        if let Some(partial) = outcome? {
            total = Some(match total {
                Some(total) => combine(total, partial),
                None => partial,
            });
        }
    }
    Ok(total)
}

impl<'p> CallOptions<'p> {
    /// [`Pool::fold`] with these options (the chunksize sets how many items each partial
    /// covers).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let sum = pool.chunksize(10).fold(|acc: u64, x: u64| acc + x, 0, |a, b| a + b, 1..=100u64)?;
    /// assert_eq!(sum, 5050);
    /// # Ok(()) }
    /// ```
    pub fn fold<T, A, I>(
        self,
        fold: fn(A, T) -> A,
        init: A,
        combine: fn(A, A) -> A,
        items: I,
    ) -> Result<A, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        A: Serialize + DeserializeOwned + Clone + 'static,
    {
        let code = task_code(job::fold_entry::<A, T>, fold as usize as u64);
        let mut encoded = Vec::new();
        let context = codec::encode_into(&mut encoded, &init).map(|()| encoded);
        let items = items.into_iter();
        let partials = self.call(code, items, Delivery::Collected, Some(context));
        Ok(combine_in_order(Imap::new(partials), combine)?.unwrap_or(init))
    }

    /// [`Pool::map_reduce`] with these options.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let longest = pool
    ///     .chunksize(2)
    ///     .map_reduce(|w: String| w.len(), usize::max, ["a", "abc", "ab"].map(String::from))?;
    /// assert_eq!(longest, Some(3));
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<T, R, I>(
        self,
        map: fn(T) -> R,
        reduce: fn(R, R) -> R,
        items: I,
    ) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        let code = task_code(job::reduce_entry::<T, R>, map as usize as u64);
        let reduce_code = ReduceCode {
            function: reduce as usize as u64,
            code_id: code_map::code_id(code.entry, reduce as usize as u64),
        };
        let mut encoded = Vec::new();
        let context = codec::encode_into(&mut encoded, &reduce_code).map(|()| encoded);
        let items = items.into_iter();
        let partials = self.call(code, items, Delivery::Collected, Some(context));
        combine_in_order(Imap::new(partials), reduce)
    }
}

impl Pool {
    /// Folds the items in parallel: each worker folds the items of each chunk it runs with
    /// `fold`, starting from a clone of `init`, and sends back only that chunk's partial result;
    /// the parent combines the partials with `combine`, in input order. No items: `init`.
    ///
    /// The same contract as toolz's `fold(binop, seq, default, combine=..)` and rayon's
    /// `fold(..).reduce(..)`: the result equals a serial fold when `init` is an identity of
    /// `combine` (0 for a sum, an empty map for counts) and `combine` is associative; `init`
    /// is folded in once per chunk. Set the chunksize with
    /// [`CallOptions::fold`] (the default is [`map`](Pool::map)'s).
    ///
    /// Like `map`, it returns the failure of the lowest-indexed item that failed (a panic, a
    /// crash, a timeout), and cancels the rest; the other items' partials are discarded.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::collections::BTreeMap;
    /// fn count(mut counts: BTreeMap<char, u32>, word: String) -> BTreeMap<char, u32> {
    ///     for c in word.chars() {
    ///         *counts.entry(c).or_default() += 1;
    ///     }
    ///     counts
    /// }
    /// fn merge(mut a: BTreeMap<char, u32>, b: BTreeMap<char, u32>) -> BTreeMap<char, u32> {
    ///     for (c, n) in b {
    ///         *a.entry(c).or_default() += n;
    ///     }
    ///     a
    /// }
    /// let pool = forkpool::Pool::new(2)?;
    /// let words = ["fork", "pool", "fold"].map(String::from);
    /// let counts = pool.fold(count, BTreeMap::new(), merge, words)?;
    /// assert_eq!(counts[&'o'], 4);
    /// # Ok(()) }
    /// ```
    pub fn fold<T, A, I>(
        &self,
        fold: fn(A, T) -> A,
        init: A,
        combine: fn(A, A) -> A,
        items: I,
    ) -> Result<A, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        A: Serialize + DeserializeOwned + Clone + 'static,
    {
        CallOptions::new(self).fold(fold, init, combine, items)
    }

    /// Maps every item with `map` and reduces the results with `reduce`, both in the workers:
    /// each worker reduces the results of each chunk it runs and sends back only that chunk's
    /// partial; the parent reduces the partials, in input order. `None` for no items.
    ///
    /// `reduce` must be associative for the result to equal a serial
    /// `items.map(map).reduce(reduce)`. Failures are as for [`map`](Pool::map): the lowest-indexed
    /// item that failed is returned, and the rest cancelled.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(2)?;
    /// let total = pool.map_reduce(|x: u64| x * x, |a, b| a + b, 1..=10u64)?;
    /// assert_eq!(total, Some(385));
    /// assert_eq!(pool.map_reduce(|x: u64| x, |a, b| a + b, Vec::new())?, None);
    /// # Ok(()) }
    /// ```
    pub fn map_reduce<T, R, I>(
        &self,
        map: fn(T) -> R,
        reduce: fn(R, R) -> R,
        items: I,
    ) -> Result<Option<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Item,
        R: Serialize + DeserializeOwned,
    {
        CallOptions::new(self).map_reduce(map, reduce, items)
    }
}
