//! The runners: each measures forkpool and the Rust peers on one row and prints its lines.

use crate::primality::is_prime;
use crate::workloads::{Ctx, MIB, Report, m_items_per_s, millis_each, thousands};
use forkpool::{ItemError, Pool, ReturnProcess};
use rayon::prelude::*;
use serde_bytes::ByteBuf;
use std::hint::black_box;

const WORKERS: usize = 2;
const START: u64 = 1_000_000_000_001;
/// procspawn calls kept pending at once (each holds open channels).
const PROCSPAWN_BATCH: usize = 256;

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

pub fn row_a(ctx: &Ctx, out: &mut Report) {
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

pub fn row_b(ctx: &Ctx, out: &mut Report) {
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

pub fn row_c(ctx: &Ctx, out: &mut Report) {
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

pub fn row_d(ctx: &Ctx, out: &mut Report) {
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

pub fn row_e_in(ctx: &Ctx, out: &mut Report) {
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

pub fn row_e_echo(ctx: &Ctx, out: &mut Report) {
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

pub fn row_f(ctx: &Ctx, out: &mut Report) {
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

pub fn row_g(ctx: &Ctx, out: &mut Report) {
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
pub fn row_h(ctx: &Ctx, out: &mut Report) {
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
pub fn row_i(ctx: &Ctx, out: &mut Report) {
    let deaths = ctx.sizes.deaths;
    let items = 2 * deaths as u32;
    let pool = Pool::new(1).unwrap();
    let with_deaths = ctx.timer.median(|| {
        for (i, outcome) in pool.chunksize(1).imap(die_on_even, 0..items).enumerate() {
            match outcome {
                Ok(x) => assert_eq!(x as usize, i),
                Err(e) => assert!(
                    matches!(e.as_task(), Some(ItemError::WorkerDied { .. })),
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
pub fn row_j(ctx: &Ctx, out: &mut Report) {
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
pub fn row_k(ctx: &Ctx, out: &mut Report) {
    let n = ctx.param;
    drop(Pool::new(WORKERS).unwrap());
    let s = ctx.timer.median(|| drop(Pool::new(n).unwrap()));
    out.cell("forkpool", s, n as f64, "");
}
