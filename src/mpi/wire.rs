//! The messages between the driver and the nodes, and the encodable forms of the local pool's
//! errors (an [`ItemError`] or [`PoolError`] that happened on a node crosses to the driver).

use crate::{CodecStage, Death, ItemError, PoolError};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::time::Duration;

/// What the driver sends a node. Every message of the driver to one node travels in order (one
/// communicator, one tag), so a `Cancel` is seen after the chunks it cancels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToNode {
    /// The start-up check passed: serve, and while running a chunk say `Alive` every `beat`.
    Welcome { beat: Duration },
    /// The start-up check failed (on this rank or another): say why and stop.
    Refuse { reason: String },
    /// Items to run.
    Chunk(Chunk),
    /// The `map_with` context of a call, sent before the first chunk of that call.
    Context { call: u64, bytes: ByteBuf },
    /// The call ended early: skip its chunks, stop the one running.
    Cancel { call: u64 },
    /// The driver is done: answer `Bye` and stop.
    Shutdown,
}

/// A run of consecutive items of one call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub call: u64,
    pub chunk: u64,
    /// Offsets from the anchor (see `identity`) of the entry the local pool runs, and of the
    /// user's function.
    pub entry: u64,
    pub function: u64,
    pub timeout: Option<Duration>,
    pub items: Vec<ByteBuf>,
}

/// What a node sends the driver.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToDriver {
    /// The start-up report of a node.
    Hello(Hello),
    /// A chunk ran: one outcome per item, in order, unless the pool failed first (then the
    /// outcomes are those of a first run of items and `pool_error` says why the rest have none).
    Done {
        call: u64,
        chunk: u64,
        outcomes: Vec<Outcome>,
        pool_error: Option<WirePoolError>,
        /// Time the node spent on the chunk.
        busy: Duration,
    },
    /// A chunk of a cancelled call, not run (or stopped).
    Skipped { call: u64, chunk: u64 },
    /// A chunk the node could not run at all (its code offsets are not code of the
    /// executable there).
    Refused { call: u64, chunk: u64, what: String },
    /// Sent every `beat` (see `Welcome`) while the node runs a chunk: it is not hung, however
    /// long an item takes.
    Alive,
    /// The answer to `Shutdown`: nothing more comes from this node.
    Bye,
}

/// Who a node is: checked against the driver before any work.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub exe_hash: u64,
    pub exe_len: u64,
    pub host: String,
    pub pid: u32,
    pub workers: usize,
    /// Why its local pool could not be built, if it could not.
    pub pool_error: Option<WirePoolError>,
}

/// One item's outcome: the encoded result, or its failure (index within the chunk).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Done(ByteBuf),
    Failed(WireTaskError),
}

/// An [`ItemError`], encodable.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireTaskError {
    Panicked {
        index: u64,
        pid: u32,
        message: String,
        location: Option<String>,
    },
    WorkerDied {
        index: u64,
        pid: u32,
        death: WireDeath,
    },
    TimedOut {
        index: u64,
        pid: u32,
        after: Duration,
    },
    OutOfMemory {
        index: u64,
        pid: u32,
        limit: u64,
    },
    Codec {
        index: u64,
        pid: u32,
        stage: u8,
        message: String,
    },
    Protocol {
        index: u64,
        pid: u32,
        what: String,
    },
    CodeNotLoaded {
        index: u64,
        pid: u32,
        address: u64,
    },
    PoolFailed {
        index: u64,
        cause: String,
    },
    Cancelled {
        index: u64,
    },
}

/// A [`Death`], encodable.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireDeath {
    Signal(i32),
    Exit(i32),
    Unknown,
}

const STAGES: [CodecStage; 4] = [
    CodecStage::EncodeItem,
    CodecStage::DecodeItem,
    CodecStage::EncodeResult,
    CodecStage::DecodeResult,
];

impl WireTaskError {
    /// The encodable form of `error`.
    pub fn from_task(error: &ItemError) -> Self {
        use WireTaskError as W;
        match error.clone() {
            ItemError::Panicked {
                index,
                pid,
                message,
                location,
            } => W::Panicked {
                index,
                pid,
                message,
                location,
            },
            ItemError::WorkerDied { index, pid, death } => W::WorkerDied {
                index,
                pid,
                death: match death {
                    Death::Signal(s) => WireDeath::Signal(s),
                    Death::Exit(c) => WireDeath::Exit(c),
                    Death::Unknown => WireDeath::Unknown,
                },
            },
            ItemError::TimedOut { index, pid, after } => W::TimedOut { index, pid, after },
            ItemError::OutOfMemory { index, pid, limit } => W::OutOfMemory { index, pid, limit },
            ItemError::Codec {
                index,
                pid,
                stage,
                message,
            } => W::Codec {
                index,
                pid,
                stage: STAGES.iter().position(|s| *s == stage).unwrap_or(1) as u8,
                message,
            },
            ItemError::Protocol { index, pid, what } => W::Protocol { index, pid, what },
            ItemError::CodeNotLoaded {
                index,
                pid,
                address,
            } => W::CodeNotLoaded {
                index,
                pid,
                address,
            },
            ItemError::PoolFailed { index, cause } => W::PoolFailed { index, cause },
            ItemError::Cancelled { index } => W::Cancelled { index },
        }
    }

    /// The [`ItemError`] again, its index moved by `first` (a node counts items from the
    /// start of its chunk, the caller from the start of the call).
    pub fn into_task(self, first: u64) -> ItemError {
        use WireTaskError as W;
        match self {
            W::Panicked {
                index,
                pid,
                message,
                location,
            } => ItemError::Panicked {
                index: first + index,
                pid,
                message,
                location,
            },
            W::WorkerDied { index, pid, death } => ItemError::WorkerDied {
                index: first + index,
                pid,
                death: match death {
                    WireDeath::Signal(s) => Death::Signal(s),
                    WireDeath::Exit(c) => Death::Exit(c),
                    WireDeath::Unknown => Death::Unknown,
                },
            },
            W::TimedOut { index, pid, after } => ItemError::TimedOut {
                index: first + index,
                pid,
                after,
            },
            W::OutOfMemory { index, pid, limit } => ItemError::OutOfMemory {
                index: first + index,
                pid,
                limit,
            },
            W::Codec {
                index,
                pid,
                stage,
                message,
            } => ItemError::Codec {
                index: first + index,
                pid,
                stage: STAGES
                    .get(usize::from(stage))
                    .copied()
                    .unwrap_or(CodecStage::DecodeItem),
                message,
            },
            W::Protocol { index, pid, what } => ItemError::Protocol {
                index: first + index,
                pid,
                what,
            },
            W::CodeNotLoaded {
                index,
                pid,
                address,
            } => ItemError::CodeNotLoaded {
                index: first + index,
                pid,
                address,
            },
            W::PoolFailed { index, cause } => ItemError::PoolFailed {
                index: first + index,
                cause,
            },
            W::Cancelled { index } => ItemError::Cancelled {
                index: first + index,
            },
        }
    }
}

/// A [`PoolError`], encodable. I/O errors keep their message only.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WirePoolError {
    CrashLoop {
        deaths: usize,
        within: Duration,
        last_causes: Vec<String>,
    },
    Init {
        pid: u32,
        message: String,
    },
    NoWorkers(usize),
    InvalidChunksize(usize),
    InvalidTimeout(Duration),
    InvalidWindow(usize),
    Fork(String),
    Channel(String),
    Thread(String),
    SharedMemory(String),
    Closed,
    /// Any other: its words.
    Other(String),
}

impl WirePoolError {
    /// The encodable form of `error`.
    pub fn from_pool(error: &PoolError) -> Self {
        use WirePoolError as W;
        match error {
            PoolError::CrashLoop {
                deaths,
                within,
                last_causes,
            } => W::CrashLoop {
                deaths: *deaths,
                within: *within,
                last_causes: last_causes.clone(),
            },
            PoolError::Init { pid, message } => W::Init {
                pid: *pid,
                message: message.clone(),
            },
            PoolError::NoWorkers { workers } => W::NoWorkers(*workers),
            PoolError::InvalidChunksize { chunksize } => W::InvalidChunksize(*chunksize),
            PoolError::InvalidTimeout { timeout } => W::InvalidTimeout(*timeout),
            PoolError::InvalidWindow { window } => W::InvalidWindow(*window),
            PoolError::Fork(e) => W::Fork(e.to_string()),
            PoolError::Channel(e) => W::Channel(e.to_string()),
            PoolError::Thread(e) => W::Thread(e.to_string()),
            PoolError::SharedMemory(e) => W::SharedMemory(e.to_string()),
            PoolError::Closed => W::Closed,
            other => W::Other(other.to_string()),
        }
    }

    /// The [`PoolError`] again.
    pub fn into_pool(self) -> PoolError {
        use WirePoolError as W;
        let io = std::io::Error::other;
        match self {
            W::CrashLoop {
                deaths,
                within,
                last_causes,
            } => PoolError::CrashLoop {
                deaths,
                within,
                last_causes,
            },
            W::Init { pid, message } => PoolError::Init { pid, message },
            W::NoWorkers(workers) => PoolError::NoWorkers { workers },
            W::InvalidChunksize(chunksize) => PoolError::InvalidChunksize { chunksize },
            W::InvalidTimeout(timeout) => PoolError::InvalidTimeout { timeout },
            W::InvalidWindow(window) => PoolError::InvalidWindow { window },
            W::Fork(m) => PoolError::Fork(io(m)),
            W::Channel(m) => PoolError::Channel(io(m)),
            W::Thread(m) => PoolError::Thread(io(m)),
            W::SharedMemory(m) => PoolError::SharedMemory(io(m)),
            W::Closed => PoolError::Closed,
            W::Other(m) => PoolError::Channel(io(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_errors_cross_with_their_index_moved_and_their_words_kept() {
        let errors = [
            ItemError::Panicked {
                index: 3,
                pid: 10,
                message: "boom".into(),
                location: Some("a.rs:1:2".into()),
            },
            ItemError::WorkerDied {
                index: 3,
                pid: 10,
                death: Death::Signal(11),
            },
            ItemError::TimedOut {
                index: 3,
                pid: 10,
                after: Duration::from_millis(300),
            },
            ItemError::OutOfMemory {
                index: 3,
                pid: 10,
                limit: 1 << 30,
            },
            ItemError::Codec {
                index: 3,
                pid: 10,
                stage: CodecStage::EncodeResult,
                message: "no".into(),
            },
            ItemError::CodeNotLoaded {
                index: 3,
                pid: 10,
                address: 0x1000,
            },
            ItemError::PoolFailed {
                index: 3,
                cause: "crash loop".into(),
            },
        ];
        for error in errors {
            let bytes = forkpool_worker::codec::encode(&WireTaskError::from_task(&error)).unwrap();
            let wire: WireTaskError = forkpool_worker::codec::decode_whole(&bytes).unwrap();
            let back = wire.into_task(100);
            assert_eq!(back.index(), 103);
            assert_eq!(
                back.to_string().replacen("item 103", "item 3", 1),
                error.to_string()
            );
        }
    }

    #[test]
    fn a_message_with_a_lying_length_or_a_deep_result_is_an_error_not_an_abort() {
        use forkpool_worker::codec::{decode_whole, encode};
        let done = ToDriver::Done {
            call: 1,
            chunk: 2,
            outcomes: vec![Outcome::Done(ByteBuf::from(vec![7u8; 3]))],
            pool_error: None,
            busy: Duration::from_millis(5),
        };
        let honest = encode(&done).unwrap();
        assert!(matches!(
            decode_whole::<ToDriver>(&honest).unwrap(),
            ToDriver::Done { outcomes, .. } if matches!(&outcomes[..], [Outcome::Done(b)] if b.len() == 3)
        ));
        // The outcome's length prefix (the byte before its three bytes) made to claim 1 TiB.
        let at = honest
            .windows(4)
            .position(|w| w == [3, 7, 7, 7])
            .expect("the outcome's length and bytes");
        let lie = [
            &honest[..at],
            &[253u8][..],
            &(1u64 << 40).to_le_bytes(),
            &honest[at + 1..],
        ]
        .concat();
        assert!(decode_whole::<ToDriver>(&lie).is_err());
        // A result nested 20,000 deep inside an honest message: the message decodes, the
        // result does not, on a small stack.
        #[derive(Debug, Deserialize)]
        enum Chain {
            End,
            Link(#[allow(dead_code)] Box<Chain>),
        }
        let mut deep = vec![1u8; 20_000];
        deep.push(0);
        let message = encode(&Outcome::Done(ByteBuf::from(deep))).unwrap();
        let outcome = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let Ok(Outcome::Done(bytes)) = decode_whole::<Outcome>(&message) else {
                    return Err("the message did not decode".to_string());
                };
                decode_whole::<Chain>(&bytes).map(|_| ())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.unwrap_err().contains("nested deeper than"));
        let _ = Chain::End;
    }

    #[test]
    fn a_crash_loop_crosses_whole() {
        let error = PoolError::CrashLoop {
            deaths: 4,
            within: Duration::from_secs(60),
            last_causes: vec!["worker 12 killed by SIGABRT (signal 6)".into()],
        };
        let back = WirePoolError::from_pool(&error).into_pool();
        assert!(matches!(back, PoolError::CrashLoop { deaths: 4, .. }));
        assert_eq!(back.to_string(), error.to_string());
    }
}
