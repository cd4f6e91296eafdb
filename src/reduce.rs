//! Reductions: [`Pool::fold`](crate::Pool::fold) and [`Pool::map_reduce`](crate::Pool::map_reduce) (and their [`CallOptions`](crate::CallOptions) forms), which
//! reduce each chunk inside its worker so that only one partial result per chunk travels back,
//! then combine the partials in the parent, in input order; and
//! [`Pool::reduce_by_key`](crate::Pool::reduce_by_key), whose tables are merged in the workers
//! too, one partition of keys per item of a merge step (see
//! `forkpool_worker::job::keyed_entry`); the parent only joins the merged partitions.
//!
//! Underneath, a reduction is a collected call whose items answer `Option<A>`: `None` for an item
//! folded into its chunk's accumulator, `Some(partial)` for the last item folded into it (see
//! `forkpool_worker::job::fold_entry`). Every item still has its own outcome, so failures,
//! crashes, timeouts and progress work per item as in a `map`.

use crate::error::Error;

/// An error of a keyed reduction's merge step, as the reduction reports it: an item's failure
/// there is the reduce function's ([`Error::Combine`]); the pool's own errors stay as they are.
pub(crate) fn combine_error(error: Error) -> Error {
    match error {
        Error::Task(item) => Error::Combine(item),
        other => other,
    }
}

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
