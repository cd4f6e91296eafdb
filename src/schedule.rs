//! One call on a pool: pulls input lazily into chunks, keeps every worker's window full, and
//! turns replies and deaths into one outcome per item, in input order or as they finish.
//!
//! Invariants:
//! - Every item pulled from the input gets exactly one outcome: its result, or an error naming
//!   its index (a panic, its worker's death, a codec failure).
//! - Memory is bounded by the work in flight: input is pulled only to fill a free window slot,
//!   and ordered calls dispatch at most `max_ahead` chunks past the oldest unfinished one, so
//!   the reorder buffer never holds more than that.

use crate::engine::{Engine, Happened, WorkerMain};
use crate::error::{CodecStage, Error, PoolError, TaskError};
use crate::shared::Lease;
use forkpool_worker::codec;
use forkpool_worker::protocol;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;

/// A chunk's frame stops growing past this many bytes of items when the chunksize is adaptive.
const ADAPTIVE_MAX_BYTES: usize = 1 << 20;
/// The largest adaptive chunk, in items.
const ADAPTIVE_MAX_ITEMS: usize = 1 << 16;
/// Adaptive chunks grow while a chunk keeps a worker busy for less than this...
const GROW_BELOW_NANOS: u64 = 2_000_000;
/// ...and shrink when it keeps it busy for more than this.
const SHRINK_ABOVE_NANOS: u64 = 20_000_000;

/// How a call cuts its input into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Exactly this many items per chunk (the last may be shorter).
    Fixed(usize),
    /// Starts at one item and doubles while chunks run for under 2 ms of worker time, halves
    /// when they run for over 20 ms: both a flood of tiny items and a few slow ones are served.
    Adaptive(usize),
}

impl Chunking {
    /// The chunksize asked for, or by default Python's rule for input of known length,
    /// ceil(len / (4 × workers)), and adaptive chunks for input of unknown length.
    fn choose<I: Iterator>(asked: Option<usize>, input: &I, workers: usize) -> Chunking {
        match (asked, input.size_hint()) {
            (Some(n), _) => Chunking::Fixed(n),
            (None, (lo, Some(hi))) if lo == hi => Chunking::Fixed(lo.div_ceil(4 * workers).max(1)),
            (None, _) => Chunking::Adaptive(1),
        }
    }

    fn items(&self) -> usize {
        match *self {
            Chunking::Fixed(n) | Chunking::Adaptive(n) => n,
        }
    }

    fn learn(&mut self, busy_nanos: u64, count: usize) {
        if let Chunking::Adaptive(n) = self {
            if busy_nanos < GROW_BELOW_NANOS && count >= *n {
                *n = (*n * 2).min(ADAPTIVE_MAX_ITEMS);
            } else if busy_nanos > SHRINK_ABOVE_NANOS {
                *n = (*n / 2).max(1);
            }
        }
    }
}

/// What a call needs besides its input: how to run a chunk, how to cut and order.
pub(crate) struct CallSpec {
    /// The entry address for `Pool` workers (0 for `FnPool`).
    pub entry: u64,
    /// Items per chunk, if the caller chose (`None`: see [`Chunking::choose`]).
    pub chunksize: Option<usize>,
    /// Yield in input order (`imap`, `map`) or as finished (`imap_unordered`).
    pub ordered: bool,
    /// The bincode-encoded `map_with` context, or why it could not be encoded.
    pub context: Option<Result<Vec<u8>, String>>,
}

/// A chunk sent to a worker and not yet answered.
struct ChunkInfo {
    /// Index of its first item.
    first_index: u64,
    /// How many items it holds.
    count: u32,
    /// Its task frame, kept to send it again if its worker dies before starting it; the buffer
    /// is recycled for a later chunk once the reply is in.
    frame: Vec<u8>,
}

/// A call in progress: an iterator of `Result<R, Error>`, one per input item.
pub(crate) struct Call<'p, I: Iterator, R> {
    lease: Lease<'p>,
    main: &'p WorkerMain<'p>,
    input: I,
    spec: CallSpec,
    chunking: Chunking,
    call: u64,
    context: Option<Vec<u8>>,
    /// Frame buffers of answered chunks, reused for new ones.
    spare: Vec<Vec<u8>>,
    /// Chunks whose worker died before starting them: sent again before any new input.
    retry: VecDeque<u64>,
    next_chunk: u64,
    next_index: u64,
    max_ahead: u64,
    /// Chunks sent and not yet answered.
    in_flight: HashMap<u64, ChunkInfo>,
    /// Ordered calls: the oldest chunk not yet yielded, and finished chunks waiting for it.
    head: u64,
    parked: BTreeMap<u64, Vec<Result<R, Error>>>,
    ready: VecDeque<Result<R, Error>>,
    input_done: bool,
    failure: Option<PoolError>,
    finished: bool,
    _result: PhantomData<fn() -> R>,
}

impl<'p, I, R> Call<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Starts a call on the leased engine; forks missing workers first.
    pub fn start(
        mut lease: Lease<'p>,
        main: &'p WorkerMain<'p>,
        input: I,
        spec: CallSpec,
    ) -> Call<'p, I, R> {
        let engine: &mut Engine = &mut lease;
        let mut failure = engine.fill(main).err();
        let call = engine.begin_call();
        let max_ahead = (engine.size() * engine.window() * 2) as u64;
        let chunking = Chunking::choose(spec.chunksize, &input, engine.size());
        if let Chunking::Fixed(0) = chunking {
            failure = Some(PoolError::InvalidChunksize { chunksize: 0 });
        }
        let context = match &spec.context {
            Some(Ok(value)) => Some(protocol::context_frame(call, value)),
            Some(Err(message)) => {
                failure = Some(PoolError::Context(message.clone()));
                None
            }
            None => None,
        };
        Call {
            lease,
            main,
            input,
            spec,
            chunking,
            call,
            context,
            spare: Vec::new(),
            retry: VecDeque::new(),
            next_chunk: 0,
            next_index: 0,
            max_ahead,
            in_flight: HashMap::new(),
            head: 0,
            parked: BTreeMap::new(),
            ready: VecDeque::new(),
            input_done: false,
            finished: false,
            failure,
            _result: PhantomData,
        }
    }

    /// Sends chunks while some worker has room: first the ones to retry, then new input.
    fn feed(&mut self) {
        while let Some(&seq) = self.retry.front() {
            let Some(slot) = self.lease.free_slot() else {
                return;
            };
            self.retry.pop_front();
            if let Some(info) = self.in_flight.get(&seq) {
                let context = self.context.as_deref();
                self.lease
                    .dispatch(slot, self.call, seq, &info.frame, context);
            }
        }
        while !self.input_done {
            if self.spec.ordered && self.next_chunk >= self.head + self.max_ahead {
                return;
            }
            let Some(slot) = self.lease.free_slot() else {
                return;
            };
            let chunk = self.next_chunk;
            let first_index = self.next_index;
            let mut frame = self.spare.pop().unwrap_or_default();
            let (count, bad_item) = self.pull_chunk(&mut frame);
            if count > 0 {
                protocol::seal_task(
                    &mut frame,
                    self.call,
                    chunk,
                    self.spec.entry,
                    first_index,
                    count,
                );
                let context = self.context.as_deref();
                self.lease.dispatch(slot, self.call, chunk, &frame, context);
                let info = ChunkInfo {
                    first_index,
                    count,
                    frame,
                };
                self.in_flight.insert(chunk, info);
                self.next_chunk += 1;
                self.next_index += u64::from(count);
            } else {
                self.spare.push(frame);
            }
            if let Some(message) = bad_item {
                // The item after the chunk could not be encoded: it is a finished chunk of its own.
                let index = self.next_index;
                let seq = self.next_chunk;
                self.next_chunk += 1;
                self.next_index += 1;
                let error = TaskError::Codec {
                    index,
                    pid: 0,
                    stage: CodecStage::EncodeItem,
                    message,
                };
                self.finish_chunk(seq, vec![Err(error.into())]);
            }
        }
    }

    /// Encodes items into `frame` until the chunk is full or the input ends. Returns the count
    /// and, if an item failed to encode, its message (that item is consumed and not in the
    /// chunk).
    fn pull_chunk(&mut self, frame: &mut Vec<u8>) -> (u32, Option<String>) {
        let limit = self.chunking.items().min(u32::MAX as usize);
        let adaptive = matches!(self.chunking, Chunking::Adaptive(_));
        protocol::begin_task(frame);
        let mut count = 0;
        while count < limit {
            if adaptive && frame.len() >= ADAPTIVE_MAX_BYTES {
                break;
            }
            let Some(item) = self.input.next() else {
                self.input_done = true;
                break;
            };
            let mark = frame.len();
            if let Err(message) = codec::encode_into(frame, &item) {
                frame.truncate(mark);
                return (count as u32, Some(message));
            }
            count += 1;
        }
        (count as u32, None)
    }

    /// Places a finished chunk's outcomes: at once if unordered, else when all before it are out.
    fn finish_chunk(&mut self, seq: u64, outcomes: Vec<Result<R, Error>>) {
        if !self.spec.ordered {
            self.ready.extend(outcomes);
            return;
        }
        self.parked.insert(seq, outcomes);
        while let Some(outcomes) = self.parked.remove(&self.head) {
            self.ready.extend(outcomes);
            self.head += 1;
        }
    }

    fn absorb(&mut self, happened: Happened) {
        match happened {
            Happened::Nothing => {}
            Happened::Reply {
                pid,
                chunk,
                count,
                busy_nanos,
                frame,
            } => {
                let Some(info) = self.in_flight.remove(&chunk) else {
                    return;
                };
                self.chunking.learn(busy_nanos, info.count as usize);
                let outcomes = &frame[protocol::REPLY_HEADER_LEN..];
                let outcomes = decode_outcomes(outcomes, count, info.first_index, info.count, pid);
                self.spare.push(info.frame);
                self.finish_chunk(chunk, outcomes);
            }
            Happened::Died {
                pid,
                death,
                running,
                unstarted,
            } => {
                self.retry.extend(unstarted);
                let Some(info) = running.and_then(|seq| self.in_flight.remove(&seq)) else {
                    return;
                };
                let outcomes = (0..u64::from(info.count))
                    .map(|i| {
                        let index = info.first_index + i;
                        Err(TaskError::WorkerDied { index, pid, death }.into())
                    })
                    .collect();
                self.spare.push(info.frame);
                self.finish_chunk(running.unwrap_or_default(), outcomes);
            }
        }
    }
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
) -> Vec<Result<R, Error>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut rest = outcomes;
    let mut broken: Option<String> = None;
    if replied != count {
        broken = Some(format!("reply holds {replied} outcomes for {count} items"));
    }
    for i in 0..u64::from(count) {
        let index = first_index + i;
        let codec_error = |stage, message| -> Result<R, Error> {
            Err(TaskError::Codec {
                index,
                pid,
                stage,
                message,
            }
            .into())
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
                    (Err(e.into()), used)
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

impl<I, R> Iterator for Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(outcome) = self.ready.pop_front() {
                return Some(outcome);
            }
            if self.finished {
                return None;
            }
            if let Some(failure) = self.failure.take() {
                // A pool failure ends the call: it is reported once, after every outcome
                // already known.
                self.finished = true;
                return Some(Err(failure.into()));
            }
            self.feed();
            if !self.ready.is_empty() {
                continue;
            }
            if self.in_flight.is_empty() && self.input_done {
                self.finished = true;
                return None;
            }
            match self.lease.next_event(self.call, self.main) {
                Ok(happened) => self.absorb(happened),
                Err(failure) => self.failure = Some(failure),
            }
        }
    }
}
