//! Unit tests of [`wire`](super).
use super::*;
use std::os::fd::FromRawFd;

fn pair(fragment: usize) -> (Socket, Socket) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Socket::new(a, fragment), Socket::new(b, fragment))
}

fn raw(socket: &Socket, bytes: &[u8]) {
    // SAFETY: sending a readable buffer on an open socket.
    let n = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, bytes.len() as isize);
}

#[test]
fn frames_of_every_size_arrive_whole() {
    let (a, b) = pair(16);
    let mut reader = Assembler::new();
    for len in [0usize, 1, 15, 16, 17, 32, 33, 100] {
        let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
        a.send_frame(&frame).unwrap();
        assert_eq!(reader.receive_frame(&b), Received::Frame(frame));
    }
    assert_eq!(reader.receive(&b, false), Received::Empty);
    drop(a);
    assert_eq!(reader.receive(&b, false), Received::Closed);
}

#[test]
fn bytes_out_of_turn_are_violations() {
    let cases: Vec<Vec<u8>> = vec![
        vec![1, 2, 3],
        vec![WHOLE, 5, 0, 0, 0, 0, 0, 0, 0, 1],
        vec![MORE, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        // A first fragment that is not full.
        vec![FIRST, 255, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
        vec![0xEE; 40],
    ];
    for case in cases {
        let (a, b) = pair(16);
        raw(&a, &case);
        assert!(
            matches!(Assembler::new().receive(&b, false), Received::Violation(_)),
            "{case:?}"
        );
    }
    // An empty datagram is no end-of-stream.
    let (a, b) = pair(16);
    raw(&a, &[]);
    assert!(matches!(
        Assembler::new().receive(&b, false),
        Received::Violation(_)
    ));
    // A whole frame where the next fragment of a frame was due.
    let (a, b) = pair(16);
    let mut reader = Assembler::new();
    let mut first = vec![FIRST];
    first.extend_from_slice(&40u64.to_le_bytes());
    first.extend_from_slice(&[0; 16]);
    raw(&a, &first);
    assert_eq!(reader.receive(&b, false), Received::Partial);
    a.send_frame(b"hi").unwrap();
    assert!(matches!(reader.receive(&b, false), Received::Violation(_)));
}

#[test]
fn a_frame_claiming_more_than_memory_is_no_abort() {
    let (a, b) = pair(16);
    let mut first = vec![FIRST];
    first.extend_from_slice(&u64::MAX.to_le_bytes());
    first.extend_from_slice(&[0; 16]);
    raw(&a, &first);
    let mut more = vec![MORE];
    more.extend_from_slice(&16u64.to_le_bytes());
    more.extend_from_slice(&[0; 16]);
    raw(&a, &more);
    let mut reader = Assembler::new();
    for _ in 0..2 {
        // Memory grows only with the bytes that arrive; an impossible size is a violation.
        match reader.receive(&b, false) {
            Received::Partial | Received::Violation(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

proptest::proptest! {
    /// Any sequence of datagrams, arbitrary or cut from valid frames, gives frames,
    /// violations or nothing: never a panic, and a valid frame sent first still arrives whole.
    #[test]
    fn fuzz_assembler_takes_arbitrary_datagrams(
        frame in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        datagrams in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..12),
        header_kinds in proptest::collection::vec(0usize..4, 0..12),
    ) {
        let (a, b) = pair(16);
        a.send_frame(&frame).unwrap();
        for (i, mut datagram) in datagrams.into_iter().enumerate() {
            // Some datagrams get a plausible header, so the checks past the kind byte run.
            if let Some(&k) = header_kinds.get(i) {
                if k < 3 && datagram.len() >= HEADER_LEN {
                    datagram[0] = [WHOLE, FIRST, MORE][k];
                }
            }
            raw(&a, &datagram);
        }
        drop(a);
        let mut reader = Assembler::new();
        proptest::prop_assert_eq!(reader.receive_frame(&b), Received::Frame(frame));
        for _ in 0..64 {
            match reader.receive(&b, false) {
                Received::Closed | Received::Violation(_) | Received::Empty => break,
                Received::Frame(_) | Received::Partial => {}
            }
        }
    }
}

#[test]
fn a_frame_longer_than_the_limit_is_a_violation_at_its_first_datagram() {
    let (a, b) = pair(16);
    let mut reader = Assembler::with_limit(40);
    let fits: Vec<u8> = (0..40).collect();
    a.send_frame(&fits).unwrap();
    assert_eq!(reader.receive_frame(&b), Received::Frame(fits));
    // A frame that claims a terabyte: refused when its first datagram arrives, before any more.
    let mut first = vec![FIRST];
    first.extend_from_slice(&(1u64 << 40).to_le_bytes());
    first.extend_from_slice(&[7; 16]);
    raw(&a, &first);
    let Received::Violation(what) = reader.receive(&b, false) else {
        panic!("a terabyte frame was taken in")
    };
    assert!(what.contains("1099511627776 bytes"), "{what}");
    // One byte over the limit, honestly sent, is refused too; a reader without a limit takes it.
    let (a, b) = pair(16);
    a.send_frame(&[1; 41]).unwrap();
    assert!(matches!(
        Assembler::with_limit(40).receive(&b, false),
        Received::Violation(_)
    ));
    let (a, b) = pair(16);
    a.send_frame(&[1; 41]).unwrap();
    assert_eq!(
        Assembler::new().receive_frame(&b),
        Received::Frame(vec![1; 41])
    );
}
