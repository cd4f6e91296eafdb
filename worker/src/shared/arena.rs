//! Big frames through shared memory: a worker's two arenas, one for the tasks its parent sends
//! it and one for the replies it sends back, each a ring of contiguous spans in the memory the
//! two processes share (after the reply ring, see [`progress`](crate::shared::progress)).
//!
//! A frame of at least [`ARENA_MIN`] bytes is copied into the arena once, where the other side
//! reads it, and only a small notice travels: a task notice on the socket
//! ([`protocol`](crate::proto::protocol)'s `InArena`), a reply notice as a record in the reply ring
//! ([`reply_ring`](crate::shared::reply_ring)). No system call moves the bytes, and the arena is mapped
//! once, when the worker is forked, and reused for every frame. A frame the arena has no room
//! for travels on the socket.
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
//! - Every span carries a check of its words ([`SpanCheck`]), computed by its writer from the
//!   bytes it meant to write and sent with its notice. The reader checks the span against its
//!   own count of what it has read (it must start at or after it, lie within one lap of it,
//!   and not wrap), then either copies it out with atomic loads, computing the check of the
//!   words it copied, releases it, compares the checks and reads nothing but its copy
//!   ([`Arena::read_into`]); or, where nothing else of its process can write the span while it
//!   reads it, checks it where it lies, compares, reads it there and releases it once done
//!   ([`Arena::view`]: a worker's frame of one task of one item, which it decodes before any
//!   code of the task runs, with no thread or child of an earlier task alive). A span written
//!   over after it was written (a stray write by a task, which can write all of its worker's
//!   memory) does not match: the parent calls such a reply a violation, the worker exits on
//!   such a task ([`crate::child::setup::EXIT_BAD_FRAME`]) and its chunks run elsewhere; never a
//!   wrong value.
//! - A reader releases a span once it has copied it, or once it is done reading it in place:
//!   nothing reads the span after that.
//! - The parent trusts nothing in the reply arena or in the chunk arena's `released`. A
//!   `released` beyond what the parent wrote only harms the worker that lies: the parent may
//!   then overwrite a task before the worker copies it, which its check then catches.
//! - Every access to the shared words from the parent is atomic: the worker may write to them
//!   at any moment, and atomics keep that defined.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of one arena. (Not measured against other values: twice the 2 MiB of frames one call
/// keeps in flight per worker; the mapping is `MAP_NORESERVE`, so pages never touched cost no
/// memory.)
pub const ARENA_BYTES: usize = 4 << 20;
/// Words of one arena.
pub const ARENA_WORDS: usize = ARENA_BYTES / 8;
/// The smallest frame that goes through an arena (smaller ones cost less on the socket or in
/// the reply ring). The threshold is not measured against other values. Each arena switched
/// off alone, each row the median of 6 runs alternating with main (`cargo run --release
/// -p forkpool-bench --example compare -- --only a,b,c,e,j,l,n,p --no-python --repeat 2`, then 6
/// more on rows a, e, j; row (a)'s default chunks of 8,192 ints make frames over this threshold):
/// - without the chunk arena, row (a) ran 1.26× and 1.22× slower, (e) in 1.07× and 1.10×, (e)
///   echoed 1.17× and 1.06×, (j) 1.16× and 1.02×, (b) 1.03×, (l) 1.08×;
/// - without the reply arena, row (a) 1.21× and 1.35×, (e) in 0.92× and 1.13×, (e) echoed
///   1.00× and 1.05×, (j) 0.96× and 1.00×, (b) 0.91×, (l) 0.97×;
///
/// one build against itself differed by up to 1.45× on rows (c), (e) in, (j), (p).
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

/// A checksum of a span's words against a span overwritten after it was written: in each of
/// four lanes (word `i` of the span goes to lane `i % 4`), a sum and a sum of sums (as
/// Fletcher's), so any one changed word changes it, at one add per word and lanes that do not
/// wait for each other.
#[derive(Debug, Clone, Copy)]
pub struct SpanCheck {
    lanes: Lanes,
    span: Span,
}

/// The lanes of a [`SpanCheck`].
const LANES: usize = 4;

/// Each lane's sum and sum of sums, so far, passed by value through the loops that add to it,
/// so they stay in registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lanes {
    sums: [u64; LANES],
    sums_of_sums: [u64; LANES],
}

impl Lanes {
    /// The lanes of `bytes`, read as plain memory; a last partial word is padded with zeros.
    /// With 256-bit vector adds where the processor has them (x86-64 with AVX2, detected
    /// once), 128-bit ones otherwise.
    fn of(bytes: &[u8]) -> Lanes {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (detected just above).
            return unsafe { Lanes::of_avx2(bytes) };
        }
        Lanes::of_any(bytes)
    }

    /// [`of`](Lanes::of) compiled for AVX2.
    ///
    /// # Safety
    /// The processor has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn of_avx2(bytes: &[u8]) -> Lanes {
        Lanes::of_any(bytes)
    }

    /// [`of`](Lanes::of) for any processor: a loop the compiler turns into vector adds of the
    /// widest kind its caller is compiled for.
    #[inline(always)]
    fn of_any(bytes: &[u8]) -> Lanes {
        let mut lanes = Lanes::default();
        let mut blocks = bytes.chunks_exact(8 * LANES);
        for block in &mut blocks {
            lanes = lanes.add(lane_words(block));
        }
        lanes.add_rest(blocks.remainder())
    }

    /// The lanes of `bytes`, as [`of`](Lanes::of), and their whole blocks of [`LANES`] words
    /// copied to `to`: in one read of them where the processor has AVX2, else a `memcpy` and a
    /// second read. (The compiler turns a plain loop that both copies and sums into the two;
    /// the volatile vector stores below keep them one.)
    ///
    /// # Safety
    /// `to` is valid for writes of `bytes.len() / (8 * LANES)` blocks of [`LANES`] words.
    unsafe fn copied(bytes: &[u8], to: *mut [u64; LANES]) -> Lanes {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (detected just above); the caller answers for `to`.
            return unsafe { Lanes::copied_avx2(bytes, to) };
        }
        // SAFETY: the caller answers for `to`.
        unsafe { Lanes::copied_any(bytes, to) }
    }

    /// [`copied`](Lanes::copied) for any processor: a `memcpy`, then [`of_any`](Lanes::of_any).
    ///
    /// # Safety
    /// As [`copied`](Lanes::copied).
    unsafe fn copied_any(bytes: &[u8], to: *mut [u64; LANES]) -> Lanes {
        let whole = bytes.len() / (8 * LANES) * (8 * LANES);
        // SAFETY: the caller made `to` valid for `whole` bytes; `bytes` is a slice of its own.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to.cast::<u8>(), whole) };
        Lanes::of_any(bytes)
    }

    /// [`copied`](Lanes::copied) with AVX2: each block loaded once, stored and added.
    ///
    /// # Safety
    /// As [`copied`](Lanes::copied), on a processor with AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn copied_avx2(bytes: &[u8], to: *mut [u64; LANES]) -> Lanes {
        use std::arch::x86_64::{__m256i, _mm256_add_epi64, _mm256_loadu_si256};
        let blocks = bytes.len() / (8 * LANES);
        let from = bytes.as_ptr().cast::<__m256i>();
        // SAFETY: every bit pattern, zero included, is a valid `__m256i`. (Not
        // `_mm256_setzero_si256`: under Rust 1.85, the minimum, calling it takes an `unsafe`
        // block, which later compilers flag as unused.)
        let zero = unsafe { std::mem::transmute::<[u64; LANES], __m256i>([0; LANES]) };
        let (mut sums, mut sums_of_sums) = (zero, zero);
        for i in 0..blocks {
            // SAFETY: block `i < blocks` lies within `bytes` (an unaligned load needs no
            // alignment); `to` is valid for it (the caller) and `vmovdqu` needs no alignment
            // either. A `__m256i` is four `u64`s, word `j` of the block in element `j` (x86 is
            // little-endian), as in the arena's words. The store is written in assembly so
            // that the compiler does not split the loop into a `memcpy` and a sum.
            unsafe {
                let block = _mm256_loadu_si256(from.add(i));
                std::arch::asm!(
                    "vmovdqu ymmword ptr [{to}], {block}",
                    to = in(reg) to.add(i),
                    block = in(ymm_reg) block,
                    options(nostack, preserves_flags),
                );
                sums = _mm256_add_epi64(sums, block);
                sums_of_sums = _mm256_add_epi64(sums_of_sums, sums);
            }
        }
        // SAFETY: a `__m256i` and a `[u64; 4]` have the same size, and every bit pattern is
        // valid for both.
        let lanes = unsafe {
            Lanes {
                sums: std::mem::transmute::<__m256i, [u64; LANES]>(sums),
                sums_of_sums: std::mem::transmute::<__m256i, [u64; LANES]>(sums_of_sums),
            }
        };
        lanes.add_rest(&bytes[blocks * 8 * LANES..])
    }

    /// These lanes with `rest` added, the span's last bytes (fewer than a block), a last
    /// partial word padded with zeros.
    fn add_rest(self, rest: &[u8]) -> Lanes {
        let mut last = [0u8; 8 * LANES];
        last[..rest.len()].copy_from_slice(rest);
        self.add_first(lane_words(&last), rest.len().div_ceil(8))
    }

    /// These lanes with the next [`LANES`] words of the span added.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn add(mut self, words: [u64; LANES]) -> Lanes {
        for lane in 0..LANES {
            self.sums[lane] = self.sums[lane].wrapping_add(words[lane]);
            self.sums_of_sums[lane] = self.sums_of_sums[lane].wrapping_add(self.sums[lane]);
        }
        self
    }

    /// These lanes with the span's last `count` words (fewer than [`LANES`]) added, the first
    /// of `words`. (Indexed, as in `add`: a reference to the lanes would keep them in memory in
    /// the loops that come before.)
    #[allow(clippy::needless_range_loop)]
    fn add_first(mut self, words: [u64; LANES], count: usize) -> Lanes {
        for lane in 0..count.min(LANES) {
            self.sums[lane] = self.sums[lane].wrapping_add(words[lane]);
            self.sums_of_sums[lane] = self.sums_of_sums[lane].wrapping_add(self.sums[lane]);
        }
        self
    }
}

impl SpanCheck {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The check's value: its sums mixed with the span's place and length.
    pub fn value(&self) -> u64 {
        let mut h = 0x5EED_u64;
        let sums = self.lanes.sums.iter().chain(&self.lanes.sums_of_sums);
        for &word in [self.span.start, self.span.len].iter().chain(sums) {
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
    /// check of the bytes (computed from `bytes`, what was meant, not read back). The span is
    /// the reader's once its notice is sent.
    pub fn write(&self, writer: &mut Writer, bytes: &[u8]) -> Option<(Span, SpanCheck)> {
        let span = self.place(writer, bytes.len())?;
        let base = (span.start % ARENA_WORDS as u64) as usize;
        let target = &self.words[base..base + span.words() as usize];
        let whole = bytes.len() / (8 * LANES) * (8 * LANES);
        // SAFETY: `target` covers `span.words()` words, at least `whole` bytes, live for the
        // view's lifetime; atomics are `UnsafeCell`s, so a pointer derived from a shared slice
        // of them may be written through. The bytes are only written, never read back here, so
        // the other process writing them at the same moment changes nothing this one sees (its
        // reader's check catches it).
        let lanes = unsafe { Lanes::copied(bytes, target.as_ptr().cast_mut().cast()) };
        let mut last = [0u8; 8 * LANES];
        last[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        let done = whole / 8;
        let count = (bytes.len() - whole).div_ceil(8);
        for (slot, &word) in target[done..done + count].iter().zip(&lane_words(&last)) {
            slot.store(word, Ordering::Relaxed);
        }
        writer.written = span.end();
        Some((span, SpanCheck { lanes, span }))
    }

    /// Reader: copies out the span a notice names, after checking it against what it read
    /// before (`Err` says how the notice breaks the invariants), and releases it. The caller
    /// compares the returned check, that of the words copied, with the one the notice carries.
    pub fn read(&self, reader: &mut Reader, span: Span) -> Result<(Vec<u8>, SpanCheck), String> {
        let mut copy = Vec::new();
        let check = self.read_into(reader, span, &mut copy)?;
        Ok((copy, check))
    }

    /// [`read`](Arena::read) into `copy` (its bytes replaced, its allocation reused).
    pub fn read_into(
        &self,
        reader: &mut Reader,
        span: Span,
        copy: &mut Vec<u8>,
    ) -> Result<SpanCheck, String> {
        let source = self.words_of(reader, span)?;
        let words = span.words();
        let mut lanes = Lanes::default();
        // `words` is at most a lap (checked above): no untrusted allocation.
        copy.clear();
        copy.reserve(words as usize * 8);
        let to = copy.as_mut_ptr().cast::<[u64; LANES]>();
        let mut blocks = source.chunks_exact(LANES);
        for (i, slots) in (&mut blocks).enumerate() {
            let loaded: [u64; LANES] =
                std::array::from_fn(|lane| slots[lane].load(Ordering::Relaxed));
            // SAFETY: `copy` has room for `words` words (reserved above), and block `i` is
            // words `i * LANES..(i + 1) * LANES` of them; an unaligned write needs no alignment.
            unsafe { to.add(i).write_unaligned(loaded.map(u64::to_le)) };
            lanes = lanes.add(loaded);
        }
        let done = words as usize - blocks.remainder().len();
        let mut loaded = [0u64; LANES];
        let to = copy.as_mut_ptr().cast::<u64>();
        for (lane, slot) in blocks.remainder().iter().enumerate() {
            loaded[lane] = slot.load(Ordering::Relaxed);
            // SAFETY: as above, for word `done + lane < words`.
            unsafe { to.add(done + lane).write_unaligned(loaded[lane].to_le()) };
        }
        let lanes = lanes.add_first(loaded, blocks.remainder().len());
        // SAFETY: the loop wrote all `words * 8` bytes, within the capacity reserved above.
        unsafe { copy.set_len(words as usize * 8) };
        copy.truncate(span.len as usize);
        self.release(reader, span);
        Ok(SpanCheck { lanes, span })
    }

    /// Reader: the span a notice names, checked as [`read_into`](Arena::read_into) checks it,
    /// read where it lies: its bytes and the check of its words, in one read of them, neither
    /// copied nor released (the reader calls [`release`](Arena::release) once done with them).
    /// Little-endian targets only: the words hold the bytes in little-endian order.
    ///
    /// # Safety
    /// Nothing may write to the span while the returned bytes live. The writer writes nothing
    /// there until the reader releases it; the caller answers for the rest of its own process.
    pub unsafe fn view(
        &self,
        reader: &Reader,
        span: Span,
    ) -> Result<(&'a [u8], SpanCheck), String> {
        let source = self.words_of(reader, span)?;
        // SAFETY: the words are live for 'a (the view's lifetime) and lie in one slice of
        // atomics, `span.words()` of them (`words_of`); the caller promises nobody writes to
        // them while the bytes live, so reading them as plain bytes races with nothing.
        let words =
            unsafe { std::slice::from_raw_parts(source.as_ptr().cast::<u8>(), source.len() * 8) };
        let lanes = Lanes::of(words);
        Ok((&words[..span.len as usize], SpanCheck { lanes, span }))
    }

    /// Reader: done with `span`, the last span it read; its words are the writer's again.
    pub fn release(&self, reader: &mut Reader, span: Span) {
        reader.read = span.end();
        self.header.released.store(reader.read, Ordering::Release);
    }

    /// Reader: the words of the span a notice names, if the notice keeps the invariants (the
    /// span starts at or after what was read, lies within one lap of it, and does not wrap);
    /// `Err` says how it breaks them.
    fn words_of(&self, reader: &Reader, span: Span) -> Result<&'a [AtomicU64], String> {
        let lap = ARENA_WORDS as u64;
        let words = span.words();
        let skipped = span.start.wrapping_sub(reader.read);
        if span.start < reader.read || skipped >= lap || words == 0 || words > lap {
            return Err(format!(
                "a frame of {} bytes at word {} of its arena, where {} words were read",
                span.len, span.start, reader.read
            ));
        }
        if span.start % lap + words > lap || skipped + words > lap {
            return Err(format!(
                "a frame of {} bytes at word {} of its arena, which does not hold it",
                span.len, span.start
            ));
        }
        let base = (span.start % lap) as usize;
        Ok(&self.words[base..base + words as usize])
    }
}

/// The [`LANES`] words of a block of `8 * LANES` bytes (little-endian in each word, as a span
/// holds them).
#[inline(always)]
fn lane_words(block: &[u8]) -> [u64; LANES] {
    let mut words = [0u64; LANES];
    for (word, bytes) in words.iter_mut().zip(block.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    }
    words
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
        header.released.store(first.end(), Ordering::Release);
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
        header.released.store(u64::MAX, Ordering::Release);
        assert!(arena.write(&mut writer, &frame).is_some());
        assert!(
            arena
                .write(&mut writer, &vec![0u8; ARENA_BYTES + 1])
                .is_none()
        );
    }

    #[test]
    fn the_check_of_the_bytes_meant_is_the_check_of_the_words_read_at_every_length() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let (mut writer, mut reader) = (Writer::default(), Reader::default());
        let mut copy = Vec::new();
        for len in (1..40).chain([ARENA_MIN - 1, ARENA_MIN, ARENA_MIN + 3, ARENA_BYTES / 2]) {
            let frame: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            let (span, check) = arena.write(&mut writer, &frame).expect("room");
            let read = arena
                .read_into(&mut reader, span, &mut copy)
                .expect("valid");
            assert_eq!(copy, frame, "{len}");
            assert_eq!(read.value(), check.value(), "{len}");
        }
    }

    #[test]
    fn the_vector_sums_and_copies_equal_the_plain_ones_at_every_length() {
        for len in (0..200).chain([ARENA_MIN - 1, ARENA_MIN + 5]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let blocks = len / (8 * LANES);
            let (mut fast, mut plain) = (vec![[0u64; LANES]; blocks], vec![[0u64; LANES]; blocks]);
            // SAFETY: each target holds `blocks` blocks.
            let (fast_lanes, plain_lanes) = unsafe {
                (
                    Lanes::copied(&bytes, fast.as_mut_ptr()),
                    Lanes::copied_any(&bytes, plain.as_mut_ptr()),
                )
            };
            assert_eq!(fast_lanes, plain_lanes, "{len}");
            assert_eq!(Lanes::of(&bytes), plain_lanes, "{len}");
            assert_eq!(fast, plain, "{len}");
            let copied: Vec<u8> = fast
                .iter()
                .flatten()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            assert_eq!(copied, bytes[..blocks * 8 * LANES], "{len}");
        }
    }

    #[test]
    fn any_one_changed_word_changes_the_check() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let mut writer = Writer::default();
        let frame: Vec<u8> = (0..77u8).collect();
        let (span, check) = arena.write(&mut writer, &frame).expect("room");
        for (at, slot) in words.iter().enumerate().take(span.words() as usize) {
            let word = slot.load(Ordering::Relaxed);
            slot.store(word ^ (1 << (at % 64)), Ordering::Relaxed);
            let read = arena.read(&mut Reader::default(), span).expect("valid").1;
            assert_ne!(read.value(), check.value(), "word {at}");
            slot.store(word, Ordering::Relaxed);
        }
        let read = arena.read(&mut Reader::default(), span).expect("valid").1;
        assert_eq!(read.value(), check.value());
    }

    #[test]
    fn a_span_written_over_after_its_copy_leaves_the_copy_and_its_check_alone() {
        let (header, words) = memory();
        let arena = Arena::new(&header, &words);
        let (mut writer, mut reader) = (Writer::default(), Reader::default());
        let frame = vec![5u8; ARENA_MIN];
        let (span, check) = arena.write(&mut writer, &frame).expect("room");
        let mut copy = Vec::new();
        let read = arena
            .read_into(&mut reader, span, &mut copy)
            .expect("valid");
        assert_eq!(
            header.released.load(Ordering::Acquire),
            span.end(),
            "released once copied"
        );
        words[1].store(!0, Ordering::Relaxed);
        assert_eq!((copy, read.value()), (frame, check.value()));
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
