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

use crate::error::{CodecStage, Error, ItemError};
use forkpool_worker::job::Encoded;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::hash::Hash;

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

/// A keyed reduction's tables that the parent cannot read: a [`CodecStage::DecodeResult`]
/// failure of the merge, in no item's name.
fn unreadable(message: String) -> Error {
    Error::Combine(ItemError::Codec {
        index: 0,
        pid: 0,
        stage: CodecStage::DecodeResult,
        message,
    })
}

/// A merged table of a keyed reduction, decoded.
fn decode_table<A: DeserializeOwned>(table: &Encoded) -> Result<A, Error> {
    table.decode().map_err(unreadable)
}

/// How many partitions a keyed reduction splits each table into for `workers` workers: two per
/// worker, so that the merge step keeps every worker busy even when partitions differ in size.
pub(crate) fn keyed_partitions(workers: usize) -> u32 {
    u32::try_from(workers.max(1).saturating_mul(2)).unwrap_or(u32::MAX)
}

/// The chunks' tables (each split into `partitions` pieces, in order) regrouped by partition.
/// A chunk that answered another number of pieces fails the call.
pub(crate) fn by_partition(
    tables: impl Iterator<Item = Vec<Encoded>>,
    partitions: u32,
) -> Result<Vec<Vec<Encoded>>, Error> {
    let count = partitions as usize;
    let mut pieces: Vec<Vec<Encoded>> = (0..count).map(|_| Vec::new()).collect();
    for table in tables {
        if table.len() != count {
            return Err(unreadable(format!(
                "a chunk's table came back in {} partitions, not {count}",
                table.len()
            )));
        }
        for (partition, piece) in pieces.iter_mut().zip(table) {
            partition.push(piece);
        }
    }
    Ok(pieces)
}

/// Encoded tables of at least this many bytes in all are decoded on one thread per table: a
/// thread costs tens of µs to start, the decoding of a table of 1 MiB about a millisecond.
const THREADED_DECODE_MIN: usize = 1 << 20;

/// The merged partitions (disjoint in their keys) decoded (on one thread each when they are
/// large) and joined into one table. A table's encoding is that of its `(key, value)` pairs in
/// sequence, so each decodes as a `Vec` of pairs, and the pairs are inserted once.
pub(crate) fn join_partitions<K, V>(merged: Vec<Encoded>) -> Result<HashMap<K, V>, Error>
where
    K: Hash + Eq + DeserializeOwned + Send,
    V: DeserializeOwned + Send,
{
    let bytes: usize = merged.iter().map(|table| table.0.len()).sum();
    let decoded: Vec<Result<Vec<(K, V)>, Error>> = if bytes < THREADED_DECODE_MIN {
        merged.iter().map(decode_table).collect()
    } else {
        std::thread::scope(|scope| {
            let decoding: Vec<_> = merged
                .iter()
                .map(|table| {
                    // A thread that cannot be started leaves its table to this one.
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || decode_table::<Vec<(K, V)>>(table))
                        .map_err(|_| table)
                })
                .collect();
            decoding
                .into_iter()
                .map(|thread| match thread {
                    Ok(thread) => thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    Err(table) => decode_table(table),
                })
                .collect()
        })
    };
    let decoded = decoded.into_iter().collect::<Result<Vec<_>, Error>>()?;
    let mut total = HashMap::with_capacity(decoded.iter().map(Vec::len).sum());
    for pairs in decoded {
        total.extend(pairs);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkpool_worker::codec;

    fn encoded(pairs: &[(u8, u32)]) -> Encoded {
        let table: HashMap<u8, u32> = pairs.iter().copied().collect();
        Encoded(codec::encode(&table).unwrap())
    }

    #[test]
    fn two_partitions_per_worker() {
        assert_eq!(keyed_partitions(0), 2);
        assert_eq!(keyed_partitions(3), 6);
        assert_eq!(keyed_partitions(usize::MAX), u32::MAX);
    }

    #[test]
    fn pieces_are_regrouped_by_partition_in_chunk_order() {
        let chunks = vec![
            vec![Encoded(vec![1]), Encoded(vec![2])],
            vec![Encoded(vec![3]), Encoded(vec![4])],
        ];
        let pieces = by_partition(chunks.into_iter(), 2).unwrap();
        assert_eq!(
            pieces,
            [
                vec![Encoded(vec![1]), Encoded(vec![3])],
                vec![Encoded(vec![2]), Encoded(vec![4])]
            ]
        );
    }

    #[test]
    fn a_chunk_with_another_number_of_partitions_fails_the_merge() {
        let chunks = vec![
            vec![Encoded(vec![1]), Encoded(vec![2])],
            vec![Encoded(vec![3])],
        ];
        match by_partition(chunks.into_iter(), 2) {
            Err(Error::Combine(ItemError::Codec { message, .. })) => {
                assert!(message.contains("1 partitions, not 2"), "{message}")
            }
            other => panic!("expected a merge failure, got {other:?}"),
        }
    }

    #[test]
    fn partitions_are_joined_small_and_large() {
        let small = vec![encoded(&[(1, 10), (2, 20)]), encoded(&[(3, 30)])];
        let joined: HashMap<u8, u32> = join_partitions(small).unwrap();
        assert_eq!(joined, HashMap::from([(1, 10), (2, 20), (3, 30)]));
        // Over THREADED_DECODE_MIN in all: decoded on threads, the same result.
        let big: Vec<Encoded> = (0..3u32)
            .map(|p| {
                let table: HashMap<u32, u32> = (0..100_000u32).map(|k| (k * 3 + p, k)).collect();
                Encoded(codec::encode(&table).unwrap())
            })
            .collect();
        assert!(big.iter().map(|t| t.0.len()).sum::<usize>() >= THREADED_DECODE_MIN);
        let joined: HashMap<u32, u32> = join_partitions(big).unwrap();
        assert_eq!(joined.len(), 300_000);
        assert_eq!(joined[&(7 * 3 + 2)], 7);
    }

    #[test]
    fn an_unreadable_partition_fails_the_merge() {
        let broken = vec![Encoded(vec![0xff; 3])];
        let result: Result<HashMap<u8, u32>, Error> = join_partitions(broken);
        assert!(matches!(
            result,
            Err(Error::Combine(ItemError::Codec { .. }))
        ));
    }
}
