//! The wire protocol between the parent and a worker: frame layouts and their encoders/decoders.
//!
//! Every frame is one ipc-channel bytes message. Integers are little-endian, fixed width.
//!
//! Parent → worker:
//! - `Task`: `[1][call u64][chunk u64][entry u64][first_index u64][count u32]` then `count`
//!   bincode items back to back.
//! - `Context`: `[2][call u64]` then one bincode value (the `map_with` context of that call).
//! - `Shutdown`: `[3]`: finish nothing more, exit 0.
//!
//! Worker → parent:
//! - `Reply`: `[1][call u64][chunk u64][count u32][busy_nanos u64]` then `count` outcomes, each
//!   a tag byte and its body: `OK` + bincode result, `PANICKED` + bincode `(message, location)`,
//!   `BAD_INPUT`/`BAD_OUTPUT` + bincode message.
//! - `Ready`: `[0xA1]`: the worker's initializer returned (sent only when the pool has one).
//! - `InitFailed`: `[0xA2]` then the panic message as UTF-8: the initializer panicked; the worker
//!   exits next.
//! - `Exited`: `[0xE0][kind u8][value i32]`, never sent by a worker: the parent's watcher thread
//!   injects it after reaping the worker, so it arrives after every reply the worker sent.
//!
//! Invariant: a worker answers every `Task` with exactly one `Reply` carrying exactly `count`
//! outcomes, in item order, unless it dies first.

use crate::codec;
use serde::Serialize;

const TASK: u8 = 1;
const CONTEXT: u8 = 2;
const SHUTDOWN: u8 = 3;
const REPLY: u8 = 1;
const EXITED: u8 = 0xE0;
const READY: u8 = 0xA1;
const INIT_FAILED: u8 = 0xA2;

/// Size of a task frame's header; the items follow it.
pub const TASK_HEADER_LEN: usize = 1 + 8 + 8 + 8 + 8 + 4;
/// Size of a reply frame's header; the outcomes follow it.
pub const REPLY_HEADER_LEN: usize = 1 + 8 + 8 + 4 + 8;

/// Outcome tag: the item's result follows.
pub const OK: u8 = 0;
/// Outcome tag: the function panicked; `(message, location)` follows.
pub const PANICKED: u8 = 1;
/// Outcome tag: the worker could not decode the item; a message follows.
pub const BAD_INPUT: u8 = 2;
/// Outcome tag: the worker could not encode the result; a message follows.
pub const BAD_OUTPUT: u8 = 3;

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
    Task(Task<'a>),
    /// Keep this context for the tasks of `call`.
    Context {
        /// The call the context belongs to.
        call: u64,
        /// The encoded context value.
        value: &'a [u8],
    },
    /// Exit now.
    Shutdown,
}

/// A chunk of items to run, as the worker sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Task<'a> {
    /// Which call of the pool this chunk belongs to.
    pub call: u64,
    /// The chunk's sequence number within its call.
    pub chunk: u64,
    /// The address of the entry function that runs the chunk (0 for a closure pool).
    pub entry: u64,
    /// The index, within the call, of the chunk's first item.
    pub first_index: u64,
    /// How many items the chunk holds.
    pub count: u32,
    /// The items, bincode-encoded back to back.
    pub items: &'a [u8],
}

impl<'a> Command<'a> {
    /// Reads a frame; `None` if it is malformed.
    pub fn parse(frame: &'a [u8]) -> Option<Command<'a>> {
        match *frame.first()? {
            TASK => Some(Command::Task(Task {
                call: u64_at(frame, 1)?,
                chunk: u64_at(frame, 9)?,
                entry: u64_at(frame, 17)?,
                first_index: u64_at(frame, 25)?,
                count: u32_at(frame, 33)?,
                items: frame.get(TASK_HEADER_LEN..)?,
            })),
            CONTEXT => Some(Command::Context {
                call: u64_at(frame, 1)?,
                value: frame.get(9..)?,
            }),
            SHUTDOWN => Some(Command::Shutdown),
            _ => None,
        }
    }
}

/// Starts a task frame in `buf` (reusing its allocation): the caller appends the items with
/// [`codec::encode_into`], then calls [`seal_task`].
pub fn begin_task(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(TASK_HEADER_LEN, 0);
}

/// Writes the header of a task frame begun with [`begin_task`].
pub fn seal_task(buf: &mut [u8], call: u64, chunk: u64, entry: u64, first_index: u64, count: u32) {
    buf[0] = TASK;
    buf[1..9].copy_from_slice(&call.to_le_bytes());
    buf[9..17].copy_from_slice(&chunk.to_le_bytes());
    buf[17..25].copy_from_slice(&entry.to_le_bytes());
    buf[25..33].copy_from_slice(&first_index.to_le_bytes());
    buf[33..37].copy_from_slice(&count.to_le_bytes());
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

/// How a child process ended, as the parent's watcher learned it from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit`/`_exit` with this code.
    Code(i32),
    /// A signal with this number ended it.
    Signal(i32),
    /// It could not be waited for (for example `SIGCHLD` is ignored and the kernel reaped it).
    Unknown,
}

/// The sentinel frame the parent's watcher thread injects after reaping a child.
pub fn exited_frame(status: ExitStatus) -> [u8; 6] {
    let (kind, value) = match status {
        ExitStatus::Code(c) => (0u8, c),
        ExitStatus::Signal(s) => (1, s),
        ExitStatus::Unknown => (2, 0),
    };
    let v = value.to_le_bytes();
    [EXITED, kind, v[0], v[1], v[2], v[3]]
}

/// The frame a worker sends when its initializer returned.
pub fn ready_frame() -> [u8; 1] {
    [READY]
}

/// The frame a worker sends when its initializer panicked with `message`.
pub fn init_failed_frame(message: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + message.len());
    buf.push(INIT_FAILED);
    buf.extend_from_slice(message.as_bytes());
    buf
}

/// A frame a worker (or the watcher, for `Exited`) sends to the parent, as the parent reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// The outcomes of one chunk.
    Reply(Reply<'a>),
    /// The worker's initializer returned; tasks run from now on.
    Ready,
    /// The worker's initializer panicked with this message; the worker exits.
    InitFailed(&'a str),
    /// The child is gone and reaped; nothing follows.
    Exited(ExitStatus),
}

/// The outcomes of one chunk, as the parent reads them.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
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
            REPLY => Some(Message::Reply(Reply {
                call: u64_at(frame, 1)?,
                chunk: u64_at(frame, 9)?,
                count: u32_at(frame, 17)?,
                busy_nanos: u64_at(frame, 21)?,
                outcomes: frame.get(REPLY_HEADER_LEN..)?,
            })),
            READY => Some(Message::Ready),
            INIT_FAILED => Some(Message::InitFailed(
                std::str::from_utf8(&frame[1..]).unwrap_or("(message not UTF-8)"),
            )),
            EXITED => {
                let value = i32::from_le_bytes(frame.get(2..6)?.try_into().ok()?);
                Some(Message::Exited(match frame.get(1)? {
                    0 => ExitStatus::Code(value),
                    1 => ExitStatus::Signal(value),
                    _ => ExitStatus::Unknown,
                }))
            }
            _ => None,
        }
    }
}

/// Builds a reply frame in place, one outcome at a time; reused from chunk to chunk.
#[derive(Debug, Default)]
pub struct ReplyWriter {
    buf: Vec<u8>,
    count: u32,
}

impl ReplyWriter {
    /// Starts the reply to one chunk, discarding the previous one but keeping its allocation.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.resize(REPLY_HEADER_LEN, 0);
        self.count = 0;
    }

    /// Appends a successful result; if it cannot be encoded, appends `BAD_OUTPUT` instead.
    pub fn ok<R: Serialize + ?Sized>(&mut self, result: &R) {
        let mark = self.buf.len();
        self.buf.push(OK);
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec::encode_into(&mut self.buf, result)
        }));
        let failure = match encoded {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(payload) => Some(crate::panic::take_report(payload).0),
        };
        match failure {
            None => self.count += 1,
            Some(message) => {
                self.buf.truncate(mark);
                self.failed(BAD_OUTPUT, &message);
            }
        }
    }

    /// Appends a panic outcome.
    pub fn panicked(&mut self, message: &str, location: Option<&str>) {
        self.buf.push(PANICKED);
        // Encoding a pair of strings into a Vec cannot fail.
        let _ = codec::encode_into(&mut self.buf, &(message, location));
        self.count += 1;
    }

    /// Appends a `BAD_INPUT` or `BAD_OUTPUT` outcome.
    pub fn failed(&mut self, tag: u8, message: &str) {
        self.buf.push(tag);
        let _ = codec::encode_into(&mut self.buf, message);
        self.count += 1;
    }

    /// Outcomes appended so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes the header and returns the finished frame.
    pub fn seal(&mut self, call: u64, chunk: u64, busy_nanos: u64) -> &[u8] {
        self.buf[0] = REPLY;
        self.buf[1..9].copy_from_slice(&call.to_le_bytes());
        self.buf[9..17].copy_from_slice(&chunk.to_le_bytes());
        self.buf[17..21].copy_from_slice(&self.count.to_le_bytes());
        self.buf[21..29].copy_from_slice(&busy_nanos.to_le_bytes());
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_frame_round_trips() {
        let mut bytes = Vec::new();
        begin_task(&mut bytes);
        codec::encode_into(&mut bytes, &5u32).unwrap();
        seal_task(&mut bytes, 3, 4, 0xdead, 100, 1);
        match Command::parse(&bytes).unwrap() {
            Command::Task(task) => {
                assert_eq!((task.call, task.chunk, task.entry), (3, 4, 0xdead));
                assert_eq!((task.first_index, task.count), (100, 1));
                assert_eq!(codec::decode::<u32>(task.items).unwrap().0, 5);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reply_and_exit_frames_round_trip() {
        let mut reply = ReplyWriter::default();
        reply.begin();
        reply.ok(&9u8);
        reply.panicked("boom", Some("src/x.rs:1:2"));
        let bytes = reply.seal(1, 2, 77).to_vec();
        let Some(Message::Reply(r)) = Message::parse(&bytes) else {
            panic!("not a reply")
        };
        assert_eq!((r.call, r.chunk, r.count, r.busy_nanos), (1, 2, 2, 77));
        assert_eq!(r.outcomes[0], OK);
        assert_eq!(Message::parse(&ready_frame()), Some(Message::Ready));
        assert_eq!(
            Message::parse(&init_failed_frame("no config")),
            Some(Message::InitFailed("no config"))
        );
        for status in [
            ExitStatus::Code(3),
            ExitStatus::Signal(11),
            ExitStatus::Unknown,
        ] {
            assert_eq!(
                Message::parse(&exited_frame(status)),
                Some(Message::Exited(status))
            );
        }
    }

    #[test]
    fn malformed_frames_are_rejected() {
        assert_eq!(Command::parse(&[]), None);
        assert_eq!(Command::parse(&[TASK, 1, 2]), None);
        assert_eq!(Message::parse(&[42]), None);
    }
}
