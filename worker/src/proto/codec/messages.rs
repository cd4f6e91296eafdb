//! bincode's errors as sentences: its own `Display` is its `Debug` form (`OtherString("..")`,
//! `UnexpectedVariant { .. }`), which tells a user neither what went wrong nor what to change.
//!
//! A serde `custom` error (a `Serialize` or `Deserialize` impl refusing a value, the depth
//! limit) is shown in its own words. A decoding error of the kinds that a type encoding
//! differently than it decodes produces ends with [`NOT_SELF_DESCRIBING`], naming the serde
//! attributes that do that under bincode.

use bincode::error::{AllowedEnumVariants, DecodeError, EncodeError};
use bincode::serde::{DecodeError as SerdeDecode, EncodeError as SerdeEncode};

/// Appended to decoding errors that a type whose encoding and decoding disagree produces.
pub const NOT_SELF_DESCRIBING: &str = " (bincode is not self-describing: serde attributes that \
skip or reshape fields, such as skip_serializing_if, untagged, flatten or tag, make a type \
encode differently than it decodes; remove them from item and result types, or use \
`Option` fields without them)";

/// A sequence or map that does not say its length up front: what `#[serde(flatten)]` writes.
const UNKNOWN_LENGTH: &str = "a sequence or map of unknown length cannot be encoded, as bincode \
writes the length first (serde's flatten writes its struct as such a map: remove \
#[serde(flatten)] from item and result types; a Serialize impl must give serialize_seq and \
serialize_map a length)";

/// What went wrong encoding a value, as a sentence.
pub fn encode_error(error: EncodeError) -> String {
    match error {
        EncodeError::OtherString(message) => message,
        EncodeError::Other(message) => message.to_string(),
        EncodeError::Serde(SerdeEncode::SequenceMustHaveLength) => UNKNOWN_LENGTH.to_string(),
        EncodeError::RefCellAlreadyBorrowed { type_name, .. } => {
            format!("a RefCell<{type_name}> was already mutably borrowed")
        }
        EncodeError::LockFailed { type_name } => format!("the lock of a {type_name} is poisoned"),
        EncodeError::InvalidSystemTime { time, .. } => {
            format!("the SystemTime {time:?} is before the Unix epoch")
        }
        EncodeError::InvalidPathCharacters => "a path is not valid UTF-8".to_string(),
        EncodeError::Io { inner, .. } => format!("the output failed: {inner}"),
        EncodeError::UnexpectedEnd => "the output ended before the value".to_string(),
        other => format!("bincode refused the value: {other:?}"),
    }
}

/// What went wrong decoding a value, as a sentence.
pub fn decode_error(error: DecodeError) -> String {
    let (sentence, reshaped) = match error {
        DecodeError::OtherString(message) => (message, false),
        DecodeError::Other(message) => (message.to_string(), false),
        DecodeError::UnexpectedEnd { additional } => (
            format!("the bytes ended {additional} byte(s) before the value did"),
            true,
        ),
        DecodeError::UnexpectedVariant {
            type_name,
            allowed,
            found,
        } => (
            format!(
                "found variant {found} of {type_name}, which has {}",
                variants(allowed)
            ),
            true,
        ),
        DecodeError::InvalidBooleanValue(value) => (
            format!("found {value} where a bool (0 or 1) was expected"),
            true,
        ),
        DecodeError::InvalidCharEncoding(bytes) => {
            (format!("found {bytes:?} where a char was expected"), true)
        }
        DecodeError::Utf8 { inner } => (format!("a string is not valid UTF-8: {inner}"), true),
        DecodeError::InvalidIntegerType { expected, found } => (
            format!("found an integer encoded as {found:?} where {expected:?} was expected"),
            true,
        ),
        DecodeError::NonZeroTypeIsZero { non_zero_type } => (
            format!("found 0 where a non-zero {non_zero_type:?} was expected"),
            true,
        ),
        DecodeError::ArrayLengthMismatch { required, found } => (
            format!("an array of {required} elements was encoded with {found}"),
            true,
        ),
        DecodeError::OutsideUsizeRange(n) => (format!("a length of {n} does not fit here"), true),
        DecodeError::EmptyEnum { type_name } => (
            format!("found a value of {type_name}, an enum with no variants"),
            true,
        ),
        DecodeError::InvalidDuration { secs, nanos } => (
            format!("found an invalid Duration ({secs} s and {nanos} ns)"),
            true,
        ),
        DecodeError::CStringNulError { position } => {
            (format!("a CString has a nul byte at {position}"), true)
        }
        DecodeError::Serde(SerdeDecode::AnyNotSupported) => (
            "the type asks the format what comes next (`deserialize_any`: serde's untagged or \
             flatten, serde_json::Value and the like), which bincode cannot tell"
                .to_string(),
            true,
        ),
        DecodeError::Serde(SerdeDecode::IdentifierNotSupported) => (
            "the type decodes field or variant names, which bincode does not write".to_string(),
            true,
        ),
        DecodeError::Serde(SerdeDecode::IgnoredAnyNotSupported) => (
            "the type skips unknown data (`deserialize_ignored_any`), which bincode cannot"
                .to_string(),
            true,
        ),
        DecodeError::Serde(SerdeDecode::CannotBorrowOwnedData) => (
            "the type borrows from its input (a &str or &[u8] field): use owned types (String, \
             Vec<u8>)"
                .to_string(),
            false,
        ),
        other => (format!("bincode refused the bytes: {other:?}"), true),
    };
    match reshaped {
        true => sentence + NOT_SELF_DESCRIBING,
        false => sentence,
    }
}

/// The variants an enum allows, in words: "variants 0 to 1", "variants 0, 2 or 5".
fn variants(allowed: &AllowedEnumVariants) -> String {
    match allowed {
        AllowedEnumVariants::Range { min, max } => format!("variants {min} to {max}"),
        AllowedEnumVariants::Allowed([]) => "no variants".to_string(),
        AllowedEnumVariants::Allowed([only]) => format!("only variant {only}"),
        AllowedEnumVariants::Allowed([rest @ .., last]) => {
            let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
            format!("variants {} or {last}", rest.join(", "))
        }
        other => format!("the variants {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_variants_read_as_words() {
        let range = AllowedEnumVariants::Range { min: 0, max: 1 };
        assert_eq!(variants(&range), "variants 0 to 1");
        assert_eq!(variants(&AllowedEnumVariants::Allowed(&[])), "no variants");
        assert_eq!(
            variants(&AllowedEnumVariants::Allowed(&[3])),
            "only variant 3"
        );
        let list = AllowedEnumVariants::Allowed(&[0, 2, 5]);
        assert_eq!(variants(&list), "variants 0, 2 or 5");
    }
}
