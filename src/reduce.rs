//! Reductions: [`Pool::fold`](crate::Pool::fold), [`Pool::map_reduce`](crate::Pool::map_reduce)
//! and [`Pool::reduce_by_key`](crate::Pool::reduce_by_key) (and their
//! [`CallOptions`](crate::CallOptions) forms). Each chunk is reduced inside its worker, so that
//! one partial result per chunk travels back; the partials are then combined inside the
//! workers too, and the parent decodes only the final value.
//!
//! Underneath, a reduction is a collected call whose items answer `Option<Encoded>`: `None` for
//! an item folded into its chunk's accumulator, `Some(partial)` for the last item folded into
//! it, the partial encoded and carried as bytes (see `forkpool_worker::job::fold_entry`). Every
//! item still has its own outcome, so failures, crashes, timeouts and progress work per item as
//! in a `map`. Then *combine steps*, each a collected call of chunksize 1 whose items are groups
//! of partials: the parent moves the partials' bytes into the groups without decoding them, a
//! worker decodes a group's partials, combines them in order and encodes the result
//! (`forkpool_worker::job::combine_entry`). A failure in a combine step (the combine function
//! panicked or killed its worker) fails the reduction with
//! [`Error::Combine`](crate::Error::Combine).
//!
//! A keyed reduction splits each chunk's table into partitions by key; its combine step merges
//! each partition's tables in one worker, and the parent only joins the merged partitions.

use crate::error::Error;
use forkpool_worker::job::Encoded;
use std::ops::Range;

/// How a combine step groups `count` partials (in input order) for `workers` workers:
/// contiguous ranges, at most one per worker and each of at least two partials, so that a
/// reduction of `p` partials takes about `log_w(p)` steps and each step keeps every worker busy.
/// A last range of one partial goes on to the next step as it is, uncombined.
pub(crate) fn combine_groups(count: usize, workers: usize) -> Vec<Range<usize>> {
    if count < 2 {
        return Vec::new();
    }
    let size = count.div_ceil(workers.max(1)).max(2);
    (0..count)
        .step_by(size)
        .map(|start| start..(start + size).min(count))
        .collect()
}

/// One combine step's input: `partials` cut into the groups [`combine_groups`] gives, and the
/// last partial when it is alone in its group (it skips the step).
pub(crate) fn group_partials(
    partials: Vec<Encoded>,
    workers: usize,
) -> (Vec<Vec<Encoded>>, Option<Encoded>) {
    let ranges = combine_groups(partials.len(), workers);
    let mut rest = partials.into_iter();
    let mut groups: Vec<Vec<Encoded>> = ranges
        .iter()
        .map(|range| rest.by_ref().take(range.len()).collect())
        .collect();
    let alone = match groups.last() {
        Some(last) if last.len() == 1 => groups.pop().and_then(|mut g| g.pop()),
        _ => None,
    };
    (groups, alone)
}

/// An error of a combine step, as the reduction reports it: an item's failure there is the
/// combine function's ([`Error::Combine`]); the pool's own errors stay as they are.
pub(crate) fn combine_error(error: Error) -> Error {
    match error {
        Error::Task(item) => Error::Combine(item),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_step_for_fewer_than_two_partials() {
        assert!(combine_groups(0, 4).is_empty());
        assert!(combine_groups(1, 4).is_empty());
    }

    #[test]
    fn groups_cover_every_partial_once_in_order() {
        for count in 2..200 {
            for workers in 1..9 {
                let groups = combine_groups(count, workers);
                let mut next = 0;
                for g in &groups {
                    assert_eq!(g.start, next, "{count} partials, {workers} workers");
                    assert!(!g.is_empty());
                    next = g.end;
                }
                assert_eq!(next, count);
                assert!(groups.len() <= workers);
                // Only the last group may hold a single partial.
                for g in &groups[..groups.len() - 1] {
                    assert!(
                        g.len() >= 2,
                        "{count} partials, {workers} workers: {groups:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_step_makes_progress_and_ends_in_one_value() {
        for count in 2..300 {
            for workers in 1..9 {
                let mut left = count;
                let mut steps = 0;
                while left > 1 {
                    let groups = combine_groups(left, workers);
                    assert!(groups.len() < left, "a step must shrink {left}");
                    left = groups.len();
                    steps += 1;
                }
                assert!(steps <= 2 + count.ilog2() as usize);
            }
        }
    }

    #[test]
    fn two_workers_two_groups_then_one() {
        assert_eq!(combine_groups(16, 2), vec![0..8, 8..16]);
        assert_eq!(combine_groups(2, 2), vec![0..2]);
        assert_eq!(combine_groups(5, 2), vec![0..3, 3..5]);
        assert_eq!(combine_groups(3, 8), vec![0..2, 2..3]);
    }

    #[test]
    fn a_lone_last_partial_skips_the_step() {
        let partials: Vec<Encoded> = (0..3u8).map(|i| Encoded(vec![i])).collect();
        let (groups, alone) = group_partials(partials, 8);
        assert_eq!(groups, vec![vec![Encoded(vec![0]), Encoded(vec![1])]]);
        assert_eq!(alone, Some(Encoded(vec![2])));
        let partials: Vec<Encoded> = (0..4u8).map(|i| Encoded(vec![i])).collect();
        let (groups, alone) = group_partials(partials, 2);
        assert_eq!(groups.len(), 2);
        assert_eq!(alone, None);
    }
}
