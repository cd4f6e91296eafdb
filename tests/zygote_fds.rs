//! Every descriptor this crate opens is registered from the call that makes it, in the program
//! and in the zygote, so no child holds another's: a task in one pool cannot reach the workers
//! of another through a pidfd it inherited, and a child forked while the program receives a
//! pidfd from the zygote does not get a copy. (Linux: pidfds and the zygote. A test binary of
//! its own: every `Pool` here forks from the zygote.)

#![cfg(target_os = "linux")]

mod common;

use common::parent_of;
use forkpool::{Pool, ReturnProcess};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the program had open, descriptor and target, before the zygote started: the zygote
/// and its workers inherit those (they are not this crate's).
fn setup() -> &'static BTreeSet<(i32, String)> {
    static BASELINE: OnceLock<BTreeSet<(i32, String)>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let baseline = descriptors().into_iter().collect();
        forkpool::zygote().unwrap();
        baseline
    })
}

/// This process's open descriptors and what each is (`/proc/self/fd`), without the one the
/// listing itself opens.
fn descriptors() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // the listing's own descriptor, closed by now
        };
        let target = target.to_string_lossy().into_owned();
        if !target.starts_with("/proc/") {
            found.push((fd, target));
        }
    }
    found
}

fn is_pidfd(target: &str) -> bool {
    target == "anon_inode:[pidfd]"
}

/// In a worker: its descriptors; it kills, with `SIGKILL`, every process it holds a pidfd of.
fn descriptors_after_killing_through_pidfds(_: u32) -> Vec<(i32, String)> {
    let found = descriptors();
    for (fd, target) in &found {
        if is_pidfd(target) {
            // SAFETY: pidfd_send_signal takes a descriptor, a signal, no siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    *fd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
    }
    found
}

/// Waits (polling the file system, at most a minute) until `path` exists.
fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// An item of pool A: says it runs (a file `started-<i>`), then waits for `go`.
fn started_then_wait_for_go((dir, i): (String, u32)) -> bool {
    let dir = PathBuf::from(dir);
    std::fs::write(dir.join(format!("started-{i}")), b"").unwrap();
    wait_for(&dir.join("go"))
}

#[test]
fn a_task_in_one_zygote_pool_holds_no_descriptor_of_another_pools_workers() {
    let baseline = setup();
    let dir = std::env::temp_dir().join(format!("forkpool-zygote-fds-{}", std::process::id()));
    for round in 0..20 {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = Pool::new(2).unwrap();
        let b = Pool::new(1).unwrap();
        let zygote = parent_of(b.pids()[0]);
        assert_ne!(
            zygote,
            std::process::id(),
            "pool B's worker is the zygote's"
        );
        std::thread::scope(|s| {
            let items: Vec<(String, u32)> =
                (0..2).map(|i| (dir.to_string_lossy().into(), i)).collect();
            let innocent = s.spawn(|| a.chunksize(1).map(started_then_wait_for_go, items));
            // Both of pool A's items are running before pool B's task looks around.
            for i in 0..2 {
                assert!(wait_for(&dir.join(format!("started-{i}"))), "round {round}");
            }
            let seen = b.apply(descriptors_after_killing_through_pidfds, 0);
            std::fs::write(dir.join("go"), b"").unwrap();
            let outcomes = innocent.join().unwrap();
            assert_eq!(outcomes.unwrap(), [true, true], "round {round}");
            let seen = seen.unwrap();
            let pidfds: Vec<_> = seen.iter().filter(|(_, t)| is_pidfd(t)).collect();
            assert!(pidfds.is_empty(), "round {round}: pidfds {pidfds:?}");
            // Besides what the program had before the zygote started: its own socket and the
            // write end of its notify pipe, no more.
            let own: Vec<_> = seen
                .iter()
                .filter(|fd| !baseline.contains(fd))
                .map(|(_, t)| t.split(':').next().unwrap_or_default())
                .collect();
            let sockets = own.iter().filter(|&&t| t == "socket").count();
            let pipes = own.iter().filter(|&&t| t == "pipe").count();
            assert!(
                sockets == 1 && pipes <= 1 && own.len() == sockets + pipes,
                "round {round}: {seen:?} (baseline {baseline:?})"
            );
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// In a child forked by the program: the pidfds it holds.
fn pidfds_held() -> Vec<(i32, String)> {
    descriptors()
        .into_iter()
        .filter(|(_, t)| is_pidfd(t))
        .collect()
}

#[test]
fn a_child_forked_while_a_zygote_pidfd_arrives_does_not_hold_it() {
    setup();
    for round in 0..20 {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            // Pools forked by the zygote: each worker's pidfd comes to the program.
            s.spawn(|| {
                for _ in 0..5 {
                    drop(Pool::new(2).unwrap());
                }
                done.store(true, Ordering::Release);
            });
            // Children forked by the program meanwhile.
            let mut children = 0;
            while !done.load(Ordering::Acquire) || children < 2 {
                let held = ReturnProcess::spawn(pidfds_held).unwrap().join().unwrap();
                assert!(held.is_empty(), "round {round}: a child holds {held:?}");
                children += 1;
            }
        });
    }
}
