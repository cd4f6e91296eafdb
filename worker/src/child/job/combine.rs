//! Keyed reductions inside the workers: the entries of `reduce_by_key`, which combine values
//! per key, split each chunk's table into partitions by key, and merge each partition's tables
//! in one worker.
//!
//! Tables travel as [`Encoded`]: a value encoded by the codec, carried as bytes. The parent
//! moves those bytes from a chunk's reply into the items of the merge step without decoding
//! them; only the merged partitions are decoded in the parent.

use super::fold::{checked_reduce, fold_runs};
use super::{WorkerState, fail_rest, run_items};

use crate::proto::codec;
use crate::proto::protocol::{Chunk, ReplyWriter};
use rustc_hash::FxBuildHasher;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::ser::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasher, Hash};

/// A value encoded by the codec, carried as bytes (its encoding on the wire is that of a byte
/// string: a length, then the bytes, copied at memory speed). Decode it with
/// [`Encoded::decode`] where the value is needed.
///
/// ```
/// use forkpool_worker::job::{AsEncoded, Encoded};
/// use forkpool_worker::codec;
/// let bytes = codec::encode(&AsEncoded(vec![1u32, 2])).unwrap();
/// let (carried, _) = codec::decode::<Encoded>(&bytes).unwrap();
/// assert_eq!(carried.decode::<Vec<u32>>().unwrap(), [1, 2]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl Encoded {
    /// The value these bytes encode, which must fill them exactly.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        codec::decode_whole(&self.0)
    }
}

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Encoded, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Encoded;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded value's bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Encoded, E> {
                Ok(Encoded(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Encoded, E> {
                Ok(Encoded(bytes))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Encoded, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(Encoded(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// A value that serializes as its own encoding carried as bytes: what an [`Encoded`] decodes
/// from. A value that cannot be encoded fails the serialization with the codec's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsEncoded<T>(pub T);

impl<T: Serialize> Serialize for AsEncoded<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = codec::encode(&self.0).map_err(S::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

/// The context of a keyed reduction: its reduce function (checked like a task's own function
/// before it is called) and into how many partitions each chunk's table is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedCode {
    /// The `fn(V, V) -> V` that combines two values of one key.
    pub reduce: super::ReduceCode,
    /// How many partitions a chunk's table is split into (at least 1).
    pub partitions: u32,
}

/// The partition of `key` among `partitions`: the same in every process of the pool (a hash
/// with no per-process key, unlike `HashMap`'s default).
pub fn partition_of<K: Hash + ?Sized>(key: &K, partitions: u32) -> usize {
    (FxBuildHasher.hash_one(key) % u64::from(partitions.max(1))) as usize
}

/// A keyed reduction's table in a worker: each value is `None` only while `reduce` runs on it
/// (taken out, combined, put back: one lookup per pair).
struct Table<K, V>(HashMap<K, Option<V>, FxBuildHasher>);

impl<K: Hash + Eq, V> Table<K, V> {
    fn with_capacity(capacity: usize) -> Self {
        Table(HashMap::with_capacity_and_hasher(capacity, FxBuildHasher))
    }

    /// Adds `value` to `key`'s entry, combining with `reduce` when the key is there.
    fn add(&mut self, key: K, value: V, reduce: fn(V, V) -> V) {
        match self.0.entry(key) {
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                *slot = match slot.take() {
                    Some(old) => Some(reduce(old, value)),
                    None => Some(value),
                };
            }
            Entry::Vacant(entry) => {
                entry.insert(Some(value));
            }
        }
    }
}

/// A table encodes as a map of its entries (the encoding of `HashMap<K, V>`, and of the
/// `Vec<(K, V)>` of its pairs).
impl<K: Serialize, V: Serialize> Serialize for Table<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self
            .0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        let len = self.0.values().filter(|v| v.is_some()).count();
        let mut map = serializer.serialize_map(Some(len))?;
        for (key, value) in entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Entry of a keyed reduction: maps each item with the `fn(T) -> M` at `task.code.function`
/// (`M` yields `(K, V)` pairs), combines the values of each key with the context's
/// `fn(V, V) -> V` over each run of items, in one table per partition ([`partition_of`]), and
/// answers the run's last item with those tables, each encoded (the others answer `None`, as
/// in a fold).
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), and the call's context an encoded
/// [`KeyedCode`] that the parent made from a `fn(V, V) -> V` of these types.
pub unsafe fn keyed_entry<T, M, K, V>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
) where
    T: DeserializeOwned,
    M: IntoIterator<Item = (K, V)>,
    K: Hash + Eq + Serialize,
    V: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `fn(T) -> M`.
    let map = unsafe { std::mem::transmute::<usize, fn(T) -> M>(task.code.function as usize) };
    // SAFETY: as the caller promises.
    unsafe { keyed_items(state, task, out, map) }
}

/// Entry of an `FnPool`'s keyed reduction: maps each item with the worker's closure (whose
/// results yield `(K, V)` pairs) and combines the values of each key as [`keyed_entry`] does.
///
/// # Safety
/// As for [`keyed_entry`], with the closure for the `fn(T) -> M`.
pub unsafe fn closure_keyed_entry<T, R, K, V>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    map: &dyn Fn(T) -> R,
) where
    T: DeserializeOwned,
    R: IntoIterator<Item = (K, V)>,
    K: Hash + Eq + Serialize,
    V: Serialize,
{
    // SAFETY: as the caller promises.
    unsafe { keyed_items(state, task, out, map) }
}

/// Maps each item with `map` and combines the values of each key with the context's
/// `fn(V, V) -> V` over each run of items, in one table per partition ([`partition_of`]), and
/// answers the run's last item with those tables, each encoded (the others answer `None`, as
/// in a fold).
///
/// # Safety
/// The call's context must be an encoded [`KeyedCode`] that the parent made from a
/// `fn(V, V) -> V` of these types (its code is checked with [`code_map::check`](crate::proto::code_map::check) before it is
/// called).
unsafe fn keyed_items<T, M, K, V>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    map: impl Fn(T) -> M,
) where
    T: DeserializeOwned,
    M: IntoIterator<Item = (K, V)>,
    K: Hash + Eq + Serialize,
    V: Serialize,
{
    let keyed = match state.context::<KeyedCode>(task.call) {
        Ok(keyed) => *keyed,
        Err(message) => return fail_rest(out, task.count, &message),
    };
    // SAFETY: the parent made `keyed.reduce` from a `fn(V, V) -> V` of these types (the
    // caller's promise).
    let Some(reduce) = (unsafe { checked_reduce::<V>(task, out, keyed.reduce) }) else {
        return;
    };
    let partitions = keyed.partitions.max(1);
    fold_runs(
        task,
        out,
        |run: Option<Vec<Table<K, V>>>, item: T| {
            let mut run =
                run.unwrap_or_else(|| (0..partitions).map(|_| Table::with_capacity(0)).collect());
            for (key, value) in map(item) {
                let part = partition_of(&key, partitions);
                run[part].add(key, value, reduce);
            }
            run
        },
        |run| run.into_iter().map(AsEncoded).collect::<Vec<_>>(),
    );
}

/// Entry of a keyed reduction's combine step: each item is one partition's tables from several
/// chunks (`Vec<Encoded>`, each the encoding of a `HashMap<K, V>`), merged into one with the
/// `fn(V, V) -> V` at `task.code.function`; the result is the merged table, encoded.
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), with `fn(V, V) -> V` for `fn(T) -> R`.
pub unsafe fn keyed_combine_entry<K, V>(
    _: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
) where
    K: Hash + Eq + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    // SAFETY: the caller promises the address is that of a callable `fn(V, V) -> V`.
    let reduce =
        unsafe { std::mem::transmute::<usize, fn(V, V) -> V>(task.code.function as usize) };
    run_items(task, out, |group: Vec<Encoded>| {
        // A table's encoding is that of its pairs in sequence: decoded as pairs, one piece at
        // a time, each pair is inserted once, into the merged table.
        let mut merged = Table::with_capacity(0);
        for piece in group {
            let pairs: Vec<(K, V)> = piece.decode().unwrap_or_else(|e| {
                panic!("a partition of a keyed reduction does not decode: {e}")
            });
            drop(piece);
            if merged.0.is_empty() {
                merged.0.reserve(pairs.len());
            }
            for (key, value) in pairs {
                merged.add(key, value, reduce);
            }
        }
        AsEncoded(merged)
    });
}

/// [`keyed_combine_entry`] for an `FnPool`'s workers: its signature is a
/// [`ClosureEntryFn`](super::ClosureEntryFn); the worker's closure is not called.
///
/// # Safety
/// As for [`keyed_combine_entry`].
pub unsafe fn closure_keyed_combine_entry<T, R, K, V>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    _: &dyn Fn(T) -> R,
) where
    K: Hash + Eq + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    // SAFETY: as the caller promises.
    unsafe { keyed_combine_entry::<K, V>(state, task, out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_encodes_as_its_pairs_and_as_a_map() {
        let mut table = Table::with_capacity(0);
        for (k, v) in [("a", 1u64), ("b", 2), ("a", 3)] {
            table.add(k.to_string(), v, |x, y| x + y);
        }
        let bytes = codec::encode(&table).unwrap();
        let mut pairs: Vec<(String, u64)> = codec::decode_whole(&bytes).unwrap();
        pairs.sort();
        assert_eq!(pairs, [("a".to_string(), 4), ("b".to_string(), 2)]);
        let map: HashMap<String, u64> = codec::decode_whole(&bytes).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["a"], 4);
    }

    #[test]
    fn encoded_carries_a_value_as_bytes() {
        let value = (7u8, "seven".to_string(), vec![1u64 << 40]);
        let bytes = codec::encode(&AsEncoded(&value)).unwrap();
        let (carried, used) = codec::decode::<Encoded>(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(carried.0, codec::encode(&value).unwrap());
        assert_eq!(carried.decode::<(u8, String, Vec<u64>)>().unwrap(), value);
        // Bytes left over after the value, or too few, are errors, not a wrong value.
        let mut longer = carried.clone();
        longer.0.push(0);
        assert!(longer.decode::<(u8, String, Vec<u64>)>().is_err());
        let shorter = Encoded(carried.0[..carried.0.len() - 1].to_vec());
        assert!(shorter.decode::<(u8, String, Vec<u64>)>().is_err());
    }

    #[test]
    fn partitions_are_in_range_and_the_same_for_a_key() {
        for partitions in [0u32, 1, 2, 7] {
            for key in ["", "a", "the", "forkpool"] {
                let p = partition_of(key, partitions);
                assert!(p < partitions.max(1) as usize);
                assert_eq!(p, partition_of(&key.to_string(), partitions));
            }
        }
        // Keys spread over the partitions.
        let used: std::collections::HashSet<usize> =
            (0..1000).map(|i| partition_of(&i.to_string(), 4)).collect();
        assert_eq!(used.len(), 4);
    }
}
