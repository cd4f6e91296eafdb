//! Threads and processes a task leaves behind: they may hold their worker's socket and reply
//! ring, and a forged reply written after their task's chunk was answered would be believed.
//! A worker that is not alone after a chunk (a thread of its task still runs, a child process
//! it forked still lives) marks that chunk's reply as its last and leaves; the parent believes
//! nothing more from it, sends what else it held to the other workers and forks a replacement.
//! Threads a task joins and children it reaps cost nothing.

mod common;

use common::own_socket;
use forkpool::Pool;
use forkpool_worker::arena;
use forkpool_worker::progress::current_ring;
use forkpool_worker::protocol::ReplyWriter;
use std::time::{Duration, Instant};

/// The call and chunk of the chunk frame waiting to be read on this worker's socket, if one is
/// (a datagram `[0x57][len u64]` holding a task `[1][call][chunk]..`, or a batch of them).
fn task_waiting(fd: i32) -> Option<(u64, u64)> {
    let mut buf = [0u8; 64];
    // SAFETY: peeks at most 64 bytes into a live buffer, without waiting.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 9 + 17 || buf[0] != 0x57 {
        return None;
    }
    let frame = match buf[9] {
        1 => &buf[9..],
        4 => &buf[14..],
        _ => return None,
    };
    let word = |at: usize| u64::from_le_bytes(frame[at..at + 8].try_into().unwrap());
    (frame[0] == 1).then(|| (word(1), word(9)))
}

/// Where a forger puts its reply.
#[derive(Clone, Copy)]
enum Forgery {
    /// A record in the worker's reply ring.
    Ring,
    /// A frame on the worker's socket, announced in the ring as the worker announces its own.
    Socket,
}

/// Waits (up to 5 s) for the next chunk frame to reach this worker's socket, then answers it
/// with `Ok(666)`, as the worker would: what a thread or child a task left behind can do.
fn forge_the_next_reply(how: Forgery) {
    let fd = own_socket();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (call, chunk) = loop {
        if let Some(next) = task_waiting(fd) {
            break next;
        }
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let mut reply = ReplyWriter::new();
    reply.begin();
    reply.ok(&666u64);
    let frame = reply.seal(call, chunk, 0).to_vec();
    let ring = current_ring();
    let behind = matches!(how, Forgery::Socket);
    if let Some(ring) = ring {
        ring.push(&frame, behind, &mut arena::Writer::default());
    }
    if behind || ring.is_none() {
        let mut datagram = vec![0x57];
        datagram.extend_from_slice(&(frame.len() as u64).to_le_bytes());
        datagram.extend_from_slice(&frame);
        // SAFETY: sends a live buffer on this process's socket.
        unsafe {
            libc::send(
                fd,
                datagram.as_ptr().cast(),
                datagram.len(),
                libc::MSG_NOSIGNAL,
            )
        };
    }
}

/// Leaves a thread behind that forges a ring record for the next task.
fn leave_a_ring_forger(x: u64) -> u64 {
    std::thread::spawn(|| forge_the_next_reply(Forgery::Ring));
    x
}

/// Leaves a thread behind that forges an announced socket reply for the next task.
fn leave_a_socket_forger(x: u64) -> u64 {
    std::thread::spawn(|| forge_the_next_reply(Forgery::Socket));
    x
}

/// Leaves a child process behind (it holds the socket and the ring) that forges a ring record
/// for the next task, then exits.
fn fork_a_forger(x: u64) -> u64 {
    // SAFETY: the child only forges (no lock another thread may hold: the worker has one
    // thread) and leaves through `_exit`, never returning into the worker.
    match unsafe { libc::fork() } {
        0 => {
            forge_the_next_reply(Forgery::Ring);
            // SAFETY: ends the forked child without running anything of its parent's.
            unsafe { libc::_exit(0) }
        }
        _ => x,
    }
}

/// The honest next task: it takes a while, so a forged reply has time to land first.
fn slow_answer(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

/// One worker, so the next call goes where the forger waits; 20 rounds of a leaving task and
/// an honest one after it.
fn the_next_call_gets_its_own_value(leave: fn(u64) -> u64) {
    let pool = Pool::new(1).unwrap();
    for round in 0..20u64 {
        assert_eq!(pool.apply(leave, round).unwrap(), round, "round {round}");
        assert_eq!(pool.apply(slow_answer, 42).unwrap(), 42, "round {round}");
    }
}

#[test]
fn a_thread_left_behind_cannot_forge_a_ring_record_for_the_next_call_20_rounds() {
    the_next_call_gets_its_own_value(leave_a_ring_forger);
}

#[test]
fn a_thread_left_behind_cannot_forge_a_socket_reply_for_the_next_call_20_rounds() {
    the_next_call_gets_its_own_value(leave_a_socket_forger);
}

#[test]
fn a_child_left_behind_holding_the_socket_cannot_forge_for_the_next_call_20_rounds() {
    the_next_call_gets_its_own_value(fork_a_forger);
}

/// Runs four threads and joins them, and a child process to its end.
fn join_and_reap(x: u64) -> u64 {
    let sum: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4).map(|i| s.spawn(move || x + i)).collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    let status = std::process::Command::new("true").status().unwrap();
    assert!(status.success());
    sum
}

#[test]
fn tasks_that_join_their_threads_and_reap_their_children_keep_their_worker() {
    let pool = Pool::new(1).unwrap();
    let pids = pool.pids();
    let sums = pool.chunksize(1).map(join_and_reap, 0..30u64).unwrap();
    assert_eq!(sums, (0..30).map(|x| 4 * x + 6).collect::<Vec<_>>());
    assert_eq!(pool.pids(), pids, "the worker was replaced");
}
