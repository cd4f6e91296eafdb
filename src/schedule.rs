//! One call on a pool: pulls input lazily into chunks, keeps every worker's window full, and
//! turns replies and deaths into one outcome per item, in input order or as they finish.
//!
//! Invariants:
//! - Every item pulled from the input gets exactly one outcome: its result, or an error naming
//!   its index (a panic, its worker's death, a timeout, a codec failure).
//! - A chunk (an *origin*, numbered in input order) travels as one or more *parts*: first whole;
//!   when a worker dies holding it, the item to blame fails and the rest go out again as new
//!   parts (crash pinpointing). An origin is finished when every one of its items has an
//!   outcome, whichever parts brought them.
//! - Memory is bounded by the work in flight: input is pulled only to fill a free window slot,
//!   and ordered calls dispatch at most `max_ahead` chunks past the oldest unfinished one, so
//!   the reorder buffer never holds more than that.

use crate::engine::{Cause, Engine, Happened, Verdict, WorkerMain};
use crate::error::{CodecStage, Death, Error, PoolError, TaskError};
use crate::lease::Lease;
use crate::outbox::SharedFrame;
use crate::outcome::{self, Outcome, failed};
use forkpool_worker::codec;
use forkpool_worker::protocol::{self, OutcomeReader, TaskCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A chunk's frame stops growing past this many bytes of items when the chunksize is adaptive.
const ADAPTIVE_MAX_BYTES: usize = 1 << 20;
/// Whatever chunksize is asked for, a chunk holds at most this many items...
pub(crate) const MAX_CHUNK_ITEMS: usize = 1 << 20;
/// ...and stops growing once its items take this many bytes: a chunk is encoded whole before it
/// is sent, so without a cap `chunksize(usize::MAX)` over endless input fills memory.
pub(crate) const MAX_CHUNK_BYTES: usize = 16 << 20;
/// The largest adaptive chunk, in items: the cap of default chunks. (Measured over 1M trivial
/// items: 15 M items/s with a cap of 65,536, 25-30 M/s with 8,192, against 26-27 M/s for the
/// default chunksize: past a few thousand items, bigger chunks only unbalance the end.)
const ADAPTIVE_MAX_ITEMS: usize = DEFAULT_MAX_CHUNK;
/// The default chunksize for input of known length is Python's ceil(len / (4 × workers)), but
/// at most this: past a few thousand items a bigger chunk only delays the first results and
/// fills memory (measured: 1M trivial items run at 22 M/s in chunks of 4,096 to 16,384 and
/// 14 M/s in Python-sized chunks of 125,000; an `imap` of 10M items peaked at 218 MB).
const DEFAULT_MAX_CHUNK: usize = 8192;
/// Chunks of at most this many items are small: a worker is kept busy with more of them.
const SMALL_CHUNK: usize = 16;
/// The window small chunks start with: 8 in flight per worker hide the ~70 µs round trip
/// (measured at chunksize 1, one message per chunk: 14.6 µs per item with 2 in flight, 6.3
/// with 4, 4.9 with 8, 5.1 with 16).
const SMALL_CHUNK_WINDOW: usize = 8;
/// The most small chunks in flight per worker. With refills batched (half a window per
/// message), bigger windows mean fewer messages: chunksize 1 measured 4.7/3.7 µs per item with
/// 8, 3.8/3.4 with 16, 3.0/3.2 with 32.
const SMALL_CHUNK_MAX_WINDOW: usize = 32;
/// The window otherwise, and the least for small chunks: one chunk running, the next queued.
const DEFAULT_WINDOW: usize = 2;
/// Small chunks are kept in flight to cover about this much worker time per worker: enough to
/// hide the round trip, little enough that slow items do not pile up behind one worker at the
/// end of a call while another idles.
const QUEUED_WORK_NANOS: u64 = 1_000_000;
/// Adaptive chunks grow while a chunk keeps a worker busy for less than this...
const GROW_BELOW_NANOS: u64 = 2_000_000;
/// ...and shrink when it keeps it busy for more than this.
const SHRINK_ABOVE_NANOS: u64 = 20_000_000;
/// The most an adaptive chunk grows in one step (by how far under [`GROW_BELOW_NANOS`] it ran).
const MAX_GROWTH: u64 = 8;

/// How a call cuts its input into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Exactly this many items per chunk (the last may be shorter).
    Fixed(usize),
    /// Starts at one item and grows (2× to 8× a step) while chunks run for under 2 ms of
    /// worker time, halves when they run for over 20 ms: both a flood of tiny items and a few
    /// slow ones are served.
    Adaptive(usize),
}

impl Chunking {
    /// The chunksize asked for, or by default, for a collected call (`map`) on input of known
    /// length, Python's rule ceil(len / (4 × workers)) capped at [`DEFAULT_MAX_CHUNK`], and
    /// adaptive chunks otherwise (lazy calls, input of unknown length), so a lazy call's first
    /// outcome comes after a few item-times, not after a whole chunk.
    fn choose<I: Iterator>(
        asked: Option<usize>,
        input: &I,
        workers: usize,
        delivery: Delivery,
    ) -> Chunking {
        match (asked, input.size_hint()) {
            (Some(n), _) => Chunking::Fixed(n),
            (None, (lo, Some(hi))) if lo == hi && delivery == Delivery::Collected => {
                Chunking::Fixed(
                    lo.div_ceil(workers.saturating_mul(4))
                        .clamp(1, DEFAULT_MAX_CHUNK),
                )
            }
            (None, _) => Chunking::Adaptive(1),
        }
    }

    /// Chunks in flight per worker: the pool's, if it was built with one; else adapted to the
    /// chunks' run time for small fixed chunks, and [`DEFAULT_WINDOW`] otherwise.
    fn window(&self, asked: Option<usize>) -> Window {
        match (asked, *self) {
            (Some(window), _) => Window::Fixed(window),
            (None, Chunking::Fixed(n)) if n <= SMALL_CHUNK => Window::Adaptive {
                now: SMALL_CHUNK_WINDOW,
                mean_nanos: None,
            },
            (None, _) => Window::Fixed(DEFAULT_WINDOW),
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
                // Grow by how far under the limit the chunk ran, 2× to 8× a step (trivial
                // items reach the cap in 5 replies instead of 13).
                let factor = (GROW_BELOW_NANOS / busy_nanos.max(1)).clamp(2, MAX_GROWTH) as usize;
                *n = (*n * factor).min(ADAPTIVE_MAX_ITEMS);
            } else if busy_nanos > SHRINK_ABOVE_NANOS {
                *n = (*n / 2).max(1);
            }
        }
    }
}

/// How many chunks each worker holds in flight during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Always this many.
    Fixed(usize),
    /// Small chunks: enough to keep [`QUEUED_WORK_NANOS`] of work in flight per worker, from
    /// [`DEFAULT_WINDOW`] to [`SMALL_CHUNK_MAX_WINDOW`]; `mean_nanos` is the running mean of
    /// a chunk's worker time.
    Adaptive { now: usize, mean_nanos: Option<u64> },
}

impl Window {
    /// Chunks in flight per worker now.
    fn now(&self) -> usize {
        match *self {
            Window::Fixed(n) | Window::Adaptive { now: n, .. } => n,
        }
    }

    /// The most it can become.
    fn max(&self) -> usize {
        match *self {
            Window::Fixed(n) => n,
            Window::Adaptive { .. } => SMALL_CHUNK_MAX_WINDOW,
        }
    }

    /// Takes in a chunk's worker time; returns the window from now on.
    fn learn(&mut self, busy_nanos: u64) -> usize {
        if let Window::Adaptive { now, mean_nanos } = self {
            let mean = match *mean_nanos {
                None => busy_nanos,
                Some(m) => (m.saturating_mul(3)).saturating_add(busy_nanos) / 4,
            };
            *mean_nanos = Some(mean);
            *now = (QUEUED_WORK_NANOS / mean.max(1))
                .clamp(DEFAULT_WINDOW as u64, SMALL_CHUNK_MAX_WINDOW as u64)
                as usize;
        }
        self.now()
    }
}

/// What a call needs besides its input: how to run a chunk, how to cut and order.
pub(crate) struct CallSpec {
    /// The code `Pool` workers run: entry and function addresses and their code id (all 0 for
    /// `FnPool`, whose workers hold their closure).
    pub code: TaskCode,
    /// Items per chunk, if the caller chose (`None`: see [`Chunking::choose`]).
    pub chunksize: Option<usize>,
    /// Who waits for the outcomes, and in which order.
    pub delivery: Delivery,
    /// The bincode-encoded `map_with` context, or why it could not be encoded.
    pub context: Option<Result<Vec<u8>, String>>,
    /// The most one item may run before its worker is stopped.
    pub timeout: Option<Duration>,
}

/// How a call hands its outcomes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// All at once, in input order (`map`, `starmap`, `map_with`): the caller waits for the
    /// last anyway, so input of known length takes Python's chunks.
    Collected,
    /// One by one, in input order (`imap`, `istarmap`): the first must come soon, so chunks
    /// start at one item and grow by their run time, whatever the input's length.
    InOrder,
    /// One by one, as they finish (`imap_unordered`): like `InOrder`, without reordering.
    AsFinished,
}

impl Delivery {
    fn ordered(self) -> bool {
        self != Delivery::AsFinished
    }
}

/// Wire numbers of parts made by splitting a chunk start here; below it, a part's wire number
/// is its origin's (a chunk's first dispatch).
const FIRST_SPLIT_PART: u64 = 1 << 62;

/// Items of one chunk, sent to a worker and not yet answered.
struct Part {
    /// The chunk (origin) the items belong to.
    origin: u64,
    /// Index of its first item.
    first_index: u64,
    /// How many items it holds.
    count: u32,
    /// Its task frame, kept to send it again (whole or split) if its worker dies; the buffer
    /// is recycled for a later chunk once the reply is in.
    frame: SharedFrame,
}

/// The outcomes gathered so far for a chunk that was split.
struct Origin<R> {
    first_index: u64,
    outcomes: Vec<Option<Outcome<R>>>,
    missing: usize,
}

/// A call in progress: an iterator of `Result<R, Error>`, one per input item.
pub(crate) struct Call<'p, I: Iterator, R> {
    lease: Lease<'p>,
    main: &'p WorkerMain<'p>,
    input: I,
    spec: CallSpec,
    chunking: Chunking,
    window: Window,
    call: u64,
    context: Option<SharedFrame>,
    /// Frame buffers of answered chunks, reused for new ones.
    spare: Vec<Vec<u8>>,
    /// Parts to send again (their worker died): sent before any new input.
    retry: VecDeque<u64>,
    next_chunk: u64,
    next_part: u64,
    next_index: u64,
    max_ahead: u64,
    /// Parts sent and not yet answered, by wire number.
    in_flight: HashMap<u64, Part>,
    /// Chunks that were split, by origin.
    split: HashMap<u64, Origin<R>>,
    /// Ordered calls: the oldest chunk not yet yielded, and finished chunks waiting for it.
    head: u64,
    parked: BTreeMap<u64, Vec<Outcome<R>>>,
    ready: VecDeque<Outcome<R>>,
    input_done: bool,
    failure: Option<PoolError>,
    /// The pool failed with this (in words) and the input has a known length: each of its
    /// remaining items gets [`TaskError::PoolFailed`].
    abandoned: Option<String>,
    finished: bool,
    _result: PhantomData<fn() -> R>,
}

impl<'p, I, R> Call<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
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
        let fill_failure = engine.fill(main).err();
        let mut failure = None;
        let chunking = Chunking::choose(spec.chunksize, &input, engine.size(), spec.delivery);
        let window = chunking.window(engine.window());
        let call = engine.begin_call(spec.timeout.filter(|t| !t.is_zero()), window.now());
        let max_ahead = engine.size().saturating_mul(window.max()).saturating_mul(2) as u64;
        if let Chunking::Fixed(0) = chunking {
            failure = Some(PoolError::InvalidChunksize { chunksize: 0 });
        }
        if let Some(timeout) = spec.timeout.filter(|t| t.is_zero()) {
            failure = Some(PoolError::InvalidTimeout { timeout });
        }
        let context = match &spec.context {
            Some(Ok(value)) => Some(Arc::new(protocol::context_frame(call, value))),
            Some(Err(message)) => {
                failure = Some(PoolError::Context(message.clone()));
                None
            }
            None => None,
        };
        let mut started = Call {
            lease,
            main,
            input,
            spec,
            chunking,
            window,
            call,
            context,
            spare: Vec::new(),
            retry: VecDeque::new(),
            next_chunk: 0,
            next_part: FIRST_SPLIT_PART,
            next_index: 0,
            max_ahead,
            in_flight: HashMap::new(),
            split: HashMap::new(),
            head: 0,
            parked: BTreeMap::new(),
            ready: VecDeque::new(),
            input_done: false,
            finished: false,
            failure,
            abandoned: None,
            _result: PhantomData,
        };
        if let Some(e) = fill_failure.filter(|_| started.failure.is_none()) {
            started.abandon(e);
        }
        started
    }

    /// The pool failed (`failure`): the call ends, and loses no item. Every item taken from
    /// the input gets [`TaskError::PoolFailed`] (in order, for ordered calls); an input of
    /// known length (exact `size_hint`) is drained, each of its items getting the same, one
    /// per `next`; an input of unknown length is left alone and the call ends with `failure`.
    fn abandon(&mut self, failure: PoolError) {
        let cause = failure.to_string();
        self.retry.clear();
        let mut parts: Vec<Part> = self.in_flight.drain().map(|(_, part)| part).collect();
        parts.sort_by_key(|part| part.first_index);
        for part in parts {
            let outcomes = (0..u64::from(part.count))
                .map(|i| {
                    let index = part.first_index + i;
                    let cause = cause.clone();
                    failed(TaskError::PoolFailed { index, cause })
                })
                .collect();
            self.settle(part, outcomes);
        }
        if !self.input_done {
            self.input_done = true;
            match self.input.size_hint() {
                (lo, Some(hi)) if lo == hi => self.abandoned = Some(cause),
                _ => self.failure = Some(failure),
            }
        }
        if self.failure.is_none() && self.abandoned.is_none() {
            self.finished = true; // once `ready` is drained
        }
    }

    /// Sends chunks while some worker has room: first the ones to retry, then new input.
    fn feed(&mut self) {
        self.stage_chunks();
        self.lease.flush();
    }

    /// Stages chunks for the workers with room (see [`Engine::dispatch`]).
    fn stage_chunks(&mut self) {
        while let Some(&seq) = self.retry.front() {
            let Some(slot) = self.lease.free_slot() else {
                return;
            };
            self.retry.pop_front();
            if let Some(part) = self.in_flight.get(&seq) {
                let context = self.context.as_ref();
                self.lease
                    .dispatch(slot, self.call, seq, part.count, &part.frame, context);
            }
        }
        while !self.input_done {
            if self.spec.delivery.ordered() && self.next_chunk >= self.head + self.max_ahead {
                return;
            }
            let Some(slot) = self.lease.free_slot() else {
                return;
            };
            let chunk = self.next_chunk;
            let first_index = self.next_index;
            let mut frame = self.spare.pop().unwrap_or_default();
            let budget = self.lease.budget(slot);
            let (count, bad_item) = self.pull_chunk(&mut frame, budget);
            if count > 0 {
                protocol::seal_task(
                    &mut frame,
                    self.call,
                    chunk,
                    &self.spec.code,
                    first_index,
                    count,
                );
                let frame = Arc::new(frame);
                let context = self.context.as_ref();
                self.lease
                    .dispatch(slot, self.call, chunk, count, &frame, context);
                let part = Part {
                    origin: chunk,
                    first_index,
                    count,
                    frame,
                };
                self.in_flight.insert(chunk, part);
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
                self.finish_chunk(seq, vec![failed(error)]);
            }
        }
    }

    /// Encodes items into `frame` until the chunk is full (at most `budget` items) or the input
    /// ends. Returns the count and, if an item failed to encode, its message (that item is
    /// consumed and not in the chunk).
    fn pull_chunk(&mut self, frame: &mut Vec<u8>, budget: usize) -> (u32, Option<String>) {
        let limit = self.chunking.items().min(budget).min(MAX_CHUNK_ITEMS);
        let max_bytes = match self.chunking {
            Chunking::Adaptive(_) => ADAPTIVE_MAX_BYTES,
            Chunking::Fixed(_) => MAX_CHUNK_BYTES,
        };
        protocol::begin_task(frame);
        let mut count = 0;
        while count < limit {
            if frame.len() >= max_bytes {
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
    fn finish_chunk(&mut self, seq: u64, outcomes: Vec<Outcome<R>>) {
        if !self.spec.delivery.ordered() {
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
                let Some(part) = self.in_flight.remove(&chunk) else {
                    return;
                };
                self.chunking.learn(busy_nanos, part.count as usize);
                let window = self.window.learn(busy_nanos);
                self.lease.set_window(window);
                let outcomes = OutcomeReader::of_reply(&frame);
                let outcomes = outcome::decode(outcomes, count, part.first_index, part.count, pid);
                self.settle(part, outcomes);
            }
            Happened::Died {
                pid,
                death,
                running,
                unstarted,
            } => {
                self.retry.extend(unstarted);
                let Some((wire, verdict)) = running else {
                    return;
                };
                let Some(part) = self.in_flight.remove(&wire) else {
                    return;
                };
                self.lost(wire, part, verdict, pid, death);
            }
        }
    }

    /// Deals with a part whose worker died while running it: with pinpointing, only the item
    /// to blame fails and the others go out again; without, every item of the part fails.
    fn lost(&mut self, wire: u64, part: Part, verdict: Verdict, pid: u32, death: Death) {
        let pinpoint = self.lease.pinpoint();
        let culprit = match verdict {
            // (The engine never reports `Blameless`: it turns it into one of the others.)
            Verdict::Requeue | Verdict::Blameless(_) => {
                self.in_flight.insert(wire, part);
                self.retry.push_front(wire);
                return;
            }
            Verdict::Culprit { offset, cause } => {
                let index = part.first_index + u64::from(offset);
                let error = cause_error(cause, index, pid, death);
                let rest = [(0, offset), (offset + 1, part.count)];
                if pinpoint && self.resend(&part, &rest) {
                    self.settle_items(&part, offset, vec![failed(error)]);
                    self.recycle(part.frame);
                    return;
                }
                Some((offset, error))
            }
            Verdict::Unknown(cause) => {
                let singles: Vec<(u32, u32)> = (0..part.count).map(|i| (i, i + 1)).collect();
                if pinpoint && part.count > 1 && self.resend(&part, &singles) {
                    self.recycle(part.frame);
                    return;
                }
                let outcomes = (0..part.count)
                    .map(|i| {
                        let index = part.first_index + u64::from(i);
                        Err(Box::new(cause_error(cause.clone(), index, pid, death)))
                    })
                    .collect();
                self.settle(part, outcomes);
                return;
            }
        };
        let mut culprit = culprit;
        let outcomes = (0..part.count)
            .map(|i| match culprit.take_if(|(at, _)| *at == i) {
                Some((_, error)) => failed(error),
                None => {
                    let index = part.first_index + u64::from(i);
                    failed(TaskError::WorkerDied { index, pid, death })
                }
            })
            .collect();
        self.settle(part, outcomes);
    }

    /// Sends the items `a..b` of `part`, for each range, again as new parts (before any new
    /// input). Returns false if the part's items could not be told apart (nothing is sent).
    fn resend(&mut self, part: &Part, ranges: &[(u32, u32)]) -> bool {
        let Some(bounds) = item_bounds::<I::Item>(&part.frame, part.count) else {
            return false;
        };
        self.ensure_split(part);
        let items = &part.frame[protocol::TASK_HEADER_LEN..];
        for &(a, b) in ranges.iter().rev() {
            if a >= b {
                continue;
            }
            let mut frame = self.spare.pop().unwrap_or_default();
            protocol::begin_task(&mut frame);
            frame.extend_from_slice(&items[bounds[a as usize]..bounds[b as usize]]);
            let wire = self.next_part;
            self.next_part += 1;
            let first_index = part.first_index + u64::from(a);
            protocol::seal_task(
                &mut frame,
                self.call,
                wire,
                &self.spec.code,
                first_index,
                b - a,
            );
            let new = Part {
                origin: part.origin,
                first_index,
                count: b - a,
                frame: Arc::new(frame),
            };
            self.in_flight.insert(wire, new);
            self.retry.push_front(wire);
        }
        true
    }

    /// Starts gathering a chunk's outcomes item by item (it is about to be split).
    fn ensure_split(&mut self, part: &Part) {
        self.split.entry(part.origin).or_insert_with(|| Origin {
            first_index: part.first_index,
            outcomes: (0..part.count).map(|_| None).collect(),
            missing: part.count as usize,
        });
    }

    /// Records the outcomes of every item of `part` (in order) and recycles its frame.
    fn settle(&mut self, part: Part, outcomes: Vec<Outcome<R>>) {
        if self.split.contains_key(&part.origin) {
            self.settle_items(&part, 0, outcomes);
        } else {
            self.finish_chunk(part.origin, outcomes);
        }
        self.recycle(part.frame);
    }

    /// Keeps a finished part's frame buffer for a later chunk (unless a courier still holds it).
    fn recycle(&mut self, frame: SharedFrame) {
        if let Ok(buffer) = Arc::try_unwrap(frame) {
            self.spare.push(buffer);
        }
    }

    /// Records outcomes for the items of `part` from `offset` on; finishes the chunk when it
    /// has them all.
    fn settle_items(&mut self, part: &Part, offset: u32, outcomes: Vec<Outcome<R>>) {
        let Some(origin) = self.split.get_mut(&part.origin) else {
            return;
        };
        let at = (part.first_index - origin.first_index) as usize + offset as usize;
        for (slot, outcome) in origin.outcomes[at..].iter_mut().zip(outcomes) {
            if slot.replace(outcome).is_none() {
                origin.missing -= 1;
            }
        }
        if origin.missing == 0 {
            if let Some(origin) = self.split.remove(&part.origin) {
                let outcomes = origin.outcomes.into_iter().flatten().collect();
                self.finish_chunk(part.origin, outcomes);
            }
        }
    }
}

/// The error of the item that was running when its worker ended.
fn cause_error(cause: Cause, index: u64, pid: u32, death: Death) -> Error {
    match cause {
        Cause::Died => TaskError::WorkerDied { index, pid, death },
        Cause::TimedOut(after) => TaskError::TimedOut { index, pid, after },
        Cause::OutOfMemory(limit) => TaskError::OutOfMemory { index, pid, limit },
        Cause::Protocol(what) => TaskError::Protocol { index, pid, what },
    }
    .into()
}

/// Where each of the `count` items of a task frame starts within its item bytes, plus the end:
/// `count + 1` offsets. `None` if the items do not decode as `T`.
fn item_bounds<T: DeserializeOwned>(frame: &[u8], count: u32) -> Option<Vec<usize>> {
    let items = frame.get(protocol::TASK_HEADER_LEN..)?;
    let mut bounds = Vec::with_capacity(count as usize + 1);
    let mut at = 0;
    bounds.push(0);
    for _ in 0..count {
        let (_, used) = codec::decode::<T>(items.get(at..)?).ok()?;
        at += used;
        bounds.push(at);
    }
    Some(bounds)
}

impl<I: Iterator, R> Drop for Call<'_, I, R> {
    /// Cancels what is left of the call at once: workers skip its remaining chunks, and nothing
    /// more is sent (see [`Engine::cancel_call`]).
    fn drop(&mut self) {
        self.lease.cancel_call(self.call);
    }
}

impl<I, R> Iterator for Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(outcome) = self.ready.pop_front() {
                return Some(outcome.map_err(|e| *e));
            }
            if self.finished {
                return None;
            }
            if let Some(failure) = self.failure.take() {
                // A misuse (or a pool failure with input of unknown length left) ends the
                // call: it is reported once, after every outcome already known.
                self.finished = true;
                return Some(Err(failure.into()));
            }
            if let Some(cause) = &self.abandoned {
                let Some(_) = self.input.next() else {
                    self.finished = true;
                    return None;
                };
                let index = self.next_index;
                self.next_index += 1;
                let cause = cause.clone();
                return Some(Err(TaskError::PoolFailed { index, cause }.into()));
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
                Err(failure) => self.abandon(failure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_chunks_grow_while_fast_and_shrink_when_slow() {
        let mut chunking = Chunking::Adaptive(1);
        for _ in 0..40 {
            let n = chunking.items();
            chunking.learn(GROW_BELOW_NANOS / 2, n);
        }
        assert_eq!(chunking.items(), ADAPTIVE_MAX_ITEMS, "grows to its cap");
        // A chunk that came back shorter than asked (the input ended) teaches nothing.
        chunking.learn(1, 3);
        assert_eq!(chunking.items(), ADAPTIVE_MAX_ITEMS);
        for _ in 0..40 {
            let n = chunking.items();
            chunking.learn(SHRINK_ABOVE_NANOS * 2, n);
        }
        assert_eq!(chunking.items(), 1, "shrinks to one item");
        // Between the two bounds it stays put.
        chunking.learn((GROW_BELOW_NANOS + SHRINK_ABOVE_NANOS) / 2, 1);
        assert_eq!(chunking.items(), 1);
        // Far under the limit it grows 8× a step; just under it, 2×.
        chunking.learn(GROW_BELOW_NANOS / 100, 1);
        assert_eq!(chunking.items(), 8);
        chunking.learn(GROW_BELOW_NANOS - 1, 8);
        assert_eq!(chunking.items(), 16);
    }

    #[test]
    fn fixed_chunks_never_change_and_the_default_follows_python() {
        let mut chunking = Chunking::Fixed(7);
        chunking.learn(0, 7);
        chunking.learn(u64::MAX, 7);
        assert_eq!(chunking, Chunking::Fixed(7));
        assert_eq!(
            Chunking::choose(None, &(0..1000), 2, Delivery::Collected),
            Chunking::Fixed(125)
        );
        assert_eq!(
            Chunking::choose(None, &(0..1000).filter(|_| true), 2, Delivery::Collected),
            Chunking::Adaptive(1)
        );
        assert_eq!(
            Chunking::choose(Some(3), &(0..10), 2, Delivery::Collected),
            Chunking::Fixed(3)
        );
        // Lazy calls start small whatever the input's length, so their first outcome is quick.
        for lazy in [Delivery::InOrder, Delivery::AsFinished] {
            assert_eq!(
                Chunking::choose(None, &(0..1000), 2, lazy),
                Chunking::Adaptive(1)
            );
            assert_eq!(
                Chunking::choose(Some(9), &(0..1000), 2, lazy),
                Chunking::Fixed(9)
            );
        }
        let huge = Chunking::choose(None, &(0..10_000_000), 2, Delivery::Collected);
        assert_eq!(huge, Chunking::Fixed(DEFAULT_MAX_CHUNK));
        assert_eq!(huge.window(None), Window::Fixed(DEFAULT_WINDOW));
        assert_eq!(Chunking::Fixed(1).window(None).now(), SMALL_CHUNK_WINDOW);
        assert_eq!(Chunking::Fixed(1).window(Some(3)), Window::Fixed(3));
    }

    #[test]
    fn small_chunk_windows_follow_the_chunks_run_time() {
        let mut window = Chunking::Fixed(1).window(None);
        assert_eq!(window.max(), SMALL_CHUNK_MAX_WINDOW);
        for _ in 0..20 {
            window.learn(2_000); // 2 µs chunks: as many as allowed
        }
        assert_eq!(window.now(), SMALL_CHUNK_MAX_WINDOW);
        for _ in 0..20 {
            window.learn(100_000); // 100 µs chunks: 1 ms of work is 10 chunks
        }
        assert_eq!(window.now(), 10);
        for _ in 0..20 {
            window.learn(50_000_000); // slow items: one running, one queued
        }
        assert_eq!(window.now(), DEFAULT_WINDOW);
        let mut fixed = Window::Fixed(5);
        assert_eq!(fixed.learn(1), 5);
        assert_eq!(fixed.learn(u64::MAX), 5);
    }
}
