//! Criterion benchmarks for forkpool's fixed costs and throughput.
//!
//! What is measured, all with 2 workers:
//!
//! - `per_item`: the per-item overhead of [`forkpool::Pool::map`] with a trivial function over
//!   20,000 `u64`, at chunksize 1, 16 and 1,000 (so the cost of one round trip per item versus
//!   per chunk shows).
//! - `pool_start_teardown`: forking a 2-worker pool and dropping it (exit, reap).
//! - `bytes_1mib`: moving 16 buffers of 1 MiB to the workers (`in_len_out`: only a length comes
//!   back) and to the workers and back (`echo`), one buffer per chunk: through the task and
//!   reply arenas (shared memory).
//! - `return_process`: [`forkpool::ReturnProcess`] spawn and join of a trivial closure.
//! - `imap_vs_unordered`: 100,000 `u64` through a trivial function with `imap` (input order)
//!   and `imap_unordered` (completion order), at the default chunksize.
//! - `submit_wait`: 10,000 trivial tasks submitted, then each waited for (a call of one item
//!   each: the reply ring and the dispatch of many small calls).
//! - `reply_bytes`: 64 replies of 1 KiB (through the workers' reply rings), of 64 KiB and of
//!   512 KiB (through the reply arenas), at chunksize 1.
//!
//! Run them with `cargo bench -p forkpool-bench` (or `cargo bench -p forkpool-bench --bench pool`;
//! add a filter such as `cargo bench -p forkpool-bench --bench pool -- per_item` to run one group).
//! Each group takes 10 samples over about 3 s after 1 s of warm-up, so the whole run stays short on
//! a 2-core machine.

use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime,
};
use criterion::{criterion_group, criterion_main};
use forkpool::{Pool, ReturnProcess};
use serde_bytes::ByteBuf;
use std::hint::black_box;
use std::time::Duration;

/// The number of worker processes of every pool built here.
const WORKERS: usize = 2;

/// Items per `map` call in `per_item`.
const PER_ITEM_ITEMS: u64 = 20_000;

/// Items per call in `imap_vs_unordered`.
const IMAP_ITEMS: u64 = 100_000;

/// Buffers per call in `bytes_1mib`.
const BUFFERS: usize = 16;

/// The size of each buffer in `bytes_1mib`.
const BUFFER_BYTES: usize = 1 << 20;

/// The trivial per-item function: as little work as possible, so the pool's cost is what shows.
fn inc(x: u64) -> u64 {
    x + 1
}

/// A buffer in, its length out: the bytes travel one way only.
fn len(b: ByteBuf) -> usize {
    b.len()
}

/// A buffer in, the same buffer out: the bytes travel both ways.
fn echo(b: ByteBuf) -> ByteBuf {
    b
}

/// Applies the short, small-sample timing every group here uses.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// Builds a pool of [`WORKERS`] processes, panicking if forking fails.
fn pool() -> Pool {
    Pool::new(WORKERS).expect("build a 2-worker pool")
}

/// `map` of a trivial function over 20,000 `u64` at chunksize 1, 16 and 1,000 on one pool.
fn per_item(c: &mut Criterion) {
    let pool = pool();
    let mut group = c.benchmark_group("per_item");
    configure(&mut group);
    group.throughput(Throughput::Elements(PER_ITEM_ITEMS));
    for chunksize in [1usize, 16, 1_000] {
        group.bench_with_input(
            BenchmarkId::new("map_chunksize", chunksize),
            &chunksize,
            |b, &chunksize| {
                b.iter(|| {
                    let out = pool
                        .chunksize(chunksize)
                        .map(inc, black_box(0..PER_ITEM_ITEMS))
                        .expect("map succeeds");
                    black_box(out)
                });
            },
        );
    }
    group.finish();
}

/// Building a 2-worker pool and dropping it, per iteration.
fn pool_start_teardown(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_start_teardown");
    configure(&mut group);
    group.bench_function("new_drop", |b| {
        b.iter(|| drop(black_box(pool())));
    });
    group.finish();
}

/// 16 buffers of 1 MiB through `map` at chunksize 1: one way (`in_len_out`) and both ways
/// (`echo`).
fn bytes_1mib(c: &mut Criterion) {
    let pool = pool();
    let buffers: Vec<ByteBuf> = (0..BUFFERS)
        .map(|i| ByteBuf::from(vec![i as u8; BUFFER_BYTES]))
        .collect();
    let mut group = c.benchmark_group("bytes_1mib");
    configure(&mut group);
    group.throughput(Throughput::Bytes((BUFFERS * BUFFER_BYTES) as u64));
    group.bench_function("in_len_out", |b| {
        b.iter_batched(
            || buffers.clone(),
            |input| {
                let out = pool.chunksize(1).map(len, input).expect("map succeeds");
                black_box(out)
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("echo", |b| {
        b.iter_batched(
            || buffers.clone(),
            |input| {
                let out = pool.chunksize(1).map(echo, input).expect("map succeeds");
                black_box(out)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// [`ReturnProcess`] spawn and join of a closure returning one byte.
fn return_process(c: &mut Criterion) {
    let mut group = c.benchmark_group("return_process");
    configure(&mut group);
    group.bench_function("spawn_join", |b| {
        b.iter(|| {
            let value = ReturnProcess::spawn(|| black_box(1u8))
                .expect("spawn succeeds")
                .join()
                .expect("join succeeds");
            black_box(value)
        });
    });
    group.finish();
}

/// 100,000 `u64` through a trivial function with `imap` and with `imap_unordered`.
fn imap_vs_unordered(c: &mut Criterion) {
    let pool = pool();
    let mut group = c.benchmark_group("imap_vs_unordered");
    configure(&mut group);
    group.throughput(Throughput::Elements(IMAP_ITEMS));
    group.bench_function("imap", |b| {
        b.iter(|| {
            let out: Vec<u64> = pool
                .imap(inc, black_box(0..IMAP_ITEMS))
                .map(|r| r.expect("item succeeds"))
                .collect();
            black_box(out)
        });
    });
    group.bench_function("imap_unordered", |b| {
        b.iter(|| {
            let out: Vec<u64> = pool
                .imap_unordered(inc, black_box(0..IMAP_ITEMS))
                .map(|r| r.expect("item succeeds"))
                .collect();
            black_box(out)
        });
    });
    group.finish();
}

/// Tasks per iteration in `submit_wait`.
const TASKS: u64 = 10_000;

/// 10,000 trivial tasks submitted from one thread, then each waited for.
fn submit_wait(c: &mut Criterion) {
    let pool = pool();
    let mut group = c.benchmark_group("submit_wait");
    configure(&mut group);
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function("trivial", |b| {
        b.iter(|| {
            let tasks: Vec<_> = (0..TASKS).map(|x| pool.submit(inc, black_box(x))).collect();
            let sum: u64 = tasks
                .into_iter()
                .map(|t| t.wait().expect("task succeeds"))
                .sum();
            black_box(sum)
        });
    });
    group.finish();
}

/// A reply of `n` bytes.
fn reply_of(n: usize) -> ByteBuf {
    ByteBuf::from(vec![1u8; n])
}

/// Replies of 1 KiB and 64 KiB (ring) and 512 KiB (socket), 64 per call at chunksize 1.
fn reply_bytes(c: &mut Criterion) {
    let pool = pool();
    let mut group = c.benchmark_group("reply_bytes");
    configure(&mut group);
    for bytes in [1usize << 10, 64 << 10, 512 << 10] {
        group.throughput(Throughput::Bytes(64 * bytes as u64));
        group.bench_with_input(BenchmarkId::new("map", bytes), &bytes, |b, &bytes| {
            b.iter(|| {
                let out = pool
                    .chunksize(1)
                    .map(reply_of, black_box(vec![bytes; 64]))
                    .expect("map succeeds");
                black_box(out)
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    submit_wait,
    reply_bytes,
    per_item,
    pool_start_teardown,
    bytes_1mib,
    return_process,
    imap_vs_unordered
);
criterion_main!(benches);
