//! A zygote that does not answer in time is treated as gone: a stopped zygote does not block
//! `Pool::new`, whose workers then come from the program. (Linux: the zygote. A test binary
//! of its own: it stops the zygote of this process.)

#![cfg(target_os = "linux")]

mod common;

use common::parent_of;
use forkpool::Pool;
use std::time::{Duration, Instant};

fn plus_one(x: u64) -> u64 {
    x + 1
}

/// The state letter of process `pid` (`/proc/<pid>/stat`): `T` when stopped.
fn state_of(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
    after_name.chars().next().unwrap_or('?')
}

/// Lets a stopped process run again when dropped, so a failing test leaves no stopped zygote
/// (through a pidfd: the program may have reaped the zygote, and its pid may name another).
struct ContinueOnDrop(libc::c_int);

impl ContinueOnDrop {
    fn new(pid: u32) -> ContinueOnDrop {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "a pidfd for the zygote");
        ContinueOnDrop(fd as libc::c_int)
    }
}

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal on our own pidfd (an error once the process is reaped),
        // then close it.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0,
                libc::SIGCONT,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            libc::close(self.0);
        }
    }
}

#[test]
fn pool_new_with_a_stopped_zygote_forks_from_the_program_within_a_bound() {
    forkpool::zygote().unwrap();
    let me = std::process::id();
    let first = Pool::new(1).unwrap();
    let zygote = parent_of(first.pids()[0]);
    assert_ne!(zygote, me, "the first pool's worker is the zygote's");
    let _continue = ContinueOnDrop::new(zygote);
    // SAFETY: kill(2) on the zygote, our child, which is alive (it just forked a worker, and
    // only the program reaps it, once it ended).
    assert_eq!(unsafe { libc::kill(zygote as i32, libc::SIGSTOP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_of(zygote) != 'T' {
        assert!(Instant::now() < deadline, "the zygote did not stop");
        std::thread::yield_now();
    }
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let pool = Pool::new(2).unwrap();
        let took = started.elapsed();
        let parents: Vec<u32> = pool.pids().into_iter().map(parent_of).collect();
        let got = pool.map(plus_one, 0..4u64).unwrap();
        let _ = sent.send((took, parents, got));
    });
    let (took, parents, got) = received
        .recv_timeout(Duration::from_secs(30))
        .expect("Pool::new still waits for the stopped zygote");
    assert!(took < Duration::from_secs(10), "Pool::new took {took:?}");
    assert_eq!(parents, [me, me], "the workers are the program's");
    assert_eq!(got, [1, 2, 3, 4]);
    // The first pool goes on: its worker is reported gone with the zygote and replaced.
    assert_eq!(first.map(plus_one, 0..3u64).unwrap(), [1, 2, 3]);
    assert!(first.pids().iter().all(|&pid| parent_of(pid) == me));
}
