//! An item's outcome as the parent holds it, and how the outcomes a worker wrote in a reply
//! become item outcomes: results, or [`ItemError`]s naming the item and the worker.
//!
//! Invariants 1 and 6 of the design, here: a reply read for a chunk of `count` items gives
//! exactly `count` outcomes, whatever its bytes. A reply that holds another count, ends early,
//! or holds an outcome that cannot be read gives each item from there on an `ItemError::Codec`
//! that says why; nothing a worker sends makes the parent panic.

use crate::error::{CodecStage, Error, ItemError};
use forkpool_worker::protocol::{OutcomeReader, RawOutcome};
use serde::de::DeserializeOwned;

/// One item's outcome while the scheduler holds it. The error is boxed: `Error` is 64 bytes,
/// and every outcome is moved several times (reply, reorder buffer, caller); at 1M trivial
/// items per call the moves of unboxed errors were a visible share of the caller's time.
pub(crate) type Outcome<R> = Result<R, Box<Error>>;

/// The failed outcome `error`.
pub(crate) fn failed<R>(error: impl Into<Error>) -> Outcome<R> {
    Err(Box::new(error.into()))
}

/// Reads a reply's outcomes; items whose outcome is missing or unreadable get a codec error.
///
/// `outcomes` reads the body of a reply that says it holds `replied` outcomes, for a chunk of
/// `count` items starting at `first_index`, run by worker `pid`.
pub(crate) fn decode<R: DeserializeOwned>(
    mut outcomes: OutcomeReader<'_>,
    replied: u32,
    first_index: u64,
    count: u32,
    pid: u32,
) -> Vec<Outcome<R>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut broken: Option<String> = None;
    if replied != count {
        broken = Some(format!("reply holds {replied} outcomes for {count} items"));
    }
    for i in 0..u64::from(count) {
        let index = first_index + i;
        let codec_error = |stage, message| -> Outcome<R> {
            failed(ItemError::Codec {
                index,
                pid,
                stage,
                message,
            })
        };
        if let Some(message) = &broken {
            out.push(codec_error(CodecStage::DecodeResult, message.clone()));
            continue;
        }
        if let Some(value) = outcomes.read_ok::<R>() {
            out.push(Ok(value));
            continue;
        }
        let outcome = match outcomes.read::<R>() {
            Ok(RawOutcome::Ok(value)) => Ok(value),
            Ok(RawOutcome::Panicked { message, location }) => failed(ItemError::Panicked {
                index,
                pid,
                message,
                location,
            }),
            Ok(RawOutcome::BadInput(message)) => codec_error(CodecStage::DecodeItem, message),
            Ok(RawOutcome::BadOutput(message)) => codec_error(CodecStage::EncodeResult, message),
            Ok(RawOutcome::CodeNotLoaded(address)) => failed(ItemError::CodeNotLoaded {
                index,
                pid,
                address,
            }),
            Err(error) => {
                let message = error.to_string();
                broken = Some(message.clone());
                codec_error(CodecStage::DecodeResult, message)
            }
        };
        out.push(outcome);
    }
    out
}

#[cfg(test)]
mod fuzz_tests;
