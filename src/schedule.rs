//! Reading a reply's outcomes into one `Result` per item.

use crate::error::{CodecStage, Error, TaskError};
use forkpool_worker::codec;
use forkpool_worker::protocol;
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
/// `outcomes` is the body of a reply that says it holds `replied` outcomes, for a chunk of
/// `count` items starting at `first_index`.
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    outcomes: &[u8],
    replied: u32,
    first_index: u64,
    count: u32,
    pid: u32,
) -> Vec<Outcome<R>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut rest = outcomes;
    let mut broken: Option<String> = None;
    if replied != count {
        broken = Some(format!("reply holds {replied} outcomes for {count} items"));
    }
    for i in 0..u64::from(count) {
        let index = first_index + i;
        let codec_error = |stage, message| -> Outcome<R> {
            failed(TaskError::Codec {
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
        let Some((&tag, body)) = rest.split_first() else {
            broken = Some("reply ended early".into());
            out.push(codec_error(
                CodecStage::DecodeResult,
                "reply ended early".into(),
            ));
            continue;
        };
        let decoded = match tag {
            protocol::OK => codec::decode::<R>(body).map(|(v, used)| (Ok(v), used)),
            protocol::PANICKED => codec::decode::<(String, Option<String>)>(body).map(
                |((message, location), used)| {
                    let e = TaskError::Panicked {
                        index,
                        pid,
                        message,
                        location,
                    };
                    (failed(e), used)
                },
            ),
            protocol::BAD_INPUT | protocol::BAD_OUTPUT => {
                codec::decode::<String>(body).map(|(message, used)| {
                    let stage = if tag == protocol::BAD_INPUT {
                        CodecStage::DecodeItem
                    } else {
                        CodecStage::EncodeResult
                    };
                    (codec_error(stage, message), used)
                })
            }
            protocol::CODE_NOT_LOADED => codec::decode::<u64>(body).map(|(address, used)| {
                let e = TaskError::CodeNotLoaded {
                    index,
                    pid,
                    address,
                };
                (failed(e), used)
            }),
            other => Err(format!("unknown outcome tag {other}")),
        };
        match decoded {
            Ok((outcome, used)) => {
                out.push(outcome);
                rest = &body[used..];
            }
            Err(message) => {
                out.push(codec_error(CodecStage::DecodeResult, message.clone()));
                broken = Some(message);
            }
        }
    }
    out
}

#[cfg(test)]
mod fuzz_tests;
