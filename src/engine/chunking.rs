//! How a call cuts its input into chunks and how many it keeps in flight per worker: the
//! chunk-size policy and its tuned constants (each with the measurement behind it).

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
    pub fn ordered(self) -> bool {
        self != Delivery::AsFinished
    }
}

/// A chunk's frame stops growing past this many bytes of items when the chunksize is adaptive.
/// (Not measured against other values: two such frames fill [`QUEUED_BYTES`], four the 4 MiB
/// chunk arena.)
pub(crate) const ADAPTIVE_MAX_BYTES: usize = 1 << 20;
/// Whatever chunksize is asked for, a chunk holds at most this many items...
pub(crate) const MAX_CHUNK_ITEMS: usize = 1 << 20;
// A reply holds one outcome per item of its chunk: the inbox's bound on reply frames counts on
// chunks of at most `MAX_REPLY_OUTCOMES` items.
const _: () = assert!(MAX_CHUNK_ITEMS <= forkpool_worker::protocol::MAX_REPLY_OUTCOMES);
/// ...and stops growing once its items take this many bytes: a chunk is encoded whole before it
/// is sent, so without a cap `chunksize(usize::MAX)` over endless input fills memory.
pub(crate) const MAX_CHUNK_BYTES: usize = 16 << 20;
/// The largest adaptive chunk, in items: the cap of default chunks. (Measured over 1M trivial
/// items with an `imap`, 2 workers: 15 M items/s with a cap of 65,536, 25-30 M/s with 8,192,
/// against 26-27 M/s for the default chunksize: past a few thousand items, bigger chunks only
/// unbalance the end. Measured with a scratch program; the harness row that shows it is row
/// (a)'s "without an input length (adaptive chunks)" line of `cargo run --release --example
/// compare -- --only a --no-python --repeat 3`, against a build with this cap changed.)
const ADAPTIVE_MAX_ITEMS: usize = DEFAULT_MAX_CHUNK;
/// The default chunksize for input of known length is Python's ceil(len / (4 × workers)), but
/// at most this: past a few thousand items a bigger chunk only delays the first results and
/// fills memory (measured, 2 workers, medians of 5: 1M trivial items run at 22 M/s in chunks of
/// 4,096 to 16,384 and 14 M/s in Python-sized chunks of 125,000; an `imap` of 10M items peaked
/// at 218 MB of parent memory, its chunk sizes not recorded. Measured with a scratch program;
/// the same workloads are rows (a) and (g) of `cargo run --release -p forkpool-bench --example
/// compare -- --only a,g --no-python --repeat 3`, against a build with this cap changed).
const DEFAULT_MAX_CHUNK: usize = 8192;
/// A collected call's default chunks shrink, as its input runs out, to no fewer items than
/// Python's chunksize over this: ceil(len / (32 × workers)) at the least, so a call of `len` items
/// ends in chunks of about 1/32 of a worker's share, not 1/4. (Measured on the word count over
/// `/usr/share/doc`, 1,790 files of uneven size, 2 workers: with Python's 8 fixed chunks of 224
/// files, one worker sat idle for 1.0-1.5 s of a 6-7 s call, waiting on the other's last chunk;
/// the figures with and without are in the CHANGELOG.)
const GUIDED_SHRINK: u64 = 8;
/// ...nor to fewer items than take this much worker time, once a reply has told the items' mean
/// time (and never to more than the first chunk's): past that, a smaller last chunk saves
/// little idle time, and each chunk costs a round trip, and in a reduction a partial that the
/// parent decodes and combines. (Measured on row (p), a `fold` over 200 files of about 5 ms
/// each, chunks of 25 files: without this floor it took 27% longer than Python's fixed chunks,
/// 504 -> 640 ms, and with a floor of 50 ms 14% longer, 554 -> 634 ms; medians of 6 alternated
/// runs of `cargo run --release -p forkpool-bench --example compare -- --only p --no-python`.
/// The figures at this value are in the CHANGELOG.)
const GUIDED_LEAST_NANOS: u64 = 100_000_000;
/// Chunks of at most this many items are small: a worker is kept busy with more of them.
const SMALL_CHUNK: usize = 16;
/// The window small chunks start with: 8 in flight per worker hide the ~70 µs round trip
/// (measured at chunksize 1, 2 workers, medians of 5, with one message per chunk and replies on
/// the socket: 14.6 µs per item with 2 in flight, 6.3 with 4, 4.9 with 8, 5.1 with 16. Measured
/// with a scratch program; the same workload is row (b) of `cargo run --release --example
/// compare -- --only b --no-python --repeat 3`, against a build with this window changed).
const SMALL_CHUNK_WINDOW: usize = 8;
/// The most small chunks in flight per worker. With refills batched (half a window per
/// message), bigger windows mean fewer messages and fewer wake-ups: chunksize 1 measured
/// 4.7/3.7 µs per item with 8, 3.8/3.4 with 16, 3.0/3.2 with 32 (replies on the socket; the
/// workload of row (b)); with replies through the ring, 100,000 submitted trivial tasks took
/// 2.1 µs each with 32 and 1.75 with 128 (alternating builds; the workload of row (l)). Both
/// measured with scratch programs; the rows: `cargo run --release -p forkpool-bench --example
/// compare -- --only b,l --no-python --repeat 3`, against a build with this window changed.
const SMALL_CHUNK_MAX_WINDOW: usize = 128;
/// The window otherwise, and the least for small chunks: one chunk running, the next queued.
pub(crate) const DEFAULT_WINDOW: usize = 2;
/// Small chunks are kept in flight to cover about this much worker time per worker: enough to
/// hide the round trip, little enough that slow items do not pile up behind one worker at the
/// end of a call while another idles. (Not measured against other values: 1 ms is about 14
/// round trips of ~70 µs.)
const QUEUED_WORK_NANOS: u64 = 1_000_000;
/// ...and to hold at most about this many bytes of frames per worker (never fewer than
/// [`DEFAULT_WINDOW`] chunks): past one chunk running and one queued, big frames only fill
/// memory, and fresh frame buffers cost page faults. (Measured with 64 buffers of 1 MiB at
/// chunksize 1: the window learned by time alone kept 20 or more in flight per worker and ran
/// at 3.8 GB/s; with this cap, 4.7-5.1 GB/s, alternating builds: row (e) "in" of `cargo run
/// --release -p forkpool-bench --example compare -- --only e --no-python`.)
pub(crate) const QUEUED_BYTES: usize = 2 << 20;
/// Adaptive chunks grow while a chunk keeps a worker busy for less than this... (Not measured
/// against other values: at 2 ms a chunk's ~70 µs round trip is under 4% of it.)
const GROW_BELOW_NANOS: u64 = 2_000_000;
/// ...and shrink when it keeps it busy for more than this. (Not measured against other
/// values.)
const SHRINK_ABOVE_NANOS: u64 = 20_000_000;
/// The most an adaptive chunk grows in one step (by how far under [`GROW_BELOW_NANOS`] it ran).
/// (Measured: trivial items reach the 8,192-item cap in 5 replies instead of 13 with steps of 2,
/// at 18.6-25.1 M items/s adaptive against 18.3-23.8 default, with a scratch program beside a
/// test loop; the harness row is row (a)'s adaptive line of `cargo run --release --example
/// compare -- --only a --no-python --repeat 3`.)
const MAX_GROWTH: u64 = 8;

/// How a call cuts its input into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Exactly this many items per chunk (the last may be shorter).
    Fixed(usize),
    /// The default of a collected call on input of known length (`len` items, `workers`
    /// workers): guided scheduling (OpenMP's `schedule(guided)`). Each chunk holds Python's
    /// share of the items *left*, ceil(left / (4 × workers)), between ceil(len / (4 × workers
    /// × [`GUIDED_SHRINK`])) and [`DEFAULT_MAX_CHUNK`] (the least capped too, so past 262,144
    /// items per worker every chunk is the cap, as with fixed chunks), and no smaller than
    /// [`GUIDED_LEAST_NANOS`] of work (but never over the first chunk) once `item_nanos`, the
    /// running mean of an item's worker time, is known: Python's chunks while much is left,
    /// smaller ones at the end, so no worker waits long behind another's last chunk.
    Guided {
        len: u64,
        workers: usize,
        item_nanos: Option<u64>,
    },
    /// Starts at one item and grows (2× to 8× a step) while chunks run for under 2 ms of
    /// worker time, halves when they run for over 20 ms: both a flood of tiny items and a few
    /// slow ones are served.
    Adaptive(usize),
}

impl Chunking {
    /// The chunksize asked for, or by default, for a collected call (`map`) on input of known
    /// length, [`Chunking::Guided`] (Python's rule ceil(len / (4 × workers)) capped at
    /// [`DEFAULT_MAX_CHUNK`] for its first chunk, shrinking as the input runs out), and
    /// adaptive chunks otherwise (lazy calls, input of unknown length), so a lazy call's first
    /// outcome comes after a few item-times, not after a whole chunk.
    /// `hint` is the input's `size_hint`, asked by the caller (user code, run without the
    /// engine's lock).
    pub fn choose(
        asked: Option<usize>,
        hint: (usize, Option<usize>),
        workers: usize,
        delivery: Delivery,
    ) -> Chunking {
        match (asked, hint) {
            (Some(n), _) => Chunking::Fixed(n),
            (None, (lo, Some(hi))) if lo == hi && delivery == Delivery::Collected => {
                Chunking::Guided {
                    len: lo as u64,
                    workers: workers.max(1),
                    item_nanos: None,
                }
            }
            (None, _) => Chunking::Adaptive(1),
        }
    }

    /// Chunks in flight per worker: the pool's, if it was built with one; else, for small
    /// fixed chunks, adapted to the chunks' run time, starting from what the pool `learned`
    /// from earlier calls of small chunks (a stream of one-item tasks, each a call of its own,
    /// keeps as many in flight as one long map would); and [`DEFAULT_WINDOW`] otherwise.
    pub fn window(&self, asked: Option<usize>, learned: Window) -> Window {
        match (asked, *self) {
            (Some(window), _) => Window::Fixed(window),
            (None, Chunking::Fixed(_) | Chunking::Guided { .. })
                if self.items(0) <= SMALL_CHUNK =>
            {
                learned
            }
            (None, _) => Window::Fixed(DEFAULT_WINDOW),
        }
    }

    /// Items in the next chunk, once `sent` items went in earlier ones.
    pub fn items(&self, sent: u64) -> usize {
        match *self {
            Chunking::Fixed(n) | Chunking::Adaptive(n) => n,
            Chunking::Guided {
                len,
                workers,
                item_nanos,
            } => {
                let share = |left: u64| left.div_ceil((workers as u64).saturating_mul(4));
                let cap = DEFAULT_MAX_CHUNK as u64;
                let by_time = item_nanos.map_or(0, |nanos| GUIDED_LEAST_NANOS / nanos.max(1));
                // Never over the first chunk's size: slow items keep Python's chunks.
                let first = share(len).clamp(1, cap);
                let least = share(len)
                    .div_ceil(GUIDED_SHRINK)
                    .max(by_time)
                    .clamp(1, first);
                // A length hint that lied leaves nothing: the least.
                share(len.saturating_sub(sent)).clamp(least, cap) as usize
            }
        }
    }

    /// Takes in a chunk's worker time and its number of items.
    pub fn learn(&mut self, busy_nanos: u64, count: usize) {
        if let Chunking::Guided { item_nanos, .. } = self {
            let item = busy_nanos / count.max(1) as u64;
            *item_nanos = Some(match *item_nanos {
                None => item,
                Some(mean) => mean.saturating_mul(3).saturating_add(item) / 4,
            });
        }
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
pub(crate) enum Window {
    /// Always this many.
    Fixed(usize),
    /// Small chunks: enough to keep [`QUEUED_WORK_NANOS`] of work in flight per worker, from
    /// [`DEFAULT_WINDOW`] to [`SMALL_CHUNK_MAX_WINDOW`]; `mean_nanos` is the running mean of
    /// a chunk's worker time.
    Adaptive { now: usize, mean_nanos: Option<u64> },
}

impl Window {
    /// Where small chunks start before anything is learned.
    pub fn small() -> Window {
        Window::Adaptive {
            now: SMALL_CHUNK_WINDOW,
            mean_nanos: None,
        }
    }

    /// Whether it adapts (what a pool learns from for its next calls).
    pub fn adapts(&self) -> bool {
        matches!(self, Window::Adaptive { .. })
    }

    /// Chunks in flight per worker now.
    pub fn now(&self) -> usize {
        match *self {
            Window::Fixed(n) | Window::Adaptive { now: n, .. } => n,
        }
    }

    /// The most it can become.
    pub fn max(&self) -> usize {
        match *self {
            Window::Fixed(n) => n,
            Window::Adaptive { .. } => SMALL_CHUNK_MAX_WINDOW,
        }
    }

    /// Takes in a chunk's worker time and its frame's bytes; returns the window from now on.
    pub fn learn(&mut self, busy_nanos: u64, frame_bytes: usize) -> usize {
        if let Window::Adaptive { now, mean_nanos } = self {
            let mean = match *mean_nanos {
                None => busy_nanos,
                Some(m) => (m.saturating_mul(3)).saturating_add(busy_nanos) / 4,
            };
            *mean_nanos = Some(mean);
            let by_time = QUEUED_WORK_NANOS / mean.max(1);
            let by_bytes = (QUEUED_BYTES / frame_bytes.max(1)) as u64;
            *now = by_time
                .min(by_bytes)
                .clamp(DEFAULT_WINDOW as u64, SMALL_CHUNK_MAX_WINDOW as u64)
                as usize;
        }
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_chunks_grow_while_fast_and_shrink_when_slow() {
        let mut chunking = Chunking::Adaptive(1);
        for _ in 0..40 {
            let n = chunking.items(0);
            chunking.learn(GROW_BELOW_NANOS / 2, n);
        }
        assert_eq!(chunking.items(0), ADAPTIVE_MAX_ITEMS, "grows to its cap");
        // A chunk that came back shorter than asked (the input ended) teaches nothing.
        chunking.learn(1, 3);
        assert_eq!(chunking.items(0), ADAPTIVE_MAX_ITEMS);
        for _ in 0..40 {
            let n = chunking.items(0);
            chunking.learn(SHRINK_ABOVE_NANOS * 2, n);
        }
        assert_eq!(chunking.items(0), 1, "shrinks to one item");
        // Between the two bounds it stays put.
        chunking.learn((GROW_BELOW_NANOS + SHRINK_ABOVE_NANOS) / 2, 1);
        assert_eq!(chunking.items(0), 1);
        // Far under the limit it grows 8× a step; just under it, 2×.
        chunking.learn(GROW_BELOW_NANOS / 100, 1);
        assert_eq!(chunking.items(0), 8);
        chunking.learn(GROW_BELOW_NANOS - 1, 8);
        assert_eq!(chunking.items(0), 16);
    }

    #[test]
    fn fixed_chunks_never_change_and_the_default_follows_python() {
        let mut chunking = Chunking::Fixed(7);
        chunking.learn(0, 7);
        chunking.learn(u64::MAX, 7);
        assert_eq!(chunking, Chunking::Fixed(7));
        let default = Chunking::choose(None, (0..1000).size_hint(), 2, Delivery::Collected);
        assert_eq!(default.items(0), 125, "Python's first chunk");
        assert_eq!(
            Chunking::choose(
                None,
                (0..1000).filter(|_| true).size_hint(),
                2,
                Delivery::Collected
            ),
            Chunking::Adaptive(1)
        );
        assert_eq!(
            Chunking::choose(Some(3), (0..10).size_hint(), 2, Delivery::Collected),
            Chunking::Fixed(3)
        );
        // Lazy calls start small whatever the input's length, so their first outcome is quick.
        for lazy in [Delivery::InOrder, Delivery::AsFinished] {
            assert_eq!(
                Chunking::choose(None, (0..1000).size_hint(), 2, lazy),
                Chunking::Adaptive(1)
            );
            assert_eq!(
                Chunking::choose(Some(9), (0..1000).size_hint(), 2, lazy),
                Chunking::Fixed(9)
            );
        }
        let huge = Chunking::choose(None, (0..10_000_000).size_hint(), 2, Delivery::Collected);
        assert_eq!(huge.items(0), DEFAULT_MAX_CHUNK);
        assert_eq!(
            huge.items(9_999_000),
            DEFAULT_MAX_CHUNK,
            "its least is capped too"
        );
        assert_eq!(
            huge.window(None, Window::small()),
            Window::Fixed(DEFAULT_WINDOW)
        );
        assert_eq!(
            Chunking::Fixed(1).window(None, Window::small()).now(),
            SMALL_CHUNK_WINDOW
        );
        assert_eq!(
            Chunking::Fixed(1).window(Some(3), Window::small()),
            Window::Fixed(3)
        );
    }

    /// The chunk sizes a guided call of `len` items on `workers` workers cuts, in order.
    fn guided_sizes(len: u64, workers: usize) -> Vec<usize> {
        let chunking = Chunking::Guided {
            len,
            workers,
            item_nanos: None,
        };
        let mut sent = 0;
        let mut sizes = Vec::new();
        while sent < len {
            let n = chunking.items(sent).min((len - sent) as usize);
            sizes.push(n);
            sent += n as u64;
        }
        sizes
    }

    #[test]
    fn guided_chunks_start_at_pythons_size_and_shrink_to_an_eighth() {
        // The word count's 1,790 files on 2 workers: 224 first (Python's 8 chunks of 224),
        // then smaller, down to 28; every item in exactly one chunk.
        let sizes = guided_sizes(1790, 2);
        assert_eq!(sizes[0], 224);
        assert_eq!(sizes.iter().sum::<usize>(), 1790);
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n >= 28),
            "{sizes:?}"
        );
        assert!(*sizes.last().unwrap() <= 28, "{sizes:?}");
        assert!(sizes.len() <= 32, "{} chunks", sizes.len());
        // Past the cap (1M items): the cap all along, as before.
        let big = guided_sizes(1_000_000, 2);
        assert!(big[..big.len() - 1].iter().all(|&n| n == DEFAULT_MAX_CHUNK));
        // Tiny inputs: chunks of one item, never of none.
        assert_eq!(guided_sizes(3, 2), [1, 1, 1]);
        let guided = |len, workers| Chunking::Guided {
            len,
            workers,
            item_nanos: None,
        };
        assert_eq!(guided(0, 2).items(0), 1);
        // A length hint that lied (more items than it said) gets the least, not zero.
        assert_eq!(guided(100, 1).items(1_000), 4);
        // Many workers: a smaller first chunk and least.
        let many = guided_sizes(10_000, 16);
        assert_eq!(many[0], 157);
        assert!(many.iter().all(|&n| n >= 1));
    }

    #[test]
    fn guided_chunks_do_not_shrink_below_the_least_worker_time_once_learned() {
        // 1,790 items on 2 workers: the least is 28 items until a reply tells their time.
        let mut chunking = Chunking::choose(None, (0..1790).size_hint(), 2, Delivery::Collected);
        assert_eq!(chunking.items(1790 - 100), 28);
        // Items of 5 ms: 100 ms of work is 20 items, under 28: the least stays 28.
        chunking.learn(224 * 5_000_000, 224);
        assert_eq!(chunking.items(1790 - 100), 28);
        // Items of 1 ms (the running mean moves a quarter of the way each reply): once the
        // mean is under 3.6 ms, 100 ms of work is more than 28 items. (The integer mean
        // settles just above 1 ms.)
        for _ in 0..20 {
            chunking.learn(100 * 1_000_000, 100);
        }
        let least = chunking.items(1790 - 100);
        assert!((95..=100).contains(&least), "100 ms of 1 ms items: {least}");
        // While much is left, Python's share of it, as before.
        assert_eq!(chunking.items(0), 224);
        for _ in 0..40 {
            chunking.learn(1_000, 1_000); // 1 ns items: 100 ms is past the first chunk
        }
        assert_eq!(
            chunking.items(1790 - 100),
            224,
            "never over the first chunk"
        );
        // Fast items on a big input: the least is the first chunk, itself capped.
        let mut big = Chunking::choose(None, (0..1 << 24).size_hint(), 2, Delivery::Collected);
        big.learn(1_000, 1_000);
        assert_eq!(big.items((1 << 24) - 10), DEFAULT_MAX_CHUNK);
        // A reply of no items or no time divides by nothing.
        chunking.learn(0, 0);
        chunking.learn(5, 0);
        assert!(chunking.items(0) >= 1);
    }

    #[test]
    fn small_chunk_windows_follow_the_chunks_run_time() {
        let mut window = Chunking::Fixed(1).window(None, Window::small());
        assert_eq!(window.max(), SMALL_CHUNK_MAX_WINDOW);
        for _ in 0..20 {
            window.learn(2_000, 64); // 2 µs chunks: as many as allowed
        }
        assert_eq!(window.now(), SMALL_CHUNK_MAX_WINDOW);
        for _ in 0..20 {
            window.learn(100_000, 64); // 100 µs chunks: 1 ms of work is 10 chunks
        }
        assert_eq!(window.now(), 10);
        for _ in 0..20 {
            window.learn(50_000_000, 64); // slow items: one running, one queued
        }
        assert_eq!(window.now(), DEFAULT_WINDOW);
        let mut fixed = Window::Fixed(5);
        assert_eq!(fixed.learn(1, 64), 5);
        assert_eq!(fixed.learn(u64::MAX, 64), 5);
    }

    #[test]
    fn big_frames_keep_few_chunks_in_flight_however_fast() {
        let mut window = Chunking::Fixed(1).window(None, Window::small());
        window.learn(2_000, 64 << 10); // fast, 64 KiB frames: 2 MiB in flight
        assert_eq!(window.now(), QUEUED_BYTES / (64 << 10));
        window.learn(2_000, 1 << 20); // 1 MiB frames: one running, one queued
        assert_eq!(window.now(), DEFAULT_WINDOW);
        window.learn(2_000, 0); // an empty frame cannot divide by zero
        assert_eq!(window.now(), SMALL_CHUNK_MAX_WINDOW);
    }
}
