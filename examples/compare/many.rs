//! The runners of the many-callers rows, (l) to (o) (issue 12): tasks submitted and waited,
//! one-item calls from many threads, `apply` beside a big `map`, and a `map` beside a held
//! `imap`. They use API that single-caller versions of forkpool lack (`submit`, `apply`,
//! calls from several threads at once), so they live apart from `rows.rs`: a copy of the
//! harness built against such a version stubs this file out.

use crate::workloads::{Ctx, Report, thousands};
use forkpool::Pool;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WORKERS: usize = 2;
/// procspawn calls kept pending at once (each holds open channels), as in `rows.rs`.
const PROCSPAWN_BATCH: usize = 256;
/// (m): threads, each making `Sizes::m_calls` one-item calls.
pub const M_THREADS: u64 = 8;

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn procspawn_inc(x: u64) -> u64 {
    inc(x)
}

/// (m): an item sleeping 2 ms; returns it with the worker's pid.
fn nap2(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(2));
    (x, std::process::id())
}

/// (o): the held `imap`'s slow item.
fn slow20(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

/// (o): the other thread's item.
fn nap1(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x
}

/// (l): `submit` throughput: all tasks submitted from one thread (kept in a `Vec`), then each
/// waited in turn; seconds per task. procspawn: one `spawn` per task on its pool, at most
/// `PROCSPAWN_BATCH` pending at once, on fewer tasks.
pub fn row_l(ctx: &Ctx, out: &mut Report) {
    let n = ctx.sizes.l_tasks;
    let pool = Pool::new(WORKERS).unwrap();
    let s = ctx.timer.median(|| {
        let tasks: Vec<_> = (0..n).map(|x| pool.submit(inc, x)).collect();
        let mut sum = 0u64;
        for task in tasks {
            sum = sum.wrapping_add(task.wait().unwrap());
        }
        assert_eq!(sum, n * (n + 1) / 2);
    });
    out.cell("forkpool", s, n as f64, "");
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let items: Vec<u64> = (0..ctx.sizes.procspawn_items).collect();
    let s = ctx.timer.median(|| {
        for batch in items.chunks(PROCSPAWN_BATCH) {
            let handles: Vec<_> = batch.iter().map(|x| ps.spawn(*x, procspawn_inc)).collect();
            for (h, x) in handles.into_iter().zip(batch) {
                assert_eq!(h.join().unwrap(), x + 1);
            }
        }
    });
    let note = format!(
        "{} tasks, one spawn each, {PROCSPAWN_BATCH} pending at a time",
        thousands(items.len() as u64)
    );
    out.cell("procspawn Pool", s, items.len() as f64, &note);
    ps.shutdown();
}

/// (m): `M_THREADS` threads each make `Sizes::m_calls` one-item `map` calls of 2 ms items on
/// one 2-worker pool: wall time, and against the ideal (all items' sleep spread evenly over
/// both workers).
pub fn row_m(ctx: &Ctx, out: &mut Report) {
    let calls = ctx.sizes.m_calls;
    let pool = Pool::new(WORKERS).unwrap();
    let mut busier = Vec::new();
    let s = ctx.timer.median(|| {
        let pids: Vec<u32> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..M_THREADS)
                .map(|t| {
                    let pool = &pool;
                    scope.spawn(move || {
                        let mut pids = Vec::new();
                        for i in 0..calls {
                            let x = t * 1_000_000 + i;
                            let v = pool.map(nap2, [x]).unwrap();
                            assert_eq!(v[0].0, x);
                            pids.push(v[0].1);
                        }
                        pids
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let first = pids[0];
        let on_first = pids.iter().filter(|p| **p == first).count();
        let most = on_first.max(pids.len() - on_first);
        busier.push(most as f64 / pids.len() as f64 * 100.0);
    });
    out.cell("forkpool", s, 1.0, "");
    let ideal = m_ideal(calls);
    out.also(
        &format!("(m) forkpool against the ideal {ideal:.2} s"),
        s / ideal,
        "×",
    );
    busier.sort_by(f64::total_cmp);
    out.also(
        "(m) forkpool: share of the items run by the busier worker",
        busier[busier.len() / 2],
        "%",
    );
}

/// (m)'s ideal: every item's 2 ms spread evenly over the workers.
pub fn m_ideal(calls: u64) -> f64 {
    (M_THREADS * calls) as f64 * 0.002 / WORKERS as f64
}

/// (n): `apply` latency while another thread runs `map` over `Sizes::n_items` trivial items,
/// back to back: `Sizes::n_applies` applies, 1 ms apart, each counted only if one and the same
/// map was running from its start to its end. Param 0: the median latency; 1: the maximum.
pub fn row_n(ctx: &Ctx, out: &mut Report) {
    let n = ctx.sizes.n_items;
    let wanted = ctx.sizes.n_applies;
    let pool = Pool::new(WORKERS).unwrap();
    pool.map(inc, 0..1_000).unwrap();
    let enough = AtomicBool::new(false);
    // Maps begun and maps returned: a map is running while they differ.
    let begun = AtomicUsize::new(0);
    let ended = AtomicUsize::new(0);
    let mut latencies = Vec::new();
    let mut tried = 0;
    std::thread::scope(|scope| {
        let mapper = scope.spawn(|| {
            while !enough.load(Ordering::SeqCst) {
                begun.fetch_add(1, Ordering::SeqCst);
                assert_eq!(pool.map(inc, 0..n).unwrap().len() as u64, n);
                ended.fetch_add(1, Ordering::SeqCst);
            }
        });
        while latencies.len() < wanted {
            std::thread::sleep(Duration::from_millis(1));
            let before = (begun.load(Ordering::SeqCst), ended.load(Ordering::SeqCst));
            let t = Instant::now();
            assert_eq!(pool.apply(inc, 1).unwrap(), 2);
            let took = t.elapsed().as_secs_f64();
            let after = (begun.load(Ordering::SeqCst), ended.load(Ordering::SeqCst));
            tried += 1;
            if before.0 == before.1 + 1 && before == after {
                latencies.push(took);
            }
        }
        enough.store(true, Ordering::SeqCst);
        mapper.join().unwrap();
    });
    latencies.sort_by(f64::total_cmp);
    let figure = if ctx.param == 0 {
        latencies[latencies.len() / 2]
    } else {
        latencies[latencies.len() - 1]
    };
    out.cell("forkpool", figure, 1.0, "");
    if ctx.param == 0 {
        out.also(
            &format!("(n) forkpool: applies made to get {wanted} that ran within one map"),
            tried as f64,
            "applies",
        );
    }
}

/// (o): a thread holds an `imap` over 20 ms items, its first item taken, while another thread
/// maps 10 items of 1 ms: that map's wall time. Also that map alone on the idle pool.
pub fn row_o(ctx: &Ctx, out: &mut Report) {
    let pool = Pool::new(WORKERS).unwrap();
    let alone = ctx.timer.median(|| {
        assert_eq!(pool.map(nap1, 0..10).unwrap().len(), 10);
    });
    let s = ctx.timer.median_measured(|| {
        let mut held = pool.imap(slow20, 0..1_000_000u64);
        assert_eq!(held.next().unwrap().unwrap(), 0);
        let took = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let t = Instant::now();
                    assert_eq!(pool.map(nap1, 0..10).unwrap().len(), 10);
                    t.elapsed().as_secs_f64()
                })
                .join()
                .unwrap()
        });
        drop(held);
        // Let the dropped call's running items end before the next run (untimed).
        std::thread::sleep(Duration::from_millis(50));
        took
    });
    out.cell("forkpool", s, 1.0, "");
    out.also(
        "(o) forkpool: the same 10-item map alone on the idle pool",
        alone * 1e3,
        "ms",
    );
}
