//! Criterion benchmarks of pools forked from the zygote, in a parent holding a big heap.
//!
//! The zygote is started first thing, while this program is small; then the program grows a
//! heap of 512 MiB, every page written. What is measured, with the zygote:
//!
//! - `pool_start_teardown_512mib_heap`: forking a 2-worker pool from the zygote and dropping it
//!   (compare `pool_start_teardown` of the `pool` bench, in a small parent, and row (h) of the
//!   comparison harness, in a big one without the zygote);
//! - `replacement_fork_512mib_heap`: one worker death and the next item done on its
//!   replacement (a 1-worker pool, 2 items: the first ends its worker).
//!
//! Run them with `cargo bench -p forkpool-bench --bench zygote` (Linux: elsewhere there is no
//! zygote, and the bench says so and measures nothing).

use criterion::{Criterion, criterion_group, criterion_main};
use forkpool::Pool;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

/// The heap the program holds while it forks.
const HEAP_BYTES: usize = 512 << 20;

/// Ends its worker on item 0; answers item 1.
fn die_on_zero(x: u32) -> u32 {
    if x == 0 {
        // SAFETY: `_exit` ends the worker at once; nothing of it runs afterwards.
        unsafe { libc::_exit(1) }
    }
    x
}

/// Starts the zygote, then grows the heap (once for the whole run).
fn big_program() -> Option<&'static Vec<u8>> {
    static HEAP: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    HEAP.get_or_init(|| match forkpool::zygote() {
        Ok(()) => Some(black_box(vec![1u8; HEAP_BYTES])),
        Err(e) => {
            eprintln!("no zygote here: {e}");
            None
        }
    })
    .as_ref()
}

fn zygote(c: &mut Criterion) {
    if big_program().is_none() {
        return;
    }
    let mut group = c.benchmark_group("zygote");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("pool_start_teardown_512mib_heap", |b| {
        b.iter(|| drop(Pool::new(2).unwrap()))
    });
    let pool = Pool::new(1).unwrap();
    group.bench_function("replacement_fork_512mib_heap", |b| {
        b.iter(|| {
            let outcomes: Vec<_> = pool.chunksize(1).imap(die_on_zero, 0..2u32).collect();
            assert_eq!(outcomes[1].as_ref().unwrap(), &1);
        })
    });
    group.finish();
}

criterion_group!(benches, zygote);
criterion_main!(benches);
