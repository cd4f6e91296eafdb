//! Replies through shared memory: a pool worker writes each reply into a ring in the memory it
//! shares with its parent (beside its progress counters, see [`progress`](crate::shared::progress)),
//! and the parent copies it out without a system call. The socket carries only replies that do
//! not fit and, when the parent sleeps, a byte on its notify pipe.
//!
//! Layout: a [`RingHeader`] and [`RING_WORDS`] 64-bit words, used as a ring of records. A record
//! is a head word `(kind << 32) | len`, a check word, and `ceil(len / 8)` words of bytes
//! (little-endian in each word, the last padded with zeros); it may wrap past the end of the
//! words. The check word hashes the record's place, head and bytes: a reply that a later task
//! of the same worker overwrites by accident (a stray pointer) before the parent reads it is a
//! violation, never a wrong value.
//!
//! Invariants:
//! - Only the worker writes `written` and the words; only the parent writes `consumed`. Both
//!   count words since the worker started and only grow, and `written - consumed` is at most
//!   [`RING_WORDS`].
//! - A record is written whole before `written` moves past it (release), so a reader that sees
//!   the new `written` (acquire) sees the whole record: a worker that dies mid-record leaves
//!   nothing to read, never half a reply.
//! - Replies keep their order across the two paths: a reply too big for the free room is
//!   announced by an `ON_SOCKET` record, published before the reply is sent on the socket; the
//!   parent delivers each socket frame in the place of its announcement.
//! - What a task itself writes to its worker's socket (a lie) stays ahead of the task's reply:
//!   a worker whose socket holds bytes the parent has not read sends its reply that way too
//!   (announced), so the parent meets the lie first and blames the task that told it. A socket
//!   frame the ring never announced is a violation, found before any record published after
//!   the frame was read.
//! - No wake-up is lost: the parent raises `parent_sleeping` before it polls and then looks at
//!   `written` once more; the worker moves `written` and then takes `parent_sleeping` down,
//!   writing the notify pipe (a datagram) if it was up. Both sides use sequentially consistent
//!   order, so at least one of them sees the other's write.
//! - The parent trusts nothing it reads here (a task may scribble on its worker's ring): a
//!   `written` more than a ring ahead or behind, a record longer than what is written, an
//!   unknown kind, are violations.
//! - Every access to the shared words is atomic (relaxed, between the acquire and release of
//!   `written`): the other process may write at any moment, and atomics keep that defined.

use crate::shared::arena::{self, ARENA_MIN, Arena, Span};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether workers reply through their rings on this platform: only where a worker can tell
/// that its socket holds bytes the parent has not read (see the invariants above). The ring
/// switched off on Linux (this `false`, the reply arena with it), each row the median of 6
/// runs alternating with main: row (b) ran 2.79× slower, (l) 2.09×, (e) echoed 1.33×, (a),
/// (e) in and (j) 0.89-1.08×, with `cargo run --release -p forkpool-bench --example compare --
/// --only a,b,c,e,j,l,n,p --no-python --repeat 2`.
pub const AVAILABLE: bool = cfg!(target_os = "linux");

/// Bytes of records a ring holds. (Not measured against other values: a reply of up to about
/// this goes through the ring, bigger ones through the reply arena or the socket.)
pub const RING_BYTES: usize = 256 * 1024;
/// Words of records a ring holds.
pub const RING_WORDS: usize = RING_BYTES / 8;

/// A record holding a reply.
const FRAME: u64 = 0;
/// A record saying the next reply comes on the socket.
const ON_SOCKET: u64 = 1;
/// A record naming a reply in the reply arena: its span's start and length, and the check of
/// its words folded into the record's check.
const IN_ARENA: u64 = 2;
/// Words of an `IN_ARENA` record's body.
const IN_ARENA_BODY: u64 = 2;

/// Words before a record's bytes: its head and its check.
const RECORD_HEAD: u64 = 2;

/// The check word of a record: a multiply-xor hash of its place, its head and its words.
struct Check(u64);

impl Check {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(place: u64, head: u64) -> Check {
        let mut check = Check(place.wrapping_mul(Check::K) ^ 0x5EED);
        check.add(head);
        check
    }

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Check::K).rotate_left(23);
    }

    fn value(&self) -> u64 {
        self.0 ^ (self.0 >> 31)
    }
}

/// The ring's counters, each side's on its own cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// Words the worker has published.
    written: AtomicU64,
    _worker_line: [u64; 7],
    /// Words the parent has read.
    consumed: AtomicU64,
    /// 1 while the parent may be asleep in `poll`.
    parent_sleeping: AtomicU64,
}

/// A view of one worker's ring (and of the arena its big replies go to), from either side.
#[derive(Debug, Clone, Copy)]
pub struct Ring<'a> {
    header: &'a RingHeader,
    words: &'a [AtomicU64],
    arena: Arena<'a>,
}

/// What [`Ring::push`] did with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The reply is in the ring.
    Frame,
    /// The ring announces the reply: send it on the socket.
    Announced,
    /// The ring is full: wait for the parent to read.
    Full,
}

/// A record the parent read.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// A reply.
    Frame(Vec<u8>),
    /// The next reply comes on the socket.
    OnSocket,
}

/// How far the parent has read a ring (its own count: it never reads `consumed` back).
#[derive(Debug, Default)]
pub struct Cursor {
    read: u64,
    arena: arena::Reader,
}

impl Cursor {
    /// Words read so far.
    pub fn position(&self) -> u64 {
        self.read
    }
}

impl<'a> Ring<'a> {
    /// A view of `header` and its `words` (exactly [`RING_WORDS`] of them).
    pub(crate) fn new(
        header: &'a RingHeader,
        words: &'a [AtomicU64],
        arena: Arena<'a>,
    ) -> Ring<'a> {
        debug_assert_eq!(words.len(), RING_WORDS);
        Ring {
            header,
            words,
            arena,
        }
    }

    fn at(&self, index: u64) -> &AtomicU64 {
        &self.words[(index % RING_WORDS as u64) as usize]
    }

    /// Worker: unless it must go `behind` bytes on the socket, writes a big `frame` into the
    /// arena (`writer` is the worker's count of it) with a record naming it, or writes it as a
    /// record, if the free room holds that and still an announcement (so one always fits
    /// after it); else writes an announcement if one fits.
    pub fn push(&self, frame: &[u8], behind: bool, writer: &mut arena::Writer) -> Pushed {
        let written = self.header.written.load(Ordering::Relaxed);
        let consumed = self.header.consumed.load(Ordering::Acquire);
        let free = (RING_WORDS as u64).saturating_sub(written.wrapping_sub(consumed));
        let body = (frame.len() as u64).div_ceil(8);
        let arena_record = RECORD_HEAD + IN_ARENA_BODY;
        if !behind && frame.len() >= ARENA_MIN && arena_record + RECORD_HEAD <= free {
            if let Some((span, span_check)) = self.arena.write(writer, frame) {
                let head = (IN_ARENA << 32) | IN_ARENA_BODY;
                let mut check = Check::new(written, head);
                for word in [span.start, span.len, span_check.value()] {
                    check.add(word);
                }
                self.at(written + RECORD_HEAD)
                    .store(span.start, Ordering::Relaxed);
                self.at(written + RECORD_HEAD + 1)
                    .store(span.len, Ordering::Relaxed);
                self.at(written).store(head, Ordering::Relaxed);
                self.at(written + 1).store(check.value(), Ordering::Relaxed);
                self.header
                    .written
                    .store(written + arena_record, Ordering::SeqCst);
                return Pushed::Frame;
            }
        }
        if body + 2 * RECORD_HEAD <= free && !behind {
            let head = (FRAME << 32) | frame.len() as u64;
            let mut check = Check::new(written, head);
            for (i, bytes) in frame.chunks(8).enumerate() {
                let mut word = [0u8; 8];
                word[..bytes.len()].copy_from_slice(bytes);
                let word = u64::from_le_bytes(word);
                check.add(word);
                self.at(written + RECORD_HEAD + i as u64)
                    .store(word, Ordering::Relaxed);
            }
            self.at(written).store(head, Ordering::Relaxed);
            self.at(written + 1).store(check.value(), Ordering::Relaxed);
            self.header
                .written
                .store(written + RECORD_HEAD + body, Ordering::SeqCst);
            return Pushed::Frame;
        }
        if free >= RECORD_HEAD {
            let head = ON_SOCKET << 32;
            self.at(written).store(head, Ordering::Relaxed);
            self.at(written + 1)
                .store(Check::new(written, head).value(), Ordering::Relaxed);
            self.header
                .written
                .store(written + RECORD_HEAD, Ordering::SeqCst);
            return Pushed::Announced;
        }
        Pushed::Full
    }

    /// Worker, after a push: whether the parent may be asleep (then it must be rung). Takes the
    /// flag down, so one byte on the notify pipe serves one sleep.
    pub fn take_parent_sleeping(&self) -> bool {
        self.header.parent_sleeping.swap(0, Ordering::SeqCst) != 0
    }

    /// Parent: it is about to sleep (`true`, before it looks at the ring a last time), or it
    /// woke (`false`).
    pub fn set_parent_sleeping(&self, sleeping: bool) {
        self.header
            .parent_sleeping
            .store(u64::from(sleeping), Ordering::SeqCst);
    }

    /// Parent: how many words the worker has published (to compare with [`Cursor::position`]).
    pub fn written(&self) -> u64 {
        self.header.written.load(Ordering::SeqCst)
    }

    /// Parent: whether the worker published anything past `cursor`.
    pub fn has_unread(&self, cursor: &Cursor) -> bool {
        self.header.written.load(Ordering::SeqCst) != cursor.read
    }

    /// Parent: the next record past `cursor`, if one is published; `Err` says how the ring
    /// breaks its invariants (the worker is not to be read any more).
    pub fn read(&self, cursor: &mut Cursor) -> Result<Option<Record>, String> {
        let written = self.header.written.load(Ordering::Acquire);
        let unread = written.wrapping_sub(cursor.read);
        if unread == 0 {
            return Ok(None);
        }
        if unread > RING_WORDS as u64 {
            return Err(format!(
                "its reply ring claims {unread} words unread, more than it holds"
            ));
        }
        if unread < RECORD_HEAD {
            return Err(format!("a record of {unread} word in its reply ring"));
        }
        let head = self.at(cursor.read).load(Ordering::Relaxed);
        let stated = self.at(cursor.read + 1).load(Ordering::Relaxed);
        let mut check = Check::new(cursor.read, head);
        let (kind, len) = (head >> 32, head & 0xffff_ffff);
        let (record, words) = match kind {
            ON_SOCKET if len == 0 => (Record::OnSocket, RECORD_HEAD),
            IN_ARENA if len == IN_ARENA_BODY => {
                if RECORD_HEAD + IN_ARENA_BODY > unread {
                    return Err(format!(
                        "an arena record in its reply ring, where {unread} words are written"
                    ));
                }
                let span = Span {
                    start: self.at(cursor.read + RECORD_HEAD).load(Ordering::Relaxed),
                    len: self
                        .at(cursor.read + RECORD_HEAD + 1)
                        .load(Ordering::Relaxed),
                };
                let (frame, span_check) = self.arena.read(&mut cursor.arena, span)?;
                for word in [span.start, span.len, span_check.value()] {
                    check.add(word);
                }
                (Record::Frame(frame), RECORD_HEAD + IN_ARENA_BODY)
            }
            FRAME => {
                let body = len.div_ceil(8);
                if RECORD_HEAD + body > unread {
                    return Err(format!(
                        "a reply of {len} bytes in its ring, where {unread} words are written"
                    ));
                }
                // `len` is at most a ring's bytes (checked above): no untrusted allocation.
                let len = len as usize;
                let mut frame = Vec::with_capacity(len.next_multiple_of(8));
                for i in 0..body {
                    let word = self
                        .at(cursor.read + RECORD_HEAD + i)
                        .load(Ordering::Relaxed);
                    check.add(word);
                    frame.extend_from_slice(&word.to_le_bytes());
                }
                frame.truncate(len);
                (Record::Frame(frame), RECORD_HEAD + body)
            }
            _ => return Err(format!("a record of kind {kind} in its reply ring")),
        };
        if check.value() != stated {
            return Err("a record in its reply ring overwritten after it was written".into());
        }
        self.advance(cursor, words);
        Ok(Some(record))
    }

    fn advance(&self, cursor: &mut Cursor, words: u64) {
        cursor.read += words;
        self.header.consumed.store(cursor.read, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
