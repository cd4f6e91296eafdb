//! Big frames through shared memory: a worker's two arenas, one for the tasks its parent sends
//! it and one for the replies it sends back, each a ring of contiguous spans in the memory the
//! two processes share (after the reply ring, see [`progress`](crate::progress)).
//!
//! A frame of at least [`ARENA_MIN`] bytes is copied into the arena once, where the other side
//! reads it, and only a small notice travels: a task notice on the socket
//! ([`protocol`](crate::protocol)'s `InArena`), a reply notice as a record in the reply ring
//! ([`reply_ring`](crate::reply_ring)). No system call moves the bytes, and the arena is mapped
//! once, when the worker is forked, and reused for every frame. A frame the arena has no room
//! for travels as before, on the socket.
//!
//! Layout: an [`ArenaHeader`] in the shared page and [`ARENA_WORDS`] 64-bit words. Positions
//! count words since the worker started and only grow; a span is `(start, len)`, `len` bytes
//! from word `start`, never wrapping past the end of the words (a span that would wrap starts
//! at the next lap instead, and the words skipped are free again with the span).
//!
//! Invariants:
//! - One side writes spans (the writer: the parent for tasks, the worker for replies) and keeps
//!   its own count of where the next goes ([`Writer`]); the other side reads them in the order
//!   they were written and publishes in `released` the end of the last span it is done with.
//!   The writer never writes a span that overlaps words between `released` and its own count.
//! - A span is written before its notice is sent (the socket, or the ring's release of
//!   `written`), so the reader that gets the notice sees the whole span.
//! - The parent trusts nothing in the reply arena or in the task arena's `released`: a reply
//!   span is checked against the parent's own count of what it has read (it must start at or
//!   after it, lie within one lap of it, and not wrap), copied out with atomic loads, and then
//!   checked against the check word its notice carries (a span a later task overwrote by
//!   accident is a violation, never a wrong value). A `released` beyond what the parent wrote
//!   only harms the worker that lies: the parent may then overwrite a task it still reads.
//! - Every access to the shared words from the parent is atomic: the worker may write to them
//!   at any moment, and atomics keep that defined.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of one arena.
pub const ARENA_BYTES: usize = 4 << 20;
/// Words of one arena.
pub const ARENA_WORDS: usize = ARENA_BYTES / 8;
/// The smallest frame that goes through an arena (smaller ones cost less on the socket or in
/// the reply ring).
pub const ARENA_MIN: usize = 32 * 1024;

/// The counter of one arena that its reader writes, on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct ArenaHeader {
    /// The end of the last span the reader is done with (words).
    released: AtomicU64,
}

/// A view of one arena, from either side.
#[derive(Debug, Clone, Copy)]
pub struct Arena<'a> {
    header: &'a ArenaHeader,
    words: &'a [AtomicU64],
}

/// Where a frame lies in an arena: `len` bytes from word `start` (a position, not an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The position of its first word.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl Span {
    /// Words it covers.
    pub fn words(&self) -> u64 {
        self.len.div_ceil(8)
    }

    /// The position right after it.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.words())
    }
}

/// The writer's own count of an arena: where its next span may go, and the least `released`
/// it has seen (it never reads the shared counter back as less).
#[derive(Debug, Default, Clone, Copy)]
pub struct Writer {
    written: u64,
    released: u64,
}

/// The reader's own count of an arena: where the last span it read ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reader {
    read: u64,
}

/// A checksum of a span's words against a span overwritten after it was written: a sum and a
/// sum of sums (as Fletcher's), so any one changed word changes it, at one add per word.
#[derive(Debug, Clone, Copy)]
pub struct SpanCheck {
    sum: u64,
    sum_of_sums: u64,
    span: Span,
}

impl SpanCheck {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new(span: Span) -> SpanCheck {
        SpanCheck {
            sum: 0,
            sum_of_sums: 0,
            span,
        }
    }

    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.sum = self.sum.wrapping_add(word);
        self.sum_of_sums = self.sum_of_sums.wrapping_add(self.sum);
    }

    /// The check's value: its sums mixed with the span's place and length.
    pub fn value(&self) -> u64 {
        let mut h = 0x5EED_u64;
        for word in [self.span.start, self.span.len, self.sum, self.sum_of_sums] {
            h = (h ^ word).wrapping_mul(SpanCheck::K).rotate_left(29);
        }
        h ^ (h >> 31)
    }
}

impl<'a> Arena<'a> {
    /// A view of `header` and its `words` (exactly [`ARENA_WORDS`] of them).
    pub(crate) fn new(header: &'a ArenaHeader, words: &'a [AtomicU64]) -> Arena<'a> {
        debug_assert_eq!(words.len(), ARENA_WORDS);
        Arena { header, words }
    }

    /// Writer: a place for `len` bytes that overlaps nothing the reader has not released, if
    /// there is one now. `released` is clamped to what this writer wrote (the reader may lie).
    fn place(&self, writer: &mut Writer, len: usize) -> Option<Span> {
        let lap = ARENA_WORDS as u64;
        let words = (len as u64).div_ceil(8);
        if words > lap || len == 0 {
            return None;
        }
        let released = self.header.released.load(Ordering::Acquire);
        writer.released = released.clamp(writer.released, writer.written);
        let mut start = writer.written;
        if start % lap + words > lap {
            start += lap - start % lap;
        }
        (start + words - writer.released <= lap).then_some(Span {
            start,
            len: len as u64,
        })
    }

    /// Writer: copies `bytes` into a free span, if one is free now; returns the span and the
    /// check of its words. The span is the reader's once its notice is sent.
    pub fn write(&self, writer: &mut Writer, bytes: &[u8]) -> Option<(Span, SpanCheck)> {
        let span = self.place(writer, bytes.len())?;
        let mut check = SpanCheck::new(span);
        let base = (span.start % ARENA_WORDS as u64) as usize;
        let target = &self.words[base..base + span.words() as usize];
        let mut chunks = bytes.chunks_exact(8);
        for (slot, chunk) in target.iter().zip(&mut chunks) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            check.add(word);
            slot.store(word, Ordering::Relaxed);
        }
        Arena::write_tail(target, chunks.remainder(), Some(&mut check));
        writer.written = span.end();
        Some((span, check))
    }

    /// Parent, writing a task: copies `bytes` into a free span, if one is free now, at memory
    /// speed and with no check (the worker trusts its parent). The span is the worker's once
    /// its notice is sent.
    pub fn write_unchecked(&self, writer: &mut Writer, bytes: &[u8]) -> Option<Span> {
        let span = self.place(writer, bytes.len())?;
        let base = (span.start % ARENA_WORDS as u64) as usize;
        let target = &self.words[base..base + span.words() as usize];
        let whole = bytes.len() / 8 * 8;
        // SAFETY: `target` covers `span.words()` words, at least `whole` bytes, live for the
        // view's lifetime; atomics are `UnsafeCell`s, so a pointer derived from a shared slice
        // of them may be written through. The bytes are only written, never read back here,
        // so a worker that writes to them at the same moment changes nothing this process sees.
        unsafe {
            let to = target.as_ptr().cast_mut().cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), to, whole);
        }
        Arena::write_tail(target, &bytes[whole..], None);
        writer.written = span.end();
        Some(span)
    }

    /// Writes the last, partial word of a span (`tail` holds under 8 bytes), padded with zeros.
    fn write_tail(target: &[AtomicU64], tail: &[u8], check: Option<&mut SpanCheck>) {
        if tail.is_empty() {
            return;
        }
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        let word = u64::from_le_bytes(last);
        if let Some(check) = check {
            check.add(word);
        }
        target[target.len() - 1].store(word, Ordering::Relaxed);
    }

    /// Parent, reading a reply: copies out the span a notice names, after checking it against
    /// what it read before (`Err` says how the notice breaks the invariants), and releases it.
    /// The caller compares the returned check with the one the notice carries.
    pub fn read(&self, reader: &mut Reader, span: Span) -> Result<(Vec<u8>, SpanCheck), String> {
        let lap = ARENA_WORDS as u64;
        let words = span.words();
        let skipped = span.start.wrapping_sub(reader.read);
        if span.start < reader.read || skipped >= lap || words == 0 || words > lap {
            return Err(format!(
                "a reply of {} bytes at word {} of its arena, where {} words were read",
                span.len, span.start, reader.read
            ));
        }
        if span.start % lap + words > lap || skipped + words > lap {
            return Err(format!(
                "a reply of {} bytes at word {} of its arena, which does not hold it",
                span.len, span.start
            ));
        }
        let mut check = SpanCheck::new(span);
        let base = (span.start % lap) as usize;
        // `words` is at most a lap (checked above): no untrusted allocation.
        let bytes = words as usize * 8;
        let mut out: Vec<u8> = Vec::with_capacity(bytes);
        let source = &self.words[base..base + words as usize];
        let target = &mut out.spare_capacity_mut()[..bytes];
        for (slot, chunk) in source.iter().zip(target.chunks_exact_mut(8)) {
            let word = slot.load(Ordering::Relaxed);
            check.add(word);
            for (to, byte) in chunk.iter_mut().zip(word.to_le_bytes()) {
                to.write(byte);
            }
        }
        // SAFETY: the loop wrote all `bytes` bytes (`source` has `words` words and `target`
        // `words` chunks of 8), within the capacity reserved above.
        unsafe { out.set_len(bytes) };
        out.truncate(span.len as usize);
        reader.read = span.end();
        self.header.released.store(reader.read, Ordering::Release);
        Ok((out, check))
    }

    /// Worker, reading a task: the bytes of the span its parent names, if the span lies in the
    /// arena.
    ///
    /// # Safety
    /// The parent must not write to the span until the worker releases it (see
    /// [`release`](Arena::release)): an honest parent does not.
    pub unsafe fn bytes(&self, span: Span) -> Option<&'a [u8]> {
        let lap = ARENA_WORDS as u64;
        let words = span.words();
        if words == 0 || span.start % lap + words > lap {
            return None;
        }
        let base = (span.start % lap) as usize;
        let first = &self.words[base..base + words as usize];
        // SAFETY: the words are live for 'a (the view's lifetime) and lie in one slice of
        // atomics (checked above); the caller promises nobody writes to them while the slice
        // lives, so reading them as plain bytes races with nothing.
        Some(unsafe { std::slice::from_raw_parts(first.as_ptr().cast::<u8>(), span.len as usize) })
    }

    /// Worker: it is done with every span up to `end` (the end of a span it read).
    pub fn release(&self, end: u64) {
        self.header.released.store(end, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> (ArenaHeader, Vec<AtomicU64>) {
        let words = (0..ARENA_WORDS).map(|_| AtomicU64::new(0)).collect();
        (ArenaHeader::default(), words)
    }

    #[test]
    fn frames_of_every_size_come_back_whole_across_laps() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let (mut writer, mut reader) = (Writer::default(), Reader::default());
        for round in 0..40usize {
            let len = ARENA_MIN + (round * 77_777) % (ARENA_BYTES / 2);
            let frame: Vec<u8> = (0..len).map(|i| (i * 7 + round) as u8).collect();
            let (span, check) = arena.write(&mut writer, &frame).expect("room");
            let (bytes, read_check) = arena.read(&mut reader, span).expect("valid");
            assert_eq!(bytes, frame);
            assert_eq!(check.value(), read_check.value());
        }
        assert!(
            reader.read > 2 * ARENA_WORDS as u64,
            "the test lapped the arena"
        );
    }

    #[test]
    fn a_writer_never_overwrites_what_is_not_released() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let mut writer = Writer::default();
        // Three spans of a third fill all but a few words: a fourth cannot wrap into them.
        let frame = vec![1u8; ARENA_BYTES / 3 - 8];
        let first = arena.write(&mut writer, &frame).expect("room").0;
        arena.write(&mut writer, &frame).expect("room");
        arena.write(&mut writer, &frame).expect("room");
        assert!(arena.write(&mut writer, &frame).is_none(), "full");
        arena.release(first.end());
        let fourth = arena
            .write(&mut writer, &frame)
            .expect("room after a release")
            .0;
        assert_eq!(
            fourth.start % ARENA_WORDS as u64,
            0,
            "it starts the next lap"
        );
        assert!(arena.write(&mut writer, &frame).is_none(), "full again");
        // A reader that claims to have released more than was written changes nothing.
        arena.release(u64::MAX);
        assert!(arena.write(&mut writer, &frame).is_some());
        assert!(
            arena
                .write(&mut writer, &vec![0u8; ARENA_BYTES + 1])
                .is_none()
        );
    }

    #[test]
    fn lying_notices_and_overwritten_spans_are_caught() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let (mut writer, mut reader) = (Writer::default(), Reader::default());
        let frame = vec![9u8; ARENA_MIN];
        let (span, check) = arena.write(&mut writer, &frame).expect("room");
        for lie in [
            Span {
                start: span.start,
                len: ARENA_BYTES as u64 + 8,
            },
            Span {
                start: ARENA_WORDS as u64 - 1,
                len: 16,
            },
            Span {
                start: ARENA_WORDS as u64,
                len: 8,
            },
            Span {
                start: u64::MAX,
                len: 8,
            },
            Span { start: 0, len: 0 },
        ] {
            assert!(arena.read(&mut reader.clone(), lie).is_err(), "{lie:?}");
        }
        words[3].store(0xBAD, Ordering::Relaxed);
        let (_, read_check) = arena.read(&mut reader, span).expect("in bounds");
        assert_ne!(read_check.value(), check.value());
        // A span before what was read is refused.
        assert!(arena.read(&mut reader, span).is_err());
    }
}
