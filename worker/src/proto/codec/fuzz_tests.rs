//! Fuzz targets for [`decode`](super::decode) of nested types: arbitrary and mutated bytes
//! never panic, and what was encoded decodes back. `PROPTEST_CASES=100000 cargo test --release
//! fuzz` runs them longer.

use super::*;
use proptest::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A recursive type with every kind of serde level: enum, struct variant, tuple variant,
/// newtype, option, sequence, map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(u64),
    Text(String),
    Pair(Box<Tree>, Box<Tree>),
    Node {
        label: Option<String>,
        children: Vec<Tree>,
    },
    Table(BTreeMap<u8, Tree>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Tree::Leaf),
        ".{0,8}".prop_map(Tree::Text)
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tree::Pair(Box::new(a), Box::new(b))),
            (
                proptest::option::of(".{0,4}"),
                proptest::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(label, children)| Tree::Node { label, children }),
            proptest::collection::btree_map(any::<u8>(), inner, 0..3).prop_map(Tree::Table),
        ]
    })
}

/// Decodes `bytes` as several nested types: whatever the bytes, no panic, and a success never
/// claims more bytes than there are.
fn decode_all(bytes: &[u8]) {
    if let Ok((_, used)) = decode::<Tree>(bytes) {
        assert!(used <= bytes.len());
    }
    let _ = decode::<Vec<Option<(u8, String)>>>(bytes);
    let _ = decode::<BTreeMap<String, Vec<u32>>>(bytes);
    let _ = decode::<(String, Option<String>)>(bytes);
    let _ = decode::<Option<Option<Option<Vec<i64>>>>>(bytes);
}

proptest! {
    #[test]
    fn fuzz_codec_decode_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn fuzz_codec_decode_round_trips_and_survives_mutations(
        value in tree(),
        flip in any::<(usize, u8)>(),
        cut in any::<usize>(),
    ) {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &value).unwrap();
        let (back, used) = decode::<Tree>(&bytes).unwrap();
        prop_assert_eq!(back, value);
        prop_assert_eq!(used, bytes.len());
        decode_all(&bytes[..cut % (bytes.len() + 1)]);
        let at = flip.0 % bytes.len();
        bytes[at] ^= flip.1.max(1);
        decode_all(&bytes);
    }
}
