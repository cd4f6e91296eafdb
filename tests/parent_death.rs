//! When the program dies (SIGKILL) or is interrupted (SIGINT to its process group), its
//! workers go too, at once and quietly, whatever signals it blocks; and what the program and
//! its children print is printed once.
//!
//! Each test runs this same test binary again as the *victim* program (the ignored test
//! `victim`, told what to do by an environment variable): it builds a pool, prints its worker
//! pids, and runs a long call until it is killed.
mod common;

use common::ends_within;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROLE: &str = "FORKPOOL_TEST_VICTIM";

fn sleep_unless_first(x: u64) -> u64 {
    if x > 0 {
        std::thread::sleep(Duration::from_secs(600));
    }
    x
}

#[test]
#[ignore = "the victim program of the other tests here, run by them"]
fn victim() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    if role == "block-all" {
        // The "block every signal, sigwait in one thread" pattern: workers forked from here
        // inherit a mask that blocks the parent-death signal unless they clear it.
        // SAFETY: blocks every signal in this thread only.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
    }
    if role == "zygote" {
        forkpool::zygote().unwrap();
    }
    let pool = forkpool::Pool::new(2).unwrap();
    // Item 0 returns at once; items 1 and 2 keep both workers busy in a task (not waiting on
    // their channel) when the pids are printed, so only the parent-death signal can end them.
    let mut outcomes = pool.chunksize(1).imap(sleep_unless_first, 0..3u64);
    assert_eq!(outcomes.next().unwrap().unwrap(), 0);
    let mut pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    if role == "zygote" {
        // The workers' parent: the zygote, which must go with the program too.
        let zygote = common::parent_of(pids[0].parse().unwrap());
        pids.push(zygote.to_string());
    }
    println!("PIDS {}", pids.join(" "));
    for outcome in outcomes {
        let _ = outcome;
    }
}

/// Starts the victim in a process group of its own; returns it and its workers' pids.
fn start_victim() -> (Child, Vec<u32>) {
    start_victim_as("plain")
}

/// Starts the victim in `role` ("plain", or "block-all": its thread blocks every signal).
fn start_victim_as(role: &str) -> (Child, Vec<u32>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    // SAFETY: the closure runs in the forked child before exec and only calls `signal`, which
    // is async-signal-safe. A program started from a non-interactive shell's background job
    // ignores SIGINT, and exec keeps ignored signals: the victim must not, or SIGINT cannot end
    // it.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command
        .args([
            "--exact",
            "victim",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read on a thread, so a victim that never prints fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints "test victim ... " before the test's own output.
            if let Some((_, rest)) = line.split_once("PIDS ") {
                let pids: Vec<u32> = rest.split(' ').map(|p| p.parse().unwrap()).collect();
                let _ = tx.send(pids);
            }
        }
    });
    let pids = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(pids) => pids,
        Err(e) => {
            let _ = child.kill();
            panic!("the victim printed no pids: {e}");
        }
    };
    (child, pids)
}

#[test]
fn workers_exit_within_a_second_of_their_parent_being_sigkilled() {
    let (mut victim, workers) = start_victim();
    assert_eq!(workers.len(), 2);
    victim.kill().unwrap();
    assert_eq!(victim.wait().unwrap().signal(), Some(libc::SIGKILL));
    for pid in workers {
        assert!(
            ends_within(pid, Duration::from_secs(1)),
            "worker {pid} outlived its killed parent by more than a second"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_zygote_and_its_workers_exit_within_a_second_of_their_program_being_sigkilled() {
    for round in 0..3 {
        let (mut victim, pids) = start_victim_as("zygote");
        assert_eq!(pids.len(), 3, "two workers and the zygote");
        assert_ne!(pids[2], victim.id(), "the workers' parent is the zygote");
        victim.kill().unwrap();
        assert_eq!(victim.wait().unwrap().signal(), Some(libc::SIGKILL));
        for pid in pids {
            assert!(
                ends_within(pid, Duration::from_secs(1)),
                "round {round}: {pid} outlived its killed program by more than a second"
            );
        }
    }
}

#[test]
fn workers_of_a_parent_that_blocks_every_signal_die_with_it_10_rounds() {
    for round in 0..10 {
        let (mut victim, workers) = start_victim_as("block-all");
        victim.kill().unwrap();
        assert_eq!(victim.wait().unwrap().signal(), Some(libc::SIGKILL));
        for pid in workers {
            assert!(
                ends_within(pid, Duration::from_secs(1)),
                "round {round}: worker {pid} outlived its killed parent by more than a second"
            );
        }
    }
}

const PRINTER: &str = "FORKPOOL_TEST_PRINTER";

#[test]
#[ignore = "the printing program of the stdout test, run by it"]
fn printer() {
    if std::env::var(PRINTER).is_err() {
        return;
    }
    use std::io::Write;
    print!("PARENT-PARTIAL ");
    let pool = forkpool::Pool::new(2).unwrap();
    pool.chunksize(1)
        .map(|x: u32| print!("POOL-{x} "), 0..4u32)
        .unwrap();
    let fn_pool = forkpool::FnPool::new(1, |x: u32| print!("FNPOOL-{x} ")).unwrap();
    fn_pool.map([7u32]).unwrap();
    drop(fn_pool);
    forkpool::ReturnProcess::spawn(|| print!("PROCESS "))
        .unwrap()
        .join()
        .unwrap();
    forkpool::parmap(|x: &u32| print!("PARMAP-{x} "), &[5u32]).unwrap();
    println!("END");
    std::io::stdout().flush().unwrap();
}

#[test]
fn output_without_a_newline_is_neither_repeated_by_children_nor_lost_by_them() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "printer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PRINTER, "1")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("PARENT-PARTIAL").count(), 1, "{stdout}");
    for printed in [
        "POOL-0", "POOL-1", "POOL-2", "POOL-3", "FNPOOL-7", "PROCESS", "PARMAP-5",
    ] {
        assert_eq!(stdout.matches(printed).count(), 1, "{printed} in: {stdout}");
    }
    assert!(stdout.contains("END"), "{stdout}");
}

#[test]
fn sigint_to_the_process_group_ends_the_program_quietly_and_takes_the_workers() {
    let (mut victim, workers) = start_victim();
    // SAFETY: killpg with a valid signal; the group is the victim's own (process_group(0)).
    assert_eq!(unsafe { libc::killpg(victim.id() as i32, libc::SIGINT) }, 0);
    let status = victim.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT));
    for pid in workers {
        assert!(
            ends_within(pid, Duration::from_secs(1)),
            "worker {pid} outlived its interrupted parent by more than a second"
        );
    }
    // The workers held the victim's stderr too; they are gone, so this read ends.
    let mut stderr = String::new();
    victim
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.is_empty(),
        "the interrupted program printed: {stderr}"
    );
}
