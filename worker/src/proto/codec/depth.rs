//! A serde `Deserializer` adapter that bounds how deep a value may nest and never lets decoding
//! overflow the calling thread's stack.
//!
//! Every level of nesting (`deserialize_option`, `_seq`, `_tuple`, `_tuple_struct`, `_map`,
//! `_struct`, `_enum`, `_newtype_struct`, `_any`, `_ignored_any`) costs one unit of depth; the
//! depth travels by value through wrapped [`Visitor`]s, [`SeqAccess`], [`MapAccess`],
//! [`EnumAccess`], [`VariantAccess`] and [`DeserializeSeed`]s, so no state is shared. Past
//! [`MAX_DEPTH`] levels decoding fails with "nested deeper than N levels". Before every 16th level the
//! adapter calls `crate::sys::with_stack`: on Linux, when less than [`RED_ZONE`] bytes of stack
//! remain, it continues on a fresh heap-allocated segment (`stacker::maybe_grow`). The structure
//! follows dtolnay's `serde_stacker`.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::fmt;

/// The deepest a decoded value may nest, in serde levels (an `Option`, a sequence, a map, a
/// struct, an enum and a newtype struct are one level each; `Box` is free). One level more is
/// an error: "the value is nested deeper than 512 levels".
///
/// Why this figure: decoding itself never overflows at any depth (see `RED_ZONE`), but the
/// decoded value is later dropped, and drop glue recurses once per level on the caller's own
/// stack. Measured (`cargo test -p forkpool-worker a_level_costs_little_stack -- --nocapture`
/// prints it), dropping costs 128 bytes per level in a debug build for a chain of one level per
/// `Box`, the worst case, so a value 512 levels deep drops in 64 KiB: well within a 256 KiB
/// thread. 512 levels still hold any legitimate parse tree (serde_json's default limit is 128).
pub const MAX_DEPTH: usize = 512;

/// Decoding continues on a new stack segment when less than this much stack is left. One level
/// of decoding costs about 1 KiB of stack in a debug build (measured with the test
/// `a_level_costs_little_stack`), and whatever the value's own `Deserialize` impl uses between
/// two levels must fit too: 64 KiB leaves a wide margin.
///
/// Growing rather than failing when the stack runs low (`stacker::remaining_stack`) was chosen
/// so that whether a value decodes never depends on which thread decodes it: a value within
/// [`MAX_DEPTH`] decodes on a 256 KiB thread as on the main thread. The check is a read of a
/// thread-local and of the stack pointer, once every [`CHECK_STACK_EVERY`] levels, never per
/// scalar.
const RED_ZONE: usize = 64 * 1024;

/// The error past [`MAX_DEPTH`].
fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!(
        "the value is nested deeper than {MAX_DEPTH} levels (forkpool's codec limit)"
    ))
}

/// A deserializer whose value sits `depth` levels down.
pub(super) struct Limited<D> {
    de: D,
    depth: usize,
}

/// A seed whose value sits `depth` levels down.
pub(super) struct Seed<S> {
    seed: S,
    depth: usize,
}

impl<S> Seed<S> {
    /// The seed of the top-level value.
    pub(super) fn new(seed: S) -> Self {
        Seed { seed, depth: 0 }
    }
}

/// Wraps `x` at the same depth.
struct Wrap<X> {
    inner: X,
    depth: usize,
}

/// The stack is checked on entering every this many levels, not every level: the check (a
/// thread-local and an out-of-line read of the stack pointer) measurably slowed the decoding of
/// shallow values such as `Option<Vec<u32>>` (29 ns each in a release build with a check
/// every level, 17 without; a scratch program, not kept), and [`RED_ZONE`] is far more than 16
/// levels use.
const CHECK_STACK_EVERY: usize = 16;

/// Enters one level: fails past the limit, grows the stack when it runs low.
#[inline]
fn enter<R, E: de::Error>(depth: usize, f: impl FnOnce(usize) -> Result<R, E>) -> Result<R, E> {
    if depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    if depth % CHECK_STACK_EVERY == CHECK_STACK_EVERY - 1 {
        grow_or_check(|| f(depth + 1))
    } else {
        f(depth + 1)
    }
}

macro_rules! scalars {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            // A scalar's visitor gets no nested deserializer: it needs no wrapping.
            self.de.$method(visitor)
        }
    )*};
}

macro_rules! levels {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let de = self.de;
            enter(self.depth, |depth| de.$method(Wrap { inner: visitor, depth }))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<D> {
    type Error = D::Error;

    scalars! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_bytes deserialize_unit deserialize_identifier
    }

    /// Borrows the string from the input, then copies it: bincode's own `deserialize_string`
    /// allocates the length the input claims before reading it, so eight bytes claiming an
    /// exabyte aborted the process (found by the fuzz targets). Borrowing checks the length
    /// against the bytes there are first; the visitor makes the same `String` from them.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_str(visitor)
    }

    /// As [`deserialize_string`](Self::deserialize_string), for byte buffers.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_bytes(visitor)
    }

    levels! { deserialize_any deserialize_ignored_any deserialize_option deserialize_map }

    /// A sequence is one level; serde's own `Vec<u8>` is read as one byte string (see
    /// `bytes`), at the same depth and from the same bytes.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let de = self.de;
        if super::bytes::is_byte_vec_visitor::<V>() {
            return enter(self.depth, |_| super::bytes::byte_vec::<D, V>(de));
        }
        enter(self.depth, |depth| {
            de.deserialize_seq(Wrap {
                inner: visitor,
                depth,
            })
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let inner = Wrap {
            inner: visitor,
            depth: self.depth,
        };
        self.de.deserialize_unit_struct(name, inner)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let de = self.de;
        enter(self.depth, |depth| {
            de.deserialize_newtype_struct(
                name,
                Wrap {
                    inner: visitor,
                    depth,
                },
            )
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let de = self.de;
        enter(self.depth, |depth| {
            de.deserialize_tuple(
                len,
                Wrap {
                    inner: visitor,
                    depth,
                },
            )
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let de = self.de;
        enter(self.depth, |depth| {
            de.deserialize_tuple_struct(
                name,
                len,
                Wrap {
                    inner: visitor,
                    depth,
                },
            )
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let de = self.de;
        enter(self.depth, |depth| {
            de.deserialize_struct(
                name,
                fields,
                Wrap {
                    inner: visitor,
                    depth,
                },
            )
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let de = self.de;
        enter(self.depth, |depth| {
            de.deserialize_enum(
                name,
                variants,
                Wrap {
                    inner: visitor,
                    depth,
                },
            )
        })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Limited {
            de,
            depth: self.depth,
        })
    }
}

macro_rules! visits {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visits! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Limited {
            de,
            depth: self.depth,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Limited {
            de,
            depth: self.depth,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Wrap {
            inner: seq,
            depth: self.depth,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Wrap {
            inner: map,
            depth: self.depth,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Wrap {
            inner: data,
            depth: self.depth,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let depth = self.depth;
        self.inner.next_element_seed(Seed { seed, depth })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let depth = self.depth;
        self.inner.next_key_seed(Seed { seed, depth })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let depth = self.depth;
        self.inner.next_value_seed(Seed { seed, depth })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Wrap<A::Variant>), A::Error> {
        let depth = self.depth;
        let (value, variant) = self.inner.variant_seed(Seed { seed, depth })?;
        Ok((
            value,
            Wrap {
                inner: variant,
                depth,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let depth = self.depth;
        self.inner.newtype_variant_seed(Seed { seed, depth })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let depth = self.depth;
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                depth,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let depth = self.depth;
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                depth,
            },
        )
    }
}

/// Runs `f` on enough stack: on Linux a fresh segment when this one runs low; on macOS, where
/// the stack cannot grow, an error when too little is left (see [`crate::sys`]).
fn grow_or_check<R, E: de::Error>(f: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
    crate::sys::with_stack(RED_ZONE, f).unwrap_or_else(|| {
        Err(E::custom(
            "the value is nested too deep for the decoding thread's stack",
        ))
    })
}
