//! Frame buffers a pool keeps between calls, so a run of calls with big items reuses the same
//! memory instead of handing it back to the system at the end of every call and faulting it in
//! again at the start of the next.
//!
//! A call encodes each chunk into a buffer it takes from its own spares, else from here, and
//! recycles the buffer once the chunk is answered (see `call`); when the call ends, its spares
//! come back here. Without it (profiled with `perf` over row (e), 64 buffers of 1 MiB per call:
//! `cargo run --release -p forkpool-bench --example compare -- --only e --no-python`), the end of
//! every call frees its few 1 MiB frames, glibc then trims the heap's top (a fifth of the caller's
//! time in `brk`), and the next call faults 1,000-1,300 pages back in; with it, one page fault per
//! call of row (e) in. Switched off (`MAX_BUFFERS = 0`), each row the median of 6 runs
//! alternating with main (`cargo run --release -p forkpool-bench --example compare -- --only
//! a,b,c,e,j,l,n,p --no-python --repeat 2`, then 6 more on rows a, e, j): row (a) ran 1.18× and
//! 1.10× slower, (e) in 1.18× and 1.17×, (e) echoed 0.99× and 1.18×, (j) 1.11× and 1.12×, (b)
//! 0.99×, (l) 0.98×; one build against itself differed by up to 1.45× on rows (c), (e) in, (j),
//! (p).
//!
//! Invariants: it holds at most [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes of capacity,
//! and no buffer over [`MAX_BUFFER_BYTES`], so an idle pool holds little; every buffer it gives
//! out is empty.

use std::sync::Mutex;

/// The most buffers kept. (This and the two limits below are not measured against other
/// values: they bound what an idle pool holds.)
const MAX_BUFFERS: usize = 16;
/// The most bytes kept, all buffers together.
const MAX_BYTES: usize = 32 << 20;
/// A bigger buffer is freed, not kept (a frame that big is rare, and one is enough to pin a
/// lot of memory).
const MAX_BUFFER_BYTES: usize = 8 << 20;

/// The buffers kept (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct FrameBuffers {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl FrameBuffers {
    /// A kept buffer (empty), if there is one.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let buffer = kept.buffers.pop()?;
        kept.bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps `buffers` as far as the limits allow; frees the rest.
    pub fn give(&self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        for mut buffer in buffers {
            let size = buffer.capacity();
            if size == 0
                || size > MAX_BUFFER_BYTES
                || kept.buffers.len() >= MAX_BUFFERS
                || kept.bytes + size > MAX_BYTES
            {
                continue;
            }
            buffer.clear();
            kept.bytes += size;
            kept.buffers.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_its_limits_and_gives_back_empty_buffers() {
        let buffers = FrameBuffers::default();
        assert!(buffers.take().is_none());
        buffers.give([vec![1u8; 100], Vec::new(), vec![0u8; MAX_BUFFER_BYTES + 1]]);
        let back = buffers.take().expect("the 100-byte buffer was kept");
        assert!(back.is_empty() && back.capacity() >= 100);
        assert!(
            buffers.take().is_none(),
            "empty and oversized buffers are not kept"
        );
        buffers.give((0..MAX_BUFFERS + 5).map(|_| Vec::with_capacity(1024)));
        let mut count = 0;
        while buffers.take().is_some() {
            count += 1;
        }
        assert_eq!(count, MAX_BUFFERS);
        buffers.give((0..MAX_BUFFERS).map(|_| Vec::with_capacity(MAX_BUFFER_BYTES)));
        let mut bytes = 0;
        while let Some(buffer) = buffers.take() {
            bytes += buffer.capacity();
        }
        assert!((MAX_BYTES - MAX_BUFFER_BYTES..=MAX_BYTES).contains(&bytes));
    }
}
