//! The rows of a big parent with and without `forkpool::zygote()`: (h) with the zygote, (q)
//! the cost of a replacement fork, and (r) the parent's own writes to its heap while a pool
//! lives. A row's `param` 1 starts the zygote first thing, while the workload process is still
//! small (each row runs in a process of its own), then makes the heap.

use crate::rows;
use crate::workloads::{Ctx, Report};
use forkpool::Pool;
use std::hint::black_box;
use std::time::Instant;

/// Starts the zygote if the row asks for it.
fn maybe_zygote(ctx: &Ctx) {
    if ctx.param == 1 {
        forkpool::zygote().expect("the zygote starts");
    }
}

/// A heap of `heap_bytes`, every page written.
fn touched_heap(ctx: &Ctx) -> Vec<u8> {
    let heap = vec![1u8; ctx.sizes.heap_bytes];
    black_box(&heap);
    heap
}

/// (h) with the zygote: create and tear down a 2-worker pool in a parent holding the heap.
pub fn row_h_zygote(ctx: &Ctx, out: &mut Report) {
    maybe_zygote(ctx);
    let heap = touched_heap(ctx);
    let s = ctx.timer.median_warm(|| drop(Pool::new(2).unwrap()));
    out.cell("forkpool", s, 1.0, "");
    black_box(&heap);
}

/// (q): row (i), the cost of one worker death and its replacement fork, in a parent holding
/// the heap.
pub fn row_q(ctx: &Ctx, out: &mut Report) {
    maybe_zygote(ctx);
    let heap = touched_heap(ctx);
    rows::row_i(ctx, out);
    black_box(&heap);
}

/// (r): the parent writes one byte in every page of its heap while a 2-worker pool lives
/// (without the zygote the workers share every page, so each write copies one).
pub fn row_r(ctx: &Ctx, out: &mut Report) {
    maybe_zygote(ctx);
    let mut heap = touched_heap(ctx);
    let mut round = 1u8;
    let s = ctx.timer.median_measured(|| {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(|x: u8| x, [1u8]).unwrap(), [1]);
        round = round.wrapping_add(1);
        let start = Instant::now();
        for page in heap.chunks_mut(4096) {
            page[0] = round;
        }
        black_box(&heap);
        let took = start.elapsed().as_secs_f64();
        drop(pool);
        took
    });
    out.cell("forkpool", s, 1.0, "");
}
