//! A worker's progress, in a memory page shared with its parent: how many items it has begun and
//! ended, and since when the current one runs. The same mapping holds the worker's reply ring
//! ([`reply_ring`](crate::shared::reply_ring)), right after the page, and its two arenas for big frames
//! ([`arena`](crate::shared::arena)) after the ring.
//!
//! The parent maps one page (and ring) per worker before the fork ([`SharedRegion::map_file`]
//! of a size-sealed shared-memory file on Linux, [`SharedRegion::new`] on macOS); after the
//! fork both processes see the same memory, and the child registers it with [`install`]. The
//! worker writes two plain stores per item, no system call; the parent reads the page when it needs to
//! know which item a worker is running: to stop an item that ran past its timeout, and, after a
//! death, to blame exactly the item that was running.
//!
//! Invariants:
//! - Only the worker writes `chunks`, `chunk_base`, `begun`, `ended` and `since_nanos`; only the
//!   parent writes `timed` and `cancelled`. Both write `claims`, only by compare-and-swap.
//! - `claims` decides, exactly once, whether each task the worker receives runs there or is
//!   taken back by the parent to run elsewhere (work stealing of unstarted chunks). It packs
//!   two positions in the worker's stream of tasks (the first task is 1, wrapping at 2^32):
//!   `claimed`, the last task the worker passed (started or skipped), and `revoked`: tasks
//!   after `claimed` up to `revoked` are taken back. The worker passes its next task with
//!   [`Progress::claim`], one swap that starts it unless it is revoked; the parent takes back
//!   the tasks after the one the worker passed last with [`Progress::revoke`], one swap that
//!   succeeds only if the worker passed no more meanwhile. So each task is started or taken
//!   back, never both. `revoked - claimed` stays within the tasks in flight (the worker drags
//!   `revoked` along when it starts a task), so wrapping comparisons are exact. A worker that
//!   writes the word only harms its own tasks: it runs or skips what it was not told to, and
//!   the parent, which matches replies against what it sent and did not take back, finds a
//!   reply out of turn (a violation) or one missing.
//! - `cancelled` holds the ids of the latest calls, among those this worker holds chunks of,
//!   that were cancelled (a dropped iterator, a cancelled task): the worker skips what is left
//!   of their chunks. It remembers [`CANCELLED_KEPT`] ids; a chunk of a call cancelled earlier
//!   than that may still run, and its outcomes are discarded (the parent stops the worker if
//!   such an item runs long).
//! - `chunk_base` is the `begun` count when the worker started its latest chunk (`chunks` counts
//!   them), so `begun - chunk_base` items of that chunk have begun, whatever the items before.
//! - `ended <= begun <= ended + 1`: an item is running exactly when `begun == ended + 1`.
//! - `since_nanos` is written before `begun` is raised (release), so a reader that sees the new
//!   `begun` (acquire) sees that item's start time.

use crate::shared::arena::{ARENA_BYTES, ARENA_WORDS, Arena, ArenaHeader};
use crate::shared::reply_ring::{RING_BYTES, RING_WORDS, Ring, RingHeader};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// What the first page of the mapping holds; the ring's words follow at [`PAGE`], then the
/// chunk arena's words, then the reply arena's.
#[repr(C)]
#[derive(Debug, Default)]
struct Shared {
    progress: Progress,
    ring: RingHeader,
    chunk_arena: ArenaHeader,
    reply_arena: ArenaHeader,
}

/// Bytes of the first page (the ring's words start here, page-aligned).
const PAGE: usize = 4096;
const _: () = assert!(std::mem::size_of::<Shared>() <= PAGE);

/// A view of the shared memory at `base` (the start of a mapping made by `SharedRegion::new`).
///
/// # Safety
/// `base` must be a live mapping of `mapped_len()` bytes that stays mapped for `'a`.
unsafe fn view<'a>(base: *mut Shared) -> View<'a> {
    // SAFETY: the caller keeps the mapping live for 'a; a zero-filled `Shared` is valid (all
    // counters 0), and the words after the first page are `RING_WORDS` and twice `ARENA_WORDS`
    // zero-filled `u64`s, page-aligned; every field is an atomic, so shared references are
    // sound across processes.
    unsafe {
        let shared = &*base;
        let words_at = |offset: usize, count: usize| {
            std::slice::from_raw_parts(base.cast::<u8>().add(offset).cast::<AtomicU64>(), count)
        };
        let ring_words = words_at(PAGE, RING_WORDS);
        let chunk_words = words_at(PAGE + RING_BYTES, ARENA_WORDS);
        let reply_words = words_at(PAGE + RING_BYTES + ARENA_BYTES, ARENA_WORDS);
        View {
            progress: &shared.progress,
            ring: Ring::new(
                &shared.ring,
                ring_words,
                Arena::new(&shared.reply_arena, reply_words),
            ),
            chunks: Arena::new(&shared.chunk_arena, chunk_words),
        }
    }
}

/// The parts of one worker's shared memory.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    progress: &'a Progress,
    ring: Ring<'a>,
    chunks: Arena<'a>,
}

/// The shared counters of one worker.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Progress {
    chunks: AtomicU64,
    chunk_base: AtomicU64,
    begun: AtomicU64,
    ended: AtomicU64,
    since_nanos: AtomicU64,
    /// Calls whose chunks are to be skipped (0: an empty slot), written round robin.
    cancelled: [AtomicU64; CANCELLED_KEPT],
    /// The slot of `cancelled` the parent writes next.
    next_cancelled: AtomicU64,
    timed: AtomicBool,
    /// Tasks passed and taken back (see the invariants): `claimed` in the low half, `revoked`
    /// in the high half.
    claims: AtomicU64,
}

/// Packs `claimed` and `revoked` into one word of `claims`.
fn pack(claimed: u32, revoked: u32) -> u64 {
    u64::from(claimed) | (u64::from(revoked) << 32)
}

/// The `claimed` and `revoked` positions of a `claims` word.
fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// How many cancelled calls a worker's page remembers at once.
pub const CANCELLED_KEPT: usize = 8;

/// What the parent read from a worker's page at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Chunks the worker has started since it started.
    pub chunks: u64,
    /// Items it had begun when it started its latest chunk.
    pub chunk_base: u64,
    /// Items the worker has begun since it started.
    pub begun: u64,
    /// Items the worker has finished (outcome written) since it started.
    pub ended: u64,
    /// When the running item began ([`now_nanos`] clock), if start times are recorded.
    pub since_nanos: u64,
}

impl Snapshot {
    /// Whether an item is running.
    pub fn running(&self) -> bool {
        self.begun > self.ended
    }
}

/// Nanoseconds on the system's monotonic clock: the same clock in every process.
pub fn now_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl Progress {
    /// Worker: a new chunk starts now.
    pub fn begin_chunk(&self) {
        self.chunk_base
            .store(self.begun.load(Ordering::Relaxed), Ordering::Relaxed);
        let n = self.chunks.load(Ordering::Relaxed) + 1;
        self.chunks.store(n, Ordering::Release);
    }

    /// Worker: item number `begun + 1` starts now.
    #[inline]
    pub fn begin_item(&self) {
        if self.timed.load(Ordering::Relaxed) {
            self.since_nanos.store(now_nanos(), Ordering::Relaxed);
        }
        let n = self.begun.load(Ordering::Relaxed) + 1;
        self.begun.store(n, Ordering::Release);
    }

    /// Worker: the running item's outcome is written.
    #[inline]
    pub fn end_item(&self) {
        self.ended
            .store(self.begun.load(Ordering::Relaxed), Ordering::Release);
    }

    /// Parent: record start times from now on (needed for timeouts), or stop recording them.
    pub fn set_timed(&self, timed: bool) {
        self.timed.store(timed, Ordering::Relaxed);
    }

    /// Parent: chunks of call `call` (never 0) are to be skipped from now on.
    pub fn cancel(&self, call: u64) {
        let slot = self.next_cancelled.fetch_add(1, Ordering::Relaxed) as usize % CANCELLED_KEPT;
        self.cancelled[slot].store(call, Ordering::Relaxed);
    }

    /// Worker: how many cancels the parent has written so far; [`cancelled`](Progress::cancelled)
    /// can only change its answer when this changes (one load per item instead of a scan).
    #[inline]
    pub fn cancel_count(&self) -> u64 {
        self.next_cancelled.load(Ordering::Relaxed)
    }

    /// Worker: whether chunks of `call` are to be skipped (the call was cancelled).
    #[inline]
    pub fn cancelled(&self, call: u64) -> bool {
        self.cancelled
            .iter()
            .any(|c| c.load(Ordering::Relaxed) == call)
    }

    /// Worker: passes its next task (task `claimed + 1` of its stream). Returns true if it is to
    /// run it, false if the parent took it back (the worker skips it and sends no reply).
    #[inline]
    pub fn claim(&self) -> bool {
        let mut word = self.claims.load(Ordering::Acquire);
        loop {
            let (claimed, revoked) = unpack(word);
            let next = claimed.wrapping_add(1);
            // Revoked: `revoked` runs ahead of `claimed` (within the tasks in flight).
            let taken_back = (revoked.wrapping_sub(claimed) as i32) > 0;
            let new = match taken_back {
                true => pack(next, revoked),
                false => pack(next, next),
            };
            match self
                .claims
                .compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return !taken_back,
                Err(now) => word = now,
            }
        }
    }

    /// Parent: takes back the tasks the worker holds unstarted, of the tasks `front..=last` of
    /// its stream the parent sent it and has not had answered (`front` the oldest). Only a
    /// worker that has started `front` gives any: the tasks after the one it passed last are
    /// taken back, in one swap that fails if it passes another meanwhile (then it looks
    /// again). Returns the last task the worker keeps (`front` or after it; those after it up
    /// to `last` are taken back), or `None` if nothing was taken: the worker has not started
    /// `front`, has passed `last`, or says it passed a task the parent never sent.
    pub fn revoke(&self, front: u32, last: u32) -> Option<u32> {
        let held = last.wrapping_sub(front);
        let mut word = self.claims.load(Ordering::Acquire);
        loop {
            let (claimed, _) = unpack(word);
            if claimed.wrapping_sub(front) >= held {
                return None;
            }
            match self.claims.compare_exchange_weak(
                word,
                pack(claimed, last),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(claimed),
                Err(now) => word = now,
            }
        }
    }

    /// Parent: a consistent reading of the counters.
    pub fn snapshot(&self) -> Snapshot {
        loop {
            let chunks = self.chunks.load(Ordering::Acquire);
            let chunk_base = self.chunk_base.load(Ordering::Relaxed);
            let begun = self.begun.load(Ordering::Acquire);
            let ended = self.ended.load(Ordering::Acquire);
            let since_nanos = self.since_nanos.load(Ordering::Relaxed);
            if self.begun.load(Ordering::Acquire) == begun
                && self.chunks.load(Ordering::Acquire) == chunks
            {
                return Snapshot {
                    chunks,
                    chunk_base,
                    begun,
                    ended: ended.min(begun),
                    since_nanos,
                };
            }
        }
    }
}

/// A page of memory (and the reply ring after it) shared between the parent and the worker
/// forked after it was made; owned by the parent, which unmaps it on drop (the worker's copy of
/// the mapping lives until it exits).
#[derive(Debug)]
pub struct SharedRegion {
    ptr: NonNull<Shared>,
}

// SAFETY: the page holds only atomics; it is as thread-safe as `&Progress`.
unsafe impl Send for SharedRegion {}
// SAFETY: as above.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Maps a fresh, zeroed shared page and ring, anonymous. Where a process can reach an
    /// anonymous shared mapping as a file (Linux: `/proc/self/map_files/`, open to root), a
    /// worker could truncate it and the parent would die of `SIGBUS` on its next read: the
    /// parent maps a size-sealed file there instead ([`map_file`](SharedRegion::map_file)).
    pub fn new() -> std::io::Result<SharedRegion> {
        // SAFETY: an anonymous shared mapping at an address the kernel picks; the result is
        // checked before use. (No reserve: the arenas' pages are only paid for once a big
        // frame touches them.)
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // A fresh anonymous mapping is zero-filled, which is a valid `Shared` (all counters 0,
        // `timed` false); `mmap` returns page-aligned memory, aligned for `Shared`.
        let ptr = NonNull::new(ptr.cast::<Shared>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(SharedRegion { ptr })
    }

    /// Maps the shared page (and ring and arenas) held by the file `fd`, which is at least
    /// [`mapped_len`](SharedRegion::mapped_len) bytes long and zero-filled when first mapped:
    /// how a worker shares its page with the parent that made the file (which seals its size),
    /// whether the parent forks it or the zygote does.
    pub fn map_file(fd: &impl std::os::fd::AsRawFd) -> std::io::Result<SharedRegion> {
        // SAFETY: a shared mapping of the caller's file at an address the kernel picks; the
        // result is checked before use. (The parent seals the file's size, so no worker can
        // truncate it under the parent.)
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Zero-filled (a fresh file), page-aligned: a valid `Shared`, as in `new`.
        let ptr = NonNull::new(ptr.cast::<Shared>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(SharedRegion { ptr })
    }

    /// The counters.
    pub fn get(&self) -> &Progress {
        // SAFETY: the mapping is live until `drop` (see `new`).
        unsafe { view(self.ptr.as_ptr()).progress }
    }

    /// The worker's reply ring (with its reply arena).
    pub fn ring(&self) -> Ring<'_> {
        // SAFETY: the mapping is live until `drop` (see `new`).
        unsafe { view(self.ptr.as_ptr()).ring }
    }

    /// The worker's chunk arena, which the parent writes.
    pub fn chunk_arena(&self) -> Arena<'_> {
        // SAFETY: the mapping is live until `drop` (see `new`).
        unsafe { view(self.ptr.as_ptr()).chunks }
    }

    /// The address to hand to the child, which passes it to [`install`] after the fork.
    pub fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// How many bytes every page maps, its ring included (what a forked child passes to
    /// `munmap` to drop a page that is not its own).
    pub fn mapped_len() -> usize {
        page_len()
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is not used after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), page_len()) };
    }
}

fn page_len() -> usize {
    PAGE + RING_BYTES + 2 * ARENA_BYTES
}

/// In a worker: the page this process reports to (null: none).
static CURRENT: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

/// In a freshly forked worker: report progress to the page at `address`, which the parent made
/// with [`SharedRegion::new`] before the fork.
///
/// # Safety
/// `address` must come from [`SharedRegion::address`] of a page that was mapped when this
/// process was forked; the page then stays mapped in this process until it exits.
pub unsafe fn install(address: usize) {
    CURRENT.store(address as *mut Shared, Ordering::Release);
}

/// The page this worker reports to, if any.
pub fn current() -> Option<&'static Progress> {
    current_view().map(|view| view.progress)
}

/// The ring this worker replies through, if it has a page.
pub fn current_ring() -> Option<Ring<'static>> {
    current_view().map(|view| view.ring)
}

/// The arena this worker's parent writes big tasks into, if it has a page.
pub fn current_chunk_arena() -> Option<Arena<'static>> {
    current_view().map(|view| view.chunks)
}

fn current_view() -> Option<View<'static>> {
    let ptr = CURRENT.load(Ordering::Acquire);
    // SAFETY: only `install` stores a non-null pointer, and its contract keeps the mapping
    // live for the rest of this process's life.
    (!ptr.is_null()).then(|| unsafe { view(ptr) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_say_which_item_runs() {
        let page = SharedRegion::new().unwrap();
        let p = page.get();
        assert!(!p.snapshot().running());
        p.set_timed(true);
        p.begin_chunk();
        p.begin_item();
        let s = p.snapshot();
        assert_eq!((s.chunks, s.chunk_base), (1, 0));
        assert!(s.running());
        assert_eq!((s.begun, s.ended), (1, 0));
        assert!(s.since_nanos > 0 && s.since_nanos <= now_nanos());
        p.end_item();
        assert_eq!(p.snapshot().ended, 1);
        assert!(!p.snapshot().running());
        p.begin_chunk();
        p.begin_item();
        let s = p.snapshot();
        assert_eq!((s.chunks, s.chunk_base, s.begun), (2, 1, 2));
        assert!(!p.cancelled(1));
        p.cancel(1);
        assert!(p.cancelled(1) && !p.cancelled(2));
        for call in 10..10 + CANCELLED_KEPT as u64 {
            p.cancel(call);
        }
        assert!(!p.cancelled(1), "the oldest is forgotten");
        assert!((10..10 + CANCELLED_KEPT as u64).all(|c| p.cancelled(c)));
    }

    #[test]
    fn a_revoked_task_is_skipped_and_tasks_sent_after_the_revoke_run() {
        let page = SharedRegion::new().unwrap();
        let p = page.get();
        // Nothing started: the front (task 1) is not the worker's yet, nothing is taken.
        assert_eq!(p.revoke(1, 3), None);
        assert!(p.claim(), "task 1 runs");
        // Tasks 2 and 3 wait behind it: taken back.
        assert_eq!(p.revoke(1, 3), Some(1));
        // The parent holds task 1 alone now: nothing more to take back.
        assert_eq!(p.revoke(1, 1), None);
        // Tasks 4 and 5 sent after the revoke, then taken back as well while 1 still runs.
        assert_eq!(p.revoke(1, 5), Some(1));
        assert!(
            !p.claim() && !p.claim() && !p.claim() && !p.claim(),
            "2 to 5 skipped"
        );
        // Chunk 6, sent later, runs; the worker had passed 5, so nothing is left to take.
        assert!(p.claim(), "task 6 runs");
        assert_eq!(p.revoke(6, 6), None);
        // The worker started 7 while 6 was still unanswered: only 8 is taken.
        assert!(p.claim());
        assert_eq!(p.revoke(6, 8), Some(7));
        assert!(!p.claim(), "task 8 skipped");
        assert!(p.claim(), "task 9 runs");
    }

    #[test]
    fn the_claims_word_is_the_16th_word_of_the_page() {
        // Tests that play a lying worker write it there.
        assert_eq!(std::mem::offset_of!(Progress, claims), 15 * 8);
        assert_eq!(std::mem::offset_of!(Shared, progress), 0);
    }

    #[test]
    fn a_worker_that_claims_what_was_never_sent_gives_nothing_back() {
        let page = SharedRegion::new().unwrap();
        let p = page.get();
        for _ in 0..10 {
            assert!(p.claim());
        }
        // The parent sent tasks 3 to 5 only (in its count): claimed 10 lies outside.
        assert_eq!(p.revoke(3, 5), None);
        // Positions wrap: a worker at the end of the range and a parent past it agree.
        p.claims.store(pack(u32::MAX, u32::MAX), Ordering::Relaxed);
        assert!(p.claim(), "task 0 (after wrapping) runs");
        assert_eq!(p.revoke(0, 2), Some(0));
        assert!(!p.claim() && !p.claim());
        assert!(p.claim());
    }

    #[test]
    fn claim_and_revoke_racing_give_each_task_to_exactly_one_side() {
        const TASKS: u32 = 64;
        for round in 0..300u32 {
            let p: &'static Progress = Box::leak(Box::default());
            let worker =
                std::thread::spawn(move || (1..=TASKS).filter(|_| p.claim()).count() as u32);
            // The parent takes back from somewhere in the stream, as the worker runs.
            for _ in 0..round % 97 {
                std::hint::spin_loop();
            }
            let kept = loop {
                match p.revoke(1, TASKS) {
                    Some(kept) => break kept,
                    // Not started yet, or all passed.
                    None if unpack(p.claims.load(Ordering::Acquire)).0 >= TASKS => break TASKS,
                    None => std::hint::spin_loop(),
                }
            };
            let ran = worker.join().unwrap();
            assert_eq!(
                ran, kept,
                "round {round}: tasks 1..={kept} run, the rest taken back"
            );
        }
    }
}
