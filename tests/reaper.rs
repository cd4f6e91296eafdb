//! One reaper per process: pools and `ReturnProcess` children made from several threads at once
//! all have their deaths reported and are all reaped (no zombie, no child left), a process forked
//! by the crate makes a reaper of its own, and a child's death is noticed while a grandchild holds
//! its socket.

mod common;

use forkpool::{ItemError, Pool, ReturnProcess};
use std::sync::Mutex;
use std::time::Duration;

/// The tests here count this process's children: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The children of process `parent` (`/proc/<pid>/stat`: pid, state, parent), with their state
/// letter (`Z`: a zombie).
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        // The command name is in parentheses and may hold spaces: fields follow the last ')'.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            children.push((pid, state));
        }
    }
    children
}

/// This process's reaper threads: the shared one (`forkpool-reaper`) and threads of one child
/// each (`forkpool-reap-<pid>`, cut to 15 bytes by the kernel).
#[cfg(target_os = "linux")]
fn reaper_threads() -> (usize, usize) {
    let (mut shared, mut own) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        match comm.trim_end() {
            "forkpool-reaper" => shared += 1,
            name if name.starts_with("forkpool-reap-") => own += 1,
            _ => {}
        }
    }
    (shared, own)
}

#[cfg(target_os = "linux")]
#[test]
fn many_workers_share_one_reaper_thread() {
    let _serial = serial();
    let pool = Pool::new(16).unwrap();
    let p = ReturnProcess::spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    assert_eq!(reaper_threads(), (1, 0));
    drop(p);
    drop(pool);
    assert_eq!(children_of(std::process::id()), []);
}

fn double(x: u64) -> u64 {
    x * 2
}

/// Ends its worker for item 3 (the item fails; the pool forks a replacement). With `_exit`:
/// `std::process::exit` runs std's clean-up, which takes a lock of std's that another thread of
/// this test binary may have held at the fork (seen: a worker hung there).
fn exit_on_three(x: u64) -> u64 {
    if x == 3 {
        // SAFETY: `_exit` ends the worker at once; nothing of it runs afterwards.
        unsafe { libc::_exit(3) };
    }
    x
}

/// Pools built, used, hit by worker deaths and dropped, and `ReturnProcess` children joined,
/// killed and dropped, from one thread.
fn churn(round: u64) {
    let pool = Pool::new(3).unwrap();
    assert_eq!(pool.map(double, 0..20u64).unwrap()[19], 38);
    for _ in 0..2 {
        let err = pool.map(exit_on_three, 0..6u64).unwrap_err();
        assert!(
            matches!(err.as_task(), Some(ItemError::WorkerDied { .. })),
            "{err}"
        );
    }
    let stats = pool.stats().unwrap();
    assert_eq!(stats.died, 2, "{stats:?}");
    assert_eq!(stats.ended.len(), 2, "{stats:?}");
    assert_ne!(stats.ended[0].pid, stats.ended[1].pid);
    assert_eq!(pool.map(double, [round]).unwrap(), [round * 2]);
    drop(pool);

    let p = ReturnProcess::spawn(move || round + 1).unwrap();
    assert_eq!(p.join().unwrap(), round + 1);
    let mut p = ReturnProcess::<()>::spawn(|| {
        loop {
            std::hint::spin_loop();
        }
    })
    .unwrap();
    p.kill();
    let err = p.join().unwrap_err();
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    let p = ReturnProcess::spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    drop(p); // kills and reaps it
}

#[test]
fn pools_and_processes_from_several_threads_are_all_reaped() {
    let _serial = serial();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..4 {
                    churn(t * 10 + round);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Every pool was dropped and every process joined or dropped: each of those waits until
    // its children are reaped, so none is left, not even a zombie.
    #[cfg(target_os = "linux")]
    assert_eq!(children_of(std::process::id()), []);
}

#[test]
fn a_process_forked_by_the_crate_reaps_its_own_children() {
    let _serial = serial();
    // The parent's reaper runs already.
    assert_eq!(ReturnProcess::spawn(|| 1u8).unwrap().join().unwrap(), 1);
    let outer = ReturnProcess::spawn(|| {
        let inner = ReturnProcess::spawn(|| 20u64).unwrap();
        let dropped = ReturnProcess::spawn(|| std::thread::sleep(Duration::from_secs(60)));
        drop(dropped);
        let pool = Pool::new(2).unwrap();
        let sum: u64 = pool.map(double, 0..10u64).unwrap().into_iter().sum();
        drop(pool);
        let value = inner.join().unwrap() + sum;
        // Its own reaper thread (the parent's does not exist here), and no child left.
        #[cfg(target_os = "linux")]
        let left = (reaper_threads(), children_of(std::process::id()).len());
        #[cfg(not(target_os = "linux"))]
        let left = ((1, 0), 0);
        (value, left)
    })
    .unwrap();
    assert_eq!(outer.join().unwrap(), (20 + 90, ((1, 0), 0)));
    #[cfg(target_os = "linux")]
    assert_eq!(children_of(std::process::id()), []);
}

/// Forks a grandchild that holds a copy of everything the child has (its socket too) and
/// waits forever; returns its pid.
fn fork_a_grandchild_holding_the_socket() -> u32 {
    // SAFETY: the child this runs in has one thread; the grandchild only calls `pause`.
    match unsafe { libc::fork() } {
        0 => loop {
            // SAFETY: pause only waits for a signal.
            unsafe { libc::pause() };
        },
        pid => pid as u32,
    }
}

#[test]
fn a_death_is_noticed_while_a_grandchild_holds_the_socket() {
    let _serial = serial();
    let p = ReturnProcess::spawn(fork_a_grandchild_holding_the_socket).unwrap();
    let grandchild = p.join().unwrap();
    assert!(grandchild > 0);
    // The child's process group was killed once it ended.
    assert!(common::ends_within(grandchild, Duration::from_secs(10)));
}
