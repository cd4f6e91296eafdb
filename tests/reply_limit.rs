//! How big a frame a worker may send its parent: a reply is held whole in the parent, so a
//! chunk's results may take at most `forkpool::MAX_REPLY_BYTES` together. A result past that
//! fails its item alone; a worker that streams a frame claiming more than any reply may take is
//! stopped at its first datagram, before the parent holds any of it. (One test binary of its
//! own: the second test measures the parent's peak memory.)

mod common;

use forkpool::{CodecStage, Error, ItemError, MAX_REPLY_BYTES, Pool};
use serde_bytes::ByteBuf;

/// Item 2 returns a buffer one byte past `MAX_REPLY_BYTES` (zeroed by the allocator: only its
/// encoding, which the worker then drops, costs memory); the others a small one.
fn one_too_big(x: u64) -> ByteBuf {
    let len = if x == 2 { MAX_REPLY_BYTES + 1 } else { 100 };
    ByteBuf::from(vec![x as u8; len])
}

#[test]
fn a_result_past_max_reply_bytes_fails_its_item_alone_with_a_codec_error_naming_the_limit() {
    let pool = Pool::new(1).unwrap();
    for chunksize in [4, 1] {
        let outcomes: Vec<Result<ByteBuf, Error>> = pool
            .chunksize(chunksize)
            .imap(one_too_big, 0..4u64)
            .collect();
        assert_eq!(outcomes.len(), 4);
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(b) if x != 2 => assert_eq!(b[..], [x as u8; 100][..], "item {x}"),
                Err(Error::Task(ItemError::Codec {
                    index: 2,
                    stage: CodecStage::EncodeResult,
                    message,
                    ..
                })) => assert!(message.contains("MAX_REPLY_BYTES"), "{message}"),
                other => panic!(
                    "chunksize {chunksize}, item {x}: {:?}",
                    other.as_ref().map(|b| b.len())
                ),
            }
        }
    }
    // The same worker serves on.
    assert_eq!(pool.pids().len(), 1);
    assert_eq!(
        pool.map(|x: u64| x + 1, 0..10u64).unwrap(),
        (1..11).collect::<Vec<_>>()
    );
}

/// A task that streams a frame claiming a terabyte (Linux: the test computes the socket's
/// datagram size as the parent does there, and reads the parent's peak memory in `/proc`).
#[cfg(target_os = "linux")]
mod streamed {
    use super::*;

    /// How many bytes of frame each datagram on this worker's socket carries: what the parent
    /// measured when it made the pair (half the send buffer granted, in pages, 4 KiB to 256 KiB).
    fn fragment_of(fd: i32) -> usize {
        let mut granted: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one int option into a live int of the stated length.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut granted as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        forkpool_worker::wire::fragment_for(granted.max(0) as usize)
    }

    /// Bytes the hostile task streams at most (before the fix, the parent held them all).
    const STREAMED: usize = 512 << 20;

    /// Item 3 sends on its worker's socket the first datagram of a frame that claims a terabyte,
    /// as the wire layer frames one, then its next datagrams, up to [`STREAMED`] bytes, for as long
    /// as the parent reads them; then it returns like the others.
    fn stream_a_terabyte_frame(x: u64) -> u64 {
        if x == 3 {
            let fd = super::common::own_socket();
            let fragment = fragment_of(fd);
            let mut datagram = vec![0u8; 9 + fragment];
            let mut offset = 0usize;
            while offset < STREAMED {
                let (kind, value) = match offset {
                    0 => (0x46, 1u64 << 40),
                    _ => (0x4D, offset as u64),
                };
                datagram[0] = kind;
                datagram[1..9].copy_from_slice(&value.to_le_bytes());
                // SAFETY: sends a live buffer; a failure ends the stream.
                let sent = unsafe {
                    libc::send(
                        fd,
                        datagram.as_ptr().cast(),
                        datagram.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if sent < 0 {
                    break;
                }
                offset += fragment;
            }
        }
        x * 2
    }

    /// The parent's peak resident memory so far (`VmHWM`, bytes).
    fn peak_resident() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    #[test]
    fn a_task_streaming_a_frame_that_claims_a_terabyte_is_stopped_at_its_first_datagram() {
        let pool = Pool::new(2).unwrap();
        let before = peak_resident();
        let rounds: Vec<Vec<Result<u64, Error>>> = (0..3)
            .map(|_| {
                pool.chunksize(1)
                    .imap(stream_a_terabyte_frame, 0..8u64)
                    .collect()
            })
            .collect();
        let grown = peak_resident().saturating_sub(before);
        assert!(grown < 64 << 20, "the parent grew by {} MiB", grown >> 20);
        for (round, outcomes) in rounds.iter().enumerate() {
            for (x, outcome) in (0u64..).zip(outcomes) {
                match outcome {
                    Ok(v) if x != 3 => assert_eq!(*v, x * 2),
                    Err(Error::Task(ItemError::Protocol { index: 3, what, .. })) => {
                        assert!(
                            what.contains("1099511627776 bytes"),
                            "round {round}: {what}"
                        )
                    }
                    other => panic!("round {round}, item {x}: {other:?}"),
                }
            }
        }
        assert_eq!(
            pool.map(|x: u64| x + 1, 0..10u64).unwrap(),
            (1..11).collect::<Vec<_>>()
        );
    }
}
