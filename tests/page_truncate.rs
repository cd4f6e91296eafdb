//! A task cannot shrink the memory its worker shares with the parent: the parent reads that
//! mapping (progress page, reply ring, reply arena), and a mapping cut short under it would
//! kill the parent with `SIGBUS` on its next read. The memory is a size-sealed shared-memory
//! file, so a task that reaches it as a file (`/proc/self/map_files/`, open to root) and
//! truncates it is refused (Linux; macOS has no `/proc/self/map_files`).

#![cfg(target_os = "linux")]

mod common;

use forkpool::Pool;

/// What a task got when it tried to truncate its worker's shared mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Truncate {
    /// `/proc/self/map_files/<range>` could not be opened read-write (not root): errno.
    NotOpened(i32),
    /// Opened; `ftruncate(fd, 0)` failed with this errno.
    Refused(i32),
    /// Opened and truncated to nothing.
    Truncated,
}

/// Opens this worker's shared mapping through `/proc/self/map_files/` and truncates it to 0.
fn truncate_own_mapping(_: u64) -> Truncate {
    let path = format!(
        "/proc/self/map_files/{}",
        common::own_shared_mapping_range()
    );
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => return Truncate::NotOpened(e.raw_os_error().unwrap_or(0)),
    };
    match file.set_len(0) {
        Ok(()) => Truncate::Truncated,
        Err(e) => Truncate::Refused(e.raw_os_error().unwrap_or(0)),
    }
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_task_that_truncates_its_shared_mapping_is_refused_and_the_parent_serves_on() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let pool = Pool::new(2).unwrap();
    for round in 0..5u64 {
        // One item per worker, so both workers' mappings are tried; a parent that survives
        // reads every page after the attempts (each reply, and the next call's).
        let outcomes: Vec<_> = pool
            .chunksize(1)
            .imap(truncate_own_mapping, 0..4u64)
            .collect();
        for outcome in outcomes {
            match outcome {
                Ok(Truncate::Refused(errno)) => assert_eq!(errno, libc::EPERM, "round {round}"),
                Ok(Truncate::NotOpened(errno)) => {
                    assert!(
                        !root,
                        "round {round}: root could not open it: errno {errno}"
                    )
                }
                Ok(Truncate::Truncated) => panic!("round {round}: a task truncated its mapping"),
                // A worker that died of its own truncated mapping: an error, not the parent's
                // death.
                Err(e) => assert!(e.as_task().is_some(), "round {round}: {e}"),
            }
        }
        assert_eq!(
            pool.map(double, 0..100u64).unwrap(),
            (0..100).map(double).collect::<Vec<_>>(),
            "round {round}"
        );
    }
    if !root {
        eprintln!("not root: /proc/self/map_files/ is closed to tasks here, nothing was tried");
    }
}
