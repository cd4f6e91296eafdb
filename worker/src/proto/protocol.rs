//! The wire protocol between the parent and a worker: frame layouts and their encoders/decoders.
//!
//! Every frame travels over the child's own socket (see [`wire`](crate::proto::wire) for how frames
//! become datagrams). Integers are little-endian, fixed width.
//!
//! Parent → worker:
//! - `Chunk`: `[1][call u64][chunk u64][entry u64][function u64][code_id u64][first_index u64]
//!   [count u32]` then `count` bincode items back to back. `entry` and `function` are code
//!   addresses in the parent (0 for a closure pool), `code_id` a hash of the loaded objects that
//!   hold them (see [`crate::proto::code_map`]).
//! - `Context`: `[2][call u64]` then one bincode value (the `map_with` context of that call).
//! - `Shutdown`: `[3]`: finish nothing more, exit 0.
//! - `Batch`: `[4]` then frames of the kinds above, each as `[len u32][frame]`: handled in
//!   order, as if sent one by one (the parent sends several small frames in one message).
//! - `InArena`: `[5][start u64][len u64][check u64]`: the frame is the span `(start, len)` of
//!   the worker's chunk arena (see [`arena`](crate::shared::arena)), whose words have the check `check`
//!   (the value of an [`arena::SpanCheck`](crate::shared::arena::SpanCheck)); any kind above but
//!   `InArena`.
//!
//! Worker → parent (the parent knows the sender by the socket a frame came on; a frame names no
//! sender, and the parent reads it as untrusted input):
//! - `Reply`: `[1][call u64][chunk u64][count u32][busy_nanos u64]` then `count` outcomes, each
//!   a tag byte and its body: `OK` + bincode result, `PANICKED` + bincode
//!   `(message, location)`, `BAD_INPUT`/`BAD_OUTPUT` + bincode message, `CODE_NOT_LOADED` +
//!   bincode `u64` (the code address the worker refused to call).
//! - `LastReply`: `[2]` then as `Reply`: the worker's last frame. It was not alone once the
//!   chunk's items ran (a thread its task started still runs, or a child process it forked
//!   still lives, and either may hold the worker's socket and memory): it exits after this
//!   reply, and the parent believes nothing that follows it.
//! - `Ready`: `[0xA1]`: the worker's initializer returned (sent only when the pool has one).
//! - `InitFailed`: `[0xA2]` then the panic message as UTF-8 (its first [`INIT_MESSAGE_MAX`]
//!   bytes): the initializer panicked; the worker exits next.
//!
//! No frame a worker sends is longer than [`MAX_FRAME_TO_PARENT`]: the parent holds a reply whole,
//! so replies are bounded by [`MAX_REPLY_BYTES`], the most a chunk's outcomes take together (an
//! outcome that would take its reply past it is replaced by a short `BAD_OUTPUT` saying so), and
//! the parent takes a frame that claims more for a violation at its first datagram.
//!
//! [`ReplyWriter`] is the one writer of replies, [`OutcomeReader`] the one reader of their
//! outcomes.
//!
//! A worker's death is no frame: the parent's reaper thread reaps it and tells the parent's
//! inbox in-process, which reads what is left in the dead worker's socket first.
//!
//! Invariant: a worker answers every `Chunk` with exactly one `Reply` carrying exactly `count`
//! outcomes, in item order, unless it dies first.

use crate::proto::codec;
use crate::shared::arena::Span;
use serde::Serialize;

const CHUNK: u8 = 1;
const CONTEXT: u8 = 2;
const SHUTDOWN: u8 = 3;
const BATCH: u8 = 4;
const IN_ARENA: u8 = 5;
const REPLY: u8 = 1;
const LAST_REPLY: u8 = 2;
const READY: u8 = 0xA1;
const INIT_FAILED: u8 = 0xA2;

/// Size of an `InArena` frame.
pub const IN_ARENA_LEN: usize = 1 + 8 + 8 + 8;

/// The frame that tells a worker its next frame lies in its chunk arena at `span`, whose words
/// have the check `check` (an [`arena::SpanCheck`](crate::shared::arena::SpanCheck)'s value).
pub fn in_arena_frame(span: Span, check: u64) -> [u8; IN_ARENA_LEN] {
    let mut frame = [0u8; IN_ARENA_LEN];
    frame[0] = IN_ARENA;
    frame[1..9].copy_from_slice(&span.start.to_le_bytes());
    frame[9..17].copy_from_slice(&span.len.to_le_bytes());
    frame[17..].copy_from_slice(&check.to_le_bytes());
    frame
}

/// Size of a chunk frame's header; the items follow it.
pub const CHUNK_HEADER_LEN: usize = 1 + 8 + 8 + 8 + 8 + 8 + 8 + 4;
/// Size of a reply frame's header; the outcomes follow it.
pub const REPLY_HEADER_LEN: usize = 1 + 8 + 8 + 4 + 8;

/// The most bytes the outcomes of one chunk take together in its reply, encoded (1 GiB). An
/// outcome that would take its chunk's reply past this (a result too big, or a panic message)
/// is replaced by a short `BAD_OUTPUT` outcome saying so, and its item fails alone; the other
/// items of the chunk keep theirs. (The parent holds a reply whole: this bounds what a worker can
/// make it hold.)
pub const MAX_REPLY_BYTES: usize = 1 << 30;

/// The most items a chunk holds, so outcomes a reply holds: the parent never sends more (its
/// chunks hold at most `forkpool`'s `chunking::MAX_CHUNK_ITEMS`, checked by a test there).
pub const MAX_REPLY_OUTCOMES: usize = 1 << 20;

/// The longest outcome that stands in for one past [`MAX_REPLY_BYTES`].
const OVER_LIMIT_OUTCOME_MAX: usize = 256;

/// The most bytes of an initializer's panic message an `InitFailed` frame carries.
pub const INIT_MESSAGE_MAX: usize = 64 * 1024;

/// The longest frame a worker sends its parent: a reply whose outcomes take [`MAX_REPLY_BYTES`],
/// and a short outcome for each of its items past that. The parent takes a frame that claims
/// more for a violation at its first datagram, before it holds a byte of it.
pub const MAX_FRAME_TO_PARENT: usize =
    REPLY_HEADER_LEN + MAX_REPLY_BYTES + MAX_REPLY_OUTCOMES * OVER_LIMIT_OUTCOME_MAX;

/// Outcome tag: the item's result follows.
pub const OK: u8 = 0;
/// Outcome tag: the function panicked; `(message, location)` follows.
pub const PANICKED: u8 = 1;
/// Outcome tag: the worker could not decode the item; a message follows.
pub const BAD_INPUT: u8 = 2;
/// Outcome tag: the worker could not encode the result; a message follows.
pub const BAD_OUTPUT: u8 = 3;
/// Outcome tag: the task names code that is not mapped in the worker as it is in the parent
/// (see [`crate::proto::code_map`]); the refused address follows, as a bincode `u64`.
pub const CODE_NOT_LOADED: u8 = 4;

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A frame the parent sends to a worker, as the worker reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Run a chunk of items.
    Chunk(Chunk<'a>),
    /// Keep this context for the tasks of `call`.
    Context {
        /// The call the context belongs to.
        call: u64,
        /// The encoded context value.
        value: &'a [u8],
    },
    /// Exit now.
    Shutdown,
    /// Several frames in one message; read them with [`Batch::next`].
    Batch(Batch<'a>),
    /// The frame lies in the worker's chunk arena, at `span`; `check` is the value of the
    /// check of its words (see [`arena::SpanCheck`](crate::shared::arena::SpanCheck)).
    InArena {
        /// Where the frame lies.
        span: Span,
        /// The check of the span's words, as the parent wrote them.
        check: u64,
    },
}

/// The frames of a `Batch` message, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    rest: &'a [u8],
}

impl<'a> Batch<'a> {
    /// The next frame; `None` at the end. `Some(Err(()))` if the batch is malformed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<&'a [u8], ()>> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(len) = u32_at(self.rest, 0) else {
            return Some(Err(()));
        };
        let Some(frame) = self.rest.get(4..4 + len as usize) else {
            return Some(Err(()));
        };
        self.rest = &self.rest[4 + len as usize..];
        Some(Ok(frame))
    }
}

/// Appends `frame` to the batch message being built in `buf` (starting it if `buf` is empty).
pub fn push_to_batch(buf: &mut Vec<u8>, frame: &[u8]) {
    if buf.is_empty() {
        buf.push(BATCH);
    }
    buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    buf.extend_from_slice(frame);
}

/// A chunk of items to run, as the worker sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Which call of the pool this chunk belongs to.
    pub call: u64,
    /// The chunk's sequence number within its call.
    pub chunk: u64,
    /// The code that runs the chunk.
    pub code: CallCode,
    /// The index, within the call, of the chunk's first item.
    pub first_index: u64,
    /// How many items the chunk holds.
    pub count: u32,
    /// The items, bincode-encoded back to back.
    pub items: &'a [u8],
}

/// The code a task runs, as its frame names it: addresses in the parent's address space, which
/// a worker may call only after checking them against what is mapped in its own (see
/// [`crate::proto::code_map`]). All zero for a closure pool's maps, whose workers hold their closure; a
/// closure pool's reduction names its entry and fold or reduce function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CallCode {
    /// The address of the entry that runs the chunk (see [`crate::child::job::EntryFn`]).
    pub entry: u64,
    /// The address of the user's function the entry calls, a fn pointer.
    pub function: u64,
    /// A hash of the identities of the loaded objects holding `entry` and `function` in the
    /// parent when the call started (0 if the parent could not find them).
    pub code_id: u64,
}

impl<'a> Command<'a> {
    /// Reads a frame; `None` if it is malformed.
    pub fn parse(frame: &'a [u8]) -> Option<Command<'a>> {
        match *frame.first()? {
            CHUNK => Some(Command::Chunk(Chunk {
                call: u64_at(frame, 1)?,
                chunk: u64_at(frame, 9)?,
                code: CallCode {
                    entry: u64_at(frame, 17)?,
                    function: u64_at(frame, 25)?,
                    code_id: u64_at(frame, 33)?,
                },
                first_index: u64_at(frame, 41)?,
                count: u32_at(frame, 49)?,
                items: frame.get(CHUNK_HEADER_LEN..)?,
            })),
            CONTEXT => Some(Command::Context {
                call: u64_at(frame, 1)?,
                value: frame.get(9..)?,
            }),
            SHUTDOWN => Some(Command::Shutdown),
            BATCH => Some(Command::Batch(Batch { rest: &frame[1..] })),
            IN_ARENA if frame.len() == IN_ARENA_LEN => Some(Command::InArena {
                span: Span {
                    start: u64_at(frame, 1)?,
                    len: u64_at(frame, 9)?,
                },
                check: u64_at(frame, 17)?,
            }),
            _ => None,
        }
    }
}

/// Starts a chunk frame in `buf` (reusing its allocation): the caller appends the items with
/// [`codec::encode_into`], then calls [`seal_chunk_frame`].
pub fn begin_chunk_frame(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(CHUNK_HEADER_LEN, 0);
}

/// Writes the header of a chunk frame begun with [`begin_chunk_frame`].
pub fn seal_chunk_frame(
    buf: &mut [u8],
    call: u64,
    chunk: u64,
    code: &CallCode,
    first_index: u64,
    count: u32,
) {
    buf[0] = CHUNK;
    buf[1..9].copy_from_slice(&call.to_le_bytes());
    buf[9..17].copy_from_slice(&chunk.to_le_bytes());
    buf[17..25].copy_from_slice(&code.entry.to_le_bytes());
    buf[25..33].copy_from_slice(&code.function.to_le_bytes());
    buf[33..41].copy_from_slice(&code.code_id.to_le_bytes());
    buf[41..49].copy_from_slice(&first_index.to_le_bytes());
    buf[49..53].copy_from_slice(&count.to_le_bytes());
}

/// A context frame for `call`, from the already encoded context value.
pub fn context_frame(call: u64, encoded: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9 + encoded.len());
    buf.push(CONTEXT);
    buf.extend_from_slice(&call.to_le_bytes());
    buf.extend_from_slice(encoded);
    buf
}

/// The shutdown frame.
pub fn shutdown_frame() -> [u8; 1] {
    [SHUTDOWN]
}

/// The frame a worker sends when its initializer returned.
pub fn ready_frame() -> Vec<u8> {
    vec![READY]
}

/// The frame a worker sends when its initializer panicked with `message` (its first
/// [`INIT_MESSAGE_MAX`] bytes, cut at a character boundary).
pub fn init_failed_frame(message: &str) -> Vec<u8> {
    let mut end = message.len().min(INIT_MESSAGE_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut buf = vec![INIT_FAILED];
    buf.extend_from_slice(&message.as_bytes()[..end]);
    buf
}

/// A frame a worker sends to the parent, as the parent reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// The outcomes of one chunk.
    Reply(Reply<'a>),
    /// The worker's initializer returned; tasks run from now on.
    Ready,
    /// The worker's initializer panicked with this message; the worker exits.
    InitFailed(&'a str),
}

/// The outcomes of one chunk, as the parent reads them.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// It is the worker's last frame (`LastReply`): nothing that follows is to be believed.
    pub last: bool,
    /// The call the chunk belonged to.
    pub call: u64,
    /// The chunk's sequence number within its call.
    pub chunk: u64,
    /// How many outcomes follow.
    pub count: u32,
    /// Time the worker spent running the chunk, in nanoseconds.
    pub busy_nanos: u64,
    /// The outcomes, back to back.
    pub outcomes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Reads a frame; `None` if it is malformed.
    pub fn parse(frame: &'a [u8]) -> Option<Message<'a>> {
        match *frame.first()? {
            tag @ (REPLY | LAST_REPLY) => Some(Message::Reply(Reply {
                last: tag == LAST_REPLY,
                call: u64_at(frame, 1)?,
                chunk: u64_at(frame, 9)?,
                count: u32_at(frame, 17)?,
                busy_nanos: u64_at(frame, 21)?,
                outcomes: frame.get(REPLY_HEADER_LEN..)?,
            })),
            READY if frame.len() == 1 => Some(Message::Ready),
            INIT_FAILED => Some(Message::InitFailed(
                std::str::from_utf8(&frame[1..]).unwrap_or("(message not UTF-8)"),
            )),
            _ => None,
        }
    }
}

/// Whether `frame` is a worker's last (a `LastReply`): the parent reads nothing of that worker
/// after it.
pub fn is_last_reply(frame: &[u8]) -> bool {
    frame.first() == Some(&LAST_REPLY)
}

impl<'a> Reply<'a> {
    /// A reader of this reply's outcomes.
    pub fn reader(&self) -> OutcomeReader<'a> {
        OutcomeReader::new(self.outcomes)
    }
}

pub use outcome_reader::{OutcomeError, OutcomeReader, RawOutcome};

/// Builds a reply frame in place, one outcome at a time; reused from chunk to chunk.
///
/// Invariant: the outcomes take at most [`MAX_REPLY_BYTES`], but for the short outcomes that
/// stand in for those that would have passed it (each at most `OVER_LIMIT_OUTCOME_MAX` bytes).
#[derive(Debug, Default)]
pub struct ReplyWriter {
    buf: Vec<u8>,
    count: u32,
}

/// What an outcome past [`MAX_REPLY_BYTES`] says instead.
const OVER_LIMIT: &str = "the outcome would take its chunk's reply past forkpool::MAX_REPLY_BYTES \
                          (1 GiB); return smaller results, or use a smaller chunksize";

impl ReplyWriter {
    /// A writer with nothing begun.
    pub fn new() -> ReplyWriter {
        ReplyWriter::default()
    }

    /// Starts the reply to one chunk, discarding the previous one but keeping its allocation.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.resize(REPLY_HEADER_LEN, 0);
        self.count = 0;
    }

    /// The longest the buffer may grow for outcomes that count against [`MAX_REPLY_BYTES`].
    fn max_len() -> usize {
        REPLY_HEADER_LEN + MAX_REPLY_BYTES
    }

    /// Appends a successful result; if it cannot be encoded, appends `BAD_OUTPUT` instead (also
    /// when it takes the reply past [`MAX_REPLY_BYTES`]: then the buffer it grew is given back).
    pub fn ok<R: Serialize + ?Sized>(&mut self, result: &R) {
        let mark = self.buf.len();
        self.buf.push(OK);
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec::encode_into(&mut self.buf, result)
        }));
        let failure = match encoded {
            Ok(Ok(())) if self.buf.len() <= ReplyWriter::max_len() => None,
            Ok(Ok(())) => Some(OVER_LIMIT.to_string()),
            Ok(Err(message)) => Some(message),
            Err(payload) => Some(crate::panic::take_report(payload).0),
        };
        match failure {
            None => self.count += 1,
            Some(message) => {
                self.buf.truncate(mark);
                if self.buf.capacity() > ReplyWriter::max_len() {
                    self.buf.shrink_to_fit();
                }
                self.failed(BAD_OUTPUT, &message);
            }
        }
    }

    /// Appends a panic outcome.
    pub fn panicked(&mut self, message: &str, location: Option<&str>) {
        let mark = self.buf.len();
        self.buf.push(PANICKED);
        // Encoding a pair of strings into a Vec cannot fail.
        let _ = codec::encode_into(&mut self.buf, &(message, location));
        self.count += 1;
        self.bound(mark);
    }

    /// Appends a `BAD_INPUT` or `BAD_OUTPUT` outcome.
    pub fn failed(&mut self, tag: u8, message: &str) {
        let mark = self.buf.len();
        self.buf.push(tag);
        let _ = codec::encode_into(&mut self.buf, message);
        self.count += 1;
        self.bound(mark);
    }

    /// Appends a `CODE_NOT_LOADED` outcome naming the refused `address`.
    pub fn code_not_loaded(&mut self, address: u64) {
        let mark = self.buf.len();
        self.buf.push(CODE_NOT_LOADED);
        // Encoding a u64 into a Vec cannot fail.
        let _ = codec::encode_into(&mut self.buf, &address);
        self.count += 1;
        self.bound(mark);
    }

    /// Replaces the outcome appended at `mark` by a short `BAD_OUTPUT` if it took the reply past
    /// [`MAX_REPLY_BYTES`] (and gives back the buffer it grew).
    fn bound(&mut self, mark: usize) {
        if self.buf.len() > ReplyWriter::max_len() {
            self.buf.truncate(mark);
            self.buf.shrink_to_fit();
            self.buf.push(BAD_OUTPUT);
            let _ = codec::encode_into(&mut self.buf, OVER_LIMIT);
        }
    }

    /// Outcomes appended so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes the header and returns the finished frame (the writer keeps the buffer for the
    /// next chunk's reply).
    pub fn seal(&mut self, call: u64, chunk: u64, busy_nanos: u64) -> &[u8] {
        self.seal_as(call, chunk, busy_nanos, false)
    }

    /// [`seal`](ReplyWriter::seal), as the worker's last frame if `last` (a `LastReply`).
    pub fn seal_as(&mut self, call: u64, chunk: u64, busy_nanos: u64, last: bool) -> &[u8] {
        let rest = &mut self.buf[..REPLY_HEADER_LEN];
        rest[0] = if last { LAST_REPLY } else { REPLY };
        rest[1..9].copy_from_slice(&call.to_le_bytes());
        rest[9..17].copy_from_slice(&chunk.to_le_bytes());
        rest[17..21].copy_from_slice(&self.count.to_le_bytes());
        rest[21..29].copy_from_slice(&busy_nanos.to_le_bytes());
        &self.buf
    }
}

mod outcome_reader;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
