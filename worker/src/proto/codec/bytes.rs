//! Byte vectors (`Vec<u8>`, `[u8]`, `Box<[u8]>`) written and read as one run of bytes, not one
//! serde call per byte, in the same bincode bytes.
//!
//! serde writes a `Vec<u8>` as a sequence of `u8`s and reads it back one element at a time;
//! bincode writes a sequence as its length (varint) then each element, and a `u8` as one byte,
//! which is exactly how it writes a byte string (`serialize_bytes`: the length, then the bytes).
//! So a byte vector may go through bincode's byte-string path both ways without changing a
//! byte on the wire, at the speed of a `memcpy`.
//!
//! - Encoding: [`Bytes`] wraps a value and [`Adapter`] wraps the serializer, so every value
//!   serde hands down (the top value, struct and tuple fields, sequence elements, map keys and
//!   values, `Some`, newtype structs and variants) is looked at by its static type: one of
//!   `Vec<u8>`, `[u8]`, `Box<[u8]>` or `&[u8]` is written with `serialize_bytes`, anything else
//!   goes on through the adapter. The check is a comparison of type ids that the compiler
//!   folds: no cost at run time. Not covered: a byte vector behind a pointer whose `Serialize`
//!   forwards without serde seeing the type (`Box<Vec<u8>>`, `Rc`, `Arc`, `&Vec<u8>`): those
//!   keep the per-byte path.
//! - Decoding: [`is_byte_vec_visitor`] recognises serde's own visitor of `Vec<u8>` by its type
//!   id (which a probe deserializer learns from `Vec::<u8>::deserialize`), whichever path
//!   reached it (a field, `Option<Vec<u8>>`, a newtype, `Box<[u8]>`, `Box<Vec<u8>>`), and
//!   [`byte_vec`] reads the bytes with bincode's `deserialize_bytes`, which checks the claimed
//!   length against the bytes there are before anything is allocated, then copies them once.
//!   Only that visitor is recognised, not any visitor whose value is a `Vec<u8>`: a
//!   `Deserialize` impl of its own may read the same bytes differently.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};
use std::any::TypeId;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// Whether `T` is `U`. `T` need not be `'static`: the comparison erases lifetimes, so it is
/// only used with a `U` that has none, where they cannot differ.
#[inline(always)]
fn is<T: ?Sized, U: ?Sized + 'static>() -> bool {
    type_id::<T>() == TypeId::of::<U>()
}

/// The type id of `T` with its lifetimes erased (dtolnay's construction, the one bincode uses
/// through `unty::type_equal`). After inlining it is a constant.
#[inline(always)]
fn type_id<T: ?Sized>() -> TypeId {
    trait NonStaticAny {
        fn type_id(&self) -> TypeId
        where
            Self: 'static;
    }
    impl<T: ?Sized> NonStaticAny for PhantomData<T> {
        fn type_id(&self) -> TypeId
        where
            Self: 'static,
        {
            TypeId::of::<T>()
        }
    }
    let phantom = PhantomData::<T>;
    // SAFETY: widening the trait object's lifetime bound only lets `type_id` be called; it
    // reads no data (a `PhantomData` has none) and returns the id of `T`'s type, lifetimes
    // erased, which every caller treats as such.
    let erased = unsafe {
        std::mem::transmute::<&dyn NonStaticAny, &(dyn NonStaticAny + 'static)>(&phantom)
    };
    erased.type_id()
}

/// The bytes of `value` when its type is one whose serde encoding is a sequence of `u8`s.
#[inline(always)]
fn as_byte_slice<T: ?Sized>(value: &T) -> Option<&[u8]> {
    let at = value as *const T;
    // SAFETY (each arm): `T` is the named type (checked just before), which has no lifetime but
    // the reference's own, so the cast reads the value as itself.
    if is::<T, Vec<u8>>() {
        Some(unsafe { &*(at as *const Vec<u8>) }.as_slice())
    } else if is::<T, Box<[u8]>>() {
        Some(unsafe { &*(at as *const Box<[u8]>) })
    } else if is::<T, [u8]>() {
        // A `[u8]` is as many bytes long as it has elements.
        Some(unsafe { std::slice::from_raw_parts(at as *const u8, std::mem::size_of_val(value)) })
    } else if is::<T, &'static [u8]>() {
        // `T` is `&'a [u8]` for an 'a that outlives the borrow of `value`: read back with an
        // inferred lifetime within it, never as `'static`.
        Some(unsafe { *(at as *const &[u8]) })
    } else {
        None
    }
}

/// A value on its way to the serializer: written as a byte string when it is a byte vector
/// (see the module's doc), else serialized through the [`Adapter`].
pub(super) struct Bytes<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Serialize for Bytes<'_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match as_byte_slice(self.0) {
            Some(bytes) => serializer.serialize_bytes(bytes),
            None => self.0.serialize(Adapter(serializer)),
        }
    }
}

/// A serializer that hands every nested value to the one it wraps as a [`Bytes`].
pub(super) struct Adapter<S>(S);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        }
    )*};
}

impl<S: Serializer> Serializer for Adapter<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Adapter<S::SerializeSeq>;
    type SerializeTuple = Adapter<S::SerializeTuple>;
    type SerializeTupleStruct = Adapter<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Adapter<S::SerializeTupleVariant>;
    type SerializeMap = Adapter<S::SerializeMap>;
    type SerializeStruct = Adapter<S::SerializeStruct>;
    type SerializeStructVariant = Adapter<S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool) serialize_i8(v: i8) serialize_i16(v: i16) serialize_i32(v: i32)
        serialize_i64(v: i64) serialize_i128(v: i128) serialize_u8(v: u8) serialize_u16(v: u16)
        serialize_u32(v: u32) serialize_u64(v: u64) serialize_u128(v: u128)
        serialize_f32(v: f32) serialize_f64(v: f64) serialize_char(v: char)
        serialize_str(v: &str) serialize_bytes(v: &[u8]) serialize_none() serialize_unit()
        serialize_unit_struct(name: &'static str)
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Bytes(value))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Bytes(value))
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Bytes(value))
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Adapter)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Adapter)
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Adapter)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Adapter)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Adapter)
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Adapter)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Adapter)
    }

    #[inline]
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound serializers: each element, field, key and value goes down as a [`Bytes`].
macro_rules! compound {
    ($($trait:ident { $($method:ident($($arg:ident: $ty:ty),*))* $(; $skip:ident)? })*) => {$(
        impl<S: ser::$trait> ser::$trait for Adapter<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            $(
                #[inline]
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($arg: $ty,)*
                    value: &T,
                ) -> Result<(), S::Error> {
                    self.0.$method($($arg,)* &Bytes(value))
                }
            )*

            $(
                #[inline]
                fn $skip(&mut self, key: &'static str) -> Result<(), S::Error> {
                    self.0.$skip(key)
                }
            )?

            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    )*};
}

compound! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeStruct { serialize_field(key: &'static str); skip_field }
    SerializeStructVariant { serialize_field(key: &'static str); skip_field }
}

impl<S: ser::SerializeMap> ser::SerializeMap for Adapter<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Bytes(key))
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Bytes(value))
    }

    #[inline]
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), S::Error> {
        self.0.serialize_entry(&Bytes(key), &Bytes(value))
    }

    #[inline]
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

/// Whether `V` is serde's visitor of `Vec<u8>`, the one `Vec::<u8>::deserialize` hands to
/// `deserialize_seq`. Free for every visitor whose value is not a `Vec<u8>` (a folded type
/// check); for one that is, a call of `Vec::<u8>::deserialize` on a probe that notes the type of
/// its visitor and fails at once (no allocation; inlined, it folds to a constant).
///
/// Nothing is kept from one call to the next: a lazily set static would be a lock a forked
/// child could find held by a parent thread at the fork (invariant 8 of the design).
#[inline(always)]
pub(super) fn is_byte_vec_visitor<'de, V: Visitor<'de>>() -> bool {
    is::<V::Value, Vec<u8>>() && byte_vec_visitor() == Some(type_id::<V>())
}

/// The type of the visitor `Vec::<u8>::deserialize` gives `deserialize_seq` (`None` if serde
/// ever stopped calling `deserialize_seq` for it: then nothing is recognised).
#[inline]
fn byte_vec_visitor() -> Option<TypeId> {
    let seen = Cell::new(None);
    let _ = Vec::<u8>::deserialize(VisitorProbe(&seen));
    seen.get()
}

/// A deserializer that notes the type of the visitor given to `deserialize_seq` and fails.
struct VisitorProbe<'a>(&'a Cell<Option<TypeId>>);

/// The probe's only error: carries nothing, so failing costs nothing.
#[derive(Debug)]
struct Probed;

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probed")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Probed {
        Probed
    }
}

impl<'de> Deserializer<'de> for VisitorProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.0.set(Some(type_id::<V>()));
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Reads what serde's visitor of `Vec<u8>` would (a length, then that many bytes) as one byte
/// string: the length is checked against the bytes `de` holds before anything is allocated,
/// then the bytes are copied once. Call only when [`is_byte_vec_visitor::<V>`] holds; `de`
/// must be bincode's decoder of a slice, whose `deserialize_bytes` borrows.
#[inline]
pub(super) fn byte_vec<'de, D: Deserializer<'de>, V: Visitor<'de>>(
    de: D,
) -> Result<V::Value, D::Error> {
    assert!(is::<V::Value, Vec<u8>>());
    let bytes = de.deserialize_bytes(ByteVec)?;
    // SAFETY: `V::Value` is `Vec<u8>` (asserted above; the check folds away), which has no
    // lifetime: the copy moves the vector out of the `ManuallyDrop` as itself.
    let bytes = std::mem::ManuallyDrop::new(bytes);
    Ok(unsafe { std::mem::transmute_copy::<Vec<u8>, V::Value>(&bytes) })
}

/// Makes a `Vec<u8>` of a byte string.
struct ByteVec;

impl<'de> Visitor<'de> for ByteVec {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }
}
