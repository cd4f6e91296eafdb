//! The rows of the table, in order, and the code that measures forkpool and the Rust peers on
//! each (the Python peers' side of a row is the function of the same key in `peers.py`).
//!
//! Every runner reports a measurement as a value and a count (seconds and items, seconds and
//! bytes, bytes and 1, ...); the row's `figure` turns the pair into the figure shown, the
//! same way for both sides.

use crate::Config;
use crate::primality::is_prime;
use forkpool::{Pool, ReturnProcess, TaskError};
use rayon::prelude::*;
use serde_bytes::ByteBuf;
use std::hint::black_box;
use std::time::Instant;

/// The systems measured on this side (the Python peers are in `python::SYSTEMS`).
pub const RUST_SYSTEMS: [&str; 4] = ["forkpool", "procspawn Pool", "rayon", "serial"];

const WORKERS: usize = 2;
const START: u64 = 1_000_000_000_001;
const MIB: usize = 1 << 20;
/// procspawn calls kept pending at once (each holds open channels).
const PROCSPAWN_BATCH: usize = 256;

/// The inputs, from the configuration (`--quick` shrinks them all).
#[derive(Clone, Debug)]
pub struct Sizes {
    /// (a): items through a trivial function.
    pub a_items: u64,
    /// (b): items at chunksize 1.
    pub b_items: u64,
    /// (c): numbers tested for primality.
    pub c_items: u64,
    /// (e): 1 MiB buffers.
    pub e_buffers: usize,
    /// (g): items through `imap`.
    pub g_items: u64,
    /// Peers whose map sends one item per message (ProcessPoolExecutor, pebble, loky: their
    /// default chunksize is 1) run (a) and (b) on this many items, reported per item.
    pub per_message_items: u64,
    /// procspawn runs one process call per item (it has no map): (b) runs this many items.
    pub procspawn_items: u64,
    /// (h): the parent's touched heap, in bytes.
    pub heap_bytes: usize,
    /// (i): deaths per measured call, forkpool.
    pub deaths: usize,
    /// (i): deaths per measured call, the Python peers (some start a whole executor per death).
    pub python_deaths: usize,
    /// (j): 64 MiB buffers.
    pub j_buffers: usize,
    /// (k): the pool sizes of the `Pool::new(n)` curve.
    pub curve: Vec<usize>,
}

impl Sizes {
    pub fn of(cfg: &Config) -> Sizes {
        let mut curve = if cfg.quick {
            vec![2, 16, 128]
        } else {
            vec![2, 16, 128, 512]
        };
        if cfg.curve_1000 {
            curve.push(1000);
        }
        let (a, b, c, e, g, per_message, procspawn, deaths, python_deaths, j) = if cfg.quick {
            (100_000, 10_000, 1_000, 16, 1_000_000, 2_000, 500, 10, 5, 2)
        } else {
            (
                1_000_000, 100_000, 10_000, 64, 10_000_000, 20_000, 5_000, 50, 20, 8,
            )
        };
        Sizes {
            a_items: a,
            b_items: b,
            c_items: c,
            e_buffers: e,
            g_items: g,
            per_message_items: per_message,
            procspawn_items: procspawn,
            heap_bytes: cfg.heap_mib * MIB,
            deaths,
            python_deaths,
            j_buffers: j,
            curve,
        }
    }

    /// The sizes as a JSON object, for `peers.py`.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"a":{},"b":{},"c":{},"e":{},"g":{},"per_message":{},"heap":{},"deaths":{},"j":{}}}"#,
            self.a_items,
            self.b_items,
            self.c_items,
            self.e_buffers,
            self.g_items,
            self.per_message_items,
            self.heap_bytes,
            self.python_deaths,
            self.j_buffers
        )
    }
}

/// What a runner gets: the inputs, the timer, and the row's parameter (n for the curve).
pub struct Ctx {
    pub sizes: Sizes,
    pub timer: Timer,
    pub param: usize,
}

/// One row of the table.
pub struct Workload {
    /// Its name in the workload processes' command lines, in `peers.py` and for `--only`.
    pub key: String,
    pub name: String,
    pub unit: &'static str,
    /// Whether a larger figure is better (a rate) or a smaller one (a time, a size).
    pub higher_is_better: bool,
    /// The figure shown, from a measurement's value and count.
    pub figure: fn(f64, f64) -> f64,
    /// Measures forkpool and the Rust peers.
    pub rust: fn(&Ctx, &mut Report),
    /// Whether `peers.py` has this row.
    pub python: bool,
    pub param: usize,
}

fn m_items_per_s(secs: f64, items: f64) -> f64 {
    items / secs / 1e6
}
fn us_per_item(secs: f64, items: f64) -> f64 {
    secs / items * 1e6
}
fn seconds(secs: f64, _: f64) -> f64 {
    secs
}
fn millis(secs: f64, _: f64) -> f64 {
    secs * 1e3
}
fn millis_each(secs: f64, n: f64) -> f64 {
    secs * 1e3 / n
}
fn gb_per_s(secs: f64, bytes: f64) -> f64 {
    bytes / secs / 1e9
}
fn megabytes(bytes: f64, _: f64) -> f64 {
    bytes / 1e6
}

/// `1,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows, in table order.
pub fn list(cfg: &Config) -> Vec<Workload> {
    let s = Sizes::of(cfg);
    let row = |key: &str,
               name: String,
               unit: &'static str,
               higher_is_better: bool,
               figure: fn(f64, f64) -> f64,
               rust: fn(&Ctx, &mut Report),
               python: bool| Workload {
        key: key.to_string(),
        name,
        unit,
        higher_is_better,
        figure,
        rust,
        python,
        param: 0,
    };
    let heap = if s.heap_bytes % (1 << 30) == 0 {
        format!("{} GiB", s.heap_bytes >> 30)
    } else {
        format!("{} MiB", s.heap_bytes >> 20)
    };
    let mut rows = vec![
        row(
            "a",
            format!(
                "(a) {} ints, trivial fn, default chunksize",
                thousands(s.a_items)
            ),
            "M items/s",
            true,
            m_items_per_s,
            row_a,
            true,
        ),
        row(
            "b",
            format!("(b) {} ints, chunksize 1", thousands(s.b_items)),
            "µs/item",
            false,
            us_per_item,
            row_b,
            true,
        ),
        row(
            "c",
            format!(
                "(c) primality of {} numbers near 10^12",
                thousands(s.c_items)
            ),
            "s",
            false,
            seconds,
            row_c,
            true,
        ),
        row(
            "d",
            "(d) create + tear down a 2-worker pool".into(),
            "ms",
            false,
            millis,
            row_d,
            true,
        ),
        row(
            "e_in",
            "(e) 1 MiB buffers in, length out".into(),
            "GB/s",
            true,
            gb_per_s,
            row_e_in,
            true,
        ),
        row(
            "e_echo",
            "(e) 1 MiB buffers echoed back".into(),
            "GB/s",
            true,
            gb_per_s,
            row_e_echo,
            true,
        ),
        row(
            "f",
            "(f) spawn + join one process, trivial closure".into(),
            "ms",
            false,
            millis,
            row_f,
            false,
        ),
        row(
            "g",
            format!(
                "(g) imap over {} items: parent peak RSS",
                thousands(s.g_items)
            ),
            "MB",
            false,
            megabytes,
            row_g,
            true,
        ),
        row(
            "h",
            format!("(h) create + tear down a 2-worker pool, parent holding a {heap} touched heap"),
            "ms",
            false,
            millis,
            row_h,
            true,
        ),
        row(
            "i",
            "(i) replacement fork: cost of one worker death (1 worker, chunksize 1)".into(),
            "ms/death",
            false,
            millis_each,
            row_i,
            true,
        ),
        row(
            "j",
            "(j) 64 MiB buffers echoed back".into(),
            "GB/s",
            true,
            gb_per_s,
            row_j,
            true,
        ),
    ];
    for n in s.curve {
        rows.push(Workload {
            param: n,
            ..row(
                &format!("k{n}"),
                format!("(k) create + tear down a {n}-worker pool, per worker"),
                "ms/worker",
                false,
                millis_each,
                row_k,
                true,
            )
        });
    }
    rows
}

/// Runs `row`'s Rust side in this process, printing its lines.
pub fn run_here(row: &Workload, cfg: &Config) {
    let ctx = Ctx {
        sizes: Sizes::of(cfg),
        timer: Timer {
            runs: cfg.runs,
            budget: cfg.budget,
        },
        param: row.param,
    };
    (row.rust)(&ctx, &mut Report);
}

/// Prints a workload process's lines (see `table::Results::read` for their meaning).
pub struct Report;

impl Report {
    /// A measurement of `system`: a value and a count for the row's `figure`, and a note.
    pub fn cell(&mut self, system: &str, value: f64, count: f64, note: &str) {
        println!("cell\t{system}\t{value}\t{count}\t{note}");
    }

    /// A figure printed under the table, not in it.
    pub fn also(&mut self, label: &str, figure: f64, unit: &str) {
        println!("also\t{label}\t{figure}\t{unit}");
    }
}

/// Times closures: the median of up to `runs` runs, fewer once they took `budget` seconds.
pub struct Timer {
    pub runs: usize,
    pub budget: f64,
}

impl Timer {
    pub fn median(&self, mut f: impl FnMut()) -> f64 {
        self.median_with(|| (), |()| f())
    }

    /// Like `median`, after one untimed run (for the rows that start pools: the first one in
    /// a process pays one-off costs).
    pub fn median_warm(&self, mut f: impl FnMut()) -> f64 {
        f();
        self.median(f)
    }

    /// The median time of `f`, each run on a fresh value from `setup` (untimed).
    pub fn median_with<S>(&self, mut setup: impl FnMut() -> S, mut f: impl FnMut(S)) -> f64 {
        let mut times = Vec::new();
        let mut spent = 0.0;
        while times.len() < self.runs.max(1) && (times.is_empty() || spent < self.budget) {
            let input = setup();
            let t = Instant::now();
            f(input);
            let secs = t.elapsed().as_secs_f64();
            spent += secs;
            times.push(secs);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }
}

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn length(b: ByteBuf) -> usize {
    b.len()
}

fn echo(b: ByteBuf) -> ByteBuf {
    b
}

fn buffers(count: usize, size: usize) -> Vec<ByteBuf> {
    (0..count).map(|_| ByteBuf::from(vec![7u8; size])).collect()
}

fn row_a(ctx: &Ctx, out: &mut Report) {
    let n = ctx.sizes.a_items;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median(|| {
        let v = pool.map(inc, 0..n).unwrap();
        assert_eq!(v.len() as u64, n);
    });
    out.cell("forkpool", s, n as f64, "");
    let s = ctx.timer.median(|| {
        let v: Vec<u64> = (0..n).into_par_iter().map(inc).collect();
        assert_eq!(v.len() as u64, n);
    });
    out.cell("rayon", s, n as f64, "");
    let s = ctx.timer.median(|| {
        let v: Vec<u64> = (0..n).map(|x| black_box(inc(x))).collect();
        assert_eq!(v.len() as u64, n);
    });
    out.cell("serial", s, n as f64, "");
    // Without a length: the adaptive chunker.
    let s = ctx.timer.median(|| {
        let count = pool
            .imap(inc, (0..n).filter(|_| true))
            .map(Result::unwrap)
            .count();
        assert_eq!(count as u64, n);
    });
    let label = "(a) forkpool without an input length (adaptive chunks)";
    out.also(label, m_items_per_s(s, n as f64), "M items/s");
    let s = ctx.timer.median(|| {
        let v = pool.chunksize(1000).map(inc, 0..n).unwrap();
        assert_eq!(v.len() as u64, n);
    });
    let label = "(a) forkpool at chunksize 1,000";
    out.also(label, m_items_per_s(s, n as f64), "M items/s");
}

fn procspawn_inc(x: u64) -> u64 {
    inc(x)
}

fn row_b(ctx: &Ctx, out: &mut Report) {
    let n = ctx.sizes.b_items;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median(|| {
        let v = pool.chunksize(1).map(inc, 0..n).unwrap();
        assert_eq!(v.len() as u64, n);
    });
    out.cell("forkpool", s, n as f64, "");
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let items: Vec<u64> = (0..ctx.sizes.procspawn_items).collect();
    let s = ctx.timer.median(|| {
        // In batches: each pending spawn holds open channels.
        for batch in items.chunks(PROCSPAWN_BATCH) {
            let handles: Vec<_> = batch.iter().map(|x| ps.spawn(*x, procspawn_inc)).collect();
            for h in handles {
                h.join().unwrap();
            }
        }
    });
    let note = format!("{} items, one spawn each", thousands(items.len() as u64));
    out.cell("procspawn Pool", s, items.len() as f64, &note);
    ps.shutdown();
    let s = ctx.timer.median(|| {
        let v: Vec<u64> = (0..n as usize)
            .into_par_iter()
            .with_max_len(1)
            .map(|x| inc(x as u64))
            .collect();
        assert_eq!(v.len() as u64, n);
    });
    out.cell("rayon", s, n as f64, "with_max_len(1)");
}

fn procspawn_is_prime(n: u64) -> bool {
    is_prime(n)
}

fn row_c(ctx: &Ctx, out: &mut Report) {
    let numbers: Vec<u64> = (0..ctx.sizes.c_items).map(|i| START + 2 * i).collect();
    let serial = ctx.timer.median(|| {
        let n = numbers.iter().filter(|n| is_prime(**n)).count();
        assert!(n > 0);
    });
    out.cell("serial", serial, 1.0, "");
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median(|| {
        let v = pool.map(is_prime, numbers.iter().copied()).unwrap();
        assert_eq!(v.len(), numbers.len());
    });
    out.cell("forkpool", s, 1.0, "");
    out.also("(c) forkpool's speedup over serial", serial / s, "×");
    let s = ctx.timer.median(|| {
        let v: Vec<bool> = numbers.par_iter().map(|n| is_prime(*n)).collect();
        assert_eq!(v.len(), numbers.len());
    });
    out.cell("rayon", s, 1.0, "");
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median(|| {
        for batch in numbers.chunks(PROCSPAWN_BATCH) {
            let handles: Vec<_> = batch
                .iter()
                .map(|n| ps.spawn(*n, procspawn_is_prime))
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
    });
    out.cell("procspawn Pool", s, 1.0, "");
    ps.shutdown();
}

fn row_d(ctx: &Ctx, out: &mut Report) {
    let s = ctx.timer.median_warm(|| drop(Pool::new(WORKERS).unwrap()));
    out.cell("forkpool", s, 1.0, "");
    let s = ctx.timer.median_warm(|| {
        let p = procspawn::Pool::new(WORKERS).unwrap();
        p.shutdown();
    });
    out.cell("procspawn Pool", s, 1.0, "");
    let s = ctx.timer.median_warm(|| {
        drop(
            rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .build()
                .unwrap(),
        )
    });
    out.cell("rayon", s, 1.0, "");
}

fn procspawn_length(b: ByteBuf) -> usize {
    b.len()
}

fn procspawn_echo(b: ByteBuf) -> ByteBuf {
    b
}

fn row_e_in(ctx: &Ctx, out: &mut Report) {
    let count = ctx.sizes.e_buffers;
    let bytes = (count * MIB) as f64;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median_with(
        || buffers(count, MIB),
        |set| {
            let v = pool.chunksize(1).map(length, set).unwrap();
            assert!(v.iter().all(|n| *n == MIB));
        },
    );
    out.cell("forkpool", s, bytes, "");
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median_with(
        || buffers(count, MIB),
        |set| {
            // One call at a time: with several 1 MiB calls pending, procspawn's pool blocks
            // forever in a send (seen while writing this harness).
            for b in set {
                assert_eq!(ps.spawn(b, procspawn_length).join().unwrap(), MIB);
            }
        },
    );
    out.cell("procspawn Pool", s, bytes, "one call at a time");
    ps.shutdown();
}

fn row_e_echo(ctx: &Ctx, out: &mut Report) {
    let count = ctx.sizes.e_buffers;
    let bytes = (count * MIB) as f64;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median_with(
        || buffers(count, MIB),
        |set| {
            let v = pool.chunksize(1).map(echo, set).unwrap();
            assert!(v.iter().all(|b| b.len() == MIB));
        },
    );
    out.cell("forkpool", s, bytes, "");
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median_with(
        || buffers(count, MIB),
        |set| {
            for b in set {
                assert_eq!(ps.spawn(b, procspawn_echo).join().unwrap().len(), MIB);
            }
        },
    );
    out.cell("procspawn Pool", s, bytes, "one call at a time");
    ps.shutdown();
}

fn procspawn_one(_: ()) -> u8 {
    1
}

fn row_f(ctx: &Ctx, out: &mut Report) {
    let s = ctx
        .timer
        .median(|| assert_eq!(ReturnProcess::spawn(|| 1u8).unwrap().join().unwrap(), 1));
    out.cell("forkpool", s, 1.0, "");
    let s = ctx
        .timer
        .median(|| assert_eq!(procspawn::spawn((), procspawn_one).join().unwrap(), 1));
    out.cell("procspawn Pool", s, 1.0, "procspawn::spawn");
}

/// Peak resident memory of this process while `f` runs, above what it held before (Linux:
/// resets the high-water mark through /proc/self/clear_refs).
fn peak_rss_above_baseline(f: impl FnOnce()) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    };
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = field("VmRSS:")?;
    f();
    Some(field("VmHWM:")? - base)
}

fn row_g(ctx: &Ctx, out: &mut Report) {
    let n = ctx.sizes.g_items;
    let pool = Pool::new(WORKERS).unwrap();
    if let Some(bytes) = peak_rss_above_baseline(|| {
        let count = pool.imap(inc, 0..n).map(Result::unwrap).count();
        assert_eq!(count as u64, n);
    }) {
        out.cell("forkpool", bytes, 1.0, "");
    }
}

/// (h): row (d) in a parent that holds a heap of `--heap-mib` MiB, every page written before
/// the timing starts (a fork copies the page tables of all of it).
fn row_h(ctx: &Ctx, out: &mut Report) {
    let heap = vec![1u8; ctx.sizes.heap_bytes];
    black_box(&heap);
    let s = ctx.timer.median_warm(|| drop(Pool::new(WORKERS).unwrap()));
    out.cell("forkpool", s, 1.0, "");
    black_box(&heap);
}

/// (i) kills its worker; the odd items it gets are answered.
fn die_on_even(x: u32) -> u32 {
    if x % 2 == 0 {
        // SAFETY: `_exit` ends the process at once; nothing of it runs afterwards.
        unsafe { libc::_exit(1) }
    }
    x
}

fn same(x: u32) -> u32 {
    x
}

/// (i): the cost of a worker's death to a call, measured as a difference of two calls on a
/// 1-worker pool at chunksize 1, each over 2 × `deaths` items: one where every even item
/// ends its worker (`libc::_exit`), so each death is followed by the parent noticing it,
/// forking a replacement, and the replacement answering the next (odd) item; and one where no
/// item dies. (time of the first − time of the second) / deaths is the time from a death to
/// the next item done on the replacement, above what that item would have taken anyway. Each
/// death is followed by a finished item, so the crash-loop guard stays quiet.
fn row_i(ctx: &Ctx, out: &mut Report) {
    let deaths = ctx.sizes.deaths;
    let items = 2 * deaths as u32;
    let pool = Pool::new(1).unwrap();
    let with_deaths = ctx.timer.median(|| {
        for (i, outcome) in pool.chunksize(1).imap(die_on_even, 0..items).enumerate() {
            match outcome {
                Ok(x) => assert_eq!(x as usize, i),
                Err(e) => assert!(
                    matches!(e.as_task(), Some(TaskError::WorkerDied { .. })),
                    "item {i}: {e}"
                ),
            }
        }
    });
    let without = ctx.timer.median(|| {
        let v = pool.chunksize(1).map(same, 0..items).unwrap();
        assert_eq!(v.len(), items as usize);
    });
    out.cell("forkpool", with_deaths - without, deaths as f64, "");
    let label = "(i) forkpool, one death and the next item on the replacement";
    out.also(label, millis_each(with_deaths, deaths as f64), "ms");
}

/// (j): like (e) echoed, with 64 MiB buffers.
fn row_j(ctx: &Ctx, out: &mut Report) {
    let count = ctx.sizes.j_buffers;
    let size = 64 * MIB;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median_with(
        || buffers(count, size),
        |set| {
            let v = pool.chunksize(1).map(echo, set).unwrap();
            assert!(v.iter().all(|b| b.len() == size));
        },
    );
    out.cell("forkpool", s, (count * size) as f64, "");
}

/// (k): `Pool::new(n)` and its drop, per worker (after an untimed 2-worker pool, as the Python
/// side does).
fn row_k(ctx: &Ctx, out: &mut Report) {
    let n = ctx.param;
    drop(Pool::new(WORKERS).unwrap());
    let s = ctx.timer.median(|| drop(Pool::new(n).unwrap()));
    out.cell("forkpool", s, n as f64, "");
}
