//! The cluster under real `mpirun -n 3` (a driver and two nodes of two workers each): every test
//! runs this same test binary under `mpirun`, filtered to itself, and in there its body is the
//! MPI program (rank 0 asserts, ranks 1 and 2 serve). Without `mpirun` on the PATH a test says
//! why it is skipped (and fails when `FORKPOOL_MPI_REQUIRED` is set, as in CI).

mod common;

use forkpool::mpi::{ClusterBuilder, ClusterPool, Error};
use forkpool::{Death, Pool, TaskError};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Set in the ranks' environment: run the body instead of `mpirun`.
const IN_RANK: &str = "FORKPOOL_MPI_TEST_RANK";
/// The longest one `mpirun` may take before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(100);

/// Runs `body` on a cluster of three ranks: rank 0 gets the pool and its assertions are the
/// test; `name` must be the test's own name (the ranks run this binary filtered to it).
fn on_cluster(name: &str, builder: fn() -> ClusterBuilder, body: fn(&ClusterPool)) {
    if std::env::var_os(IN_RANK).is_some() {
        if let Some(cluster) = builder().init().expect("init") {
            body(&cluster);
            println!("forkpool-mpi-test passed: {name}");
        }
        return;
    }
    let output = mpirun(name, &[]);
    let Some(output) = output else { return };
    assert!(
        output.contains(&format!("forkpool-mpi-test passed: {name}")),
        "rank 0 did not finish {name}:\n{output}"
    );
}

/// Runs `mpirun -n 3` on this test binary filtered to `name` (with `extra` ranks'
/// executables, MPMD style, if given); its output, or `None` when skipped.
fn mpirun(name: &str, other_exe: &[&std::path::Path]) -> Option<String> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        let reason = format!("SKIPPED {name}: no `mpirun` on the PATH (install openmpi-bin)");
        assert!(
            std::env::var_os("FORKPOOL_MPI_REQUIRED").is_none(),
            "{reason}"
        );
        // Straight to stderr: the test harness captures only print macros.
        let _ = writeln!(std::io::stderr(), "{reason}");
        return None;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let args = [name, "--exact", "--nocapture", "--test-threads=1"];
    let mut command = Command::new("mpirun");
    command.args(["--oversubscribe", "--allow-run-as-root"]);
    match other_exe {
        [] => {
            command.args(["-n", "3"]).arg(&exe).args(args);
        }
        [other] => {
            command.args(["-n", "1"]).arg(&exe).args(args);
            command.args([":", "-n", "2"]).arg(other).args(args);
        }
        _ => unreachable!("one other executable at most"),
    }
    // A process group of its own, so the watchdog can stop the ranks and their workers too.
    use std::os::unix::process::CommandExt;
    let child = command
        .process_group(0)
        .env(IN_RANK, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mpirun");
    // A watchdog: mpirun gets LIMIT, then its process group gets SIGTERM, and SIGKILL 5 s on.
    let group = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(LIMIT).is_ok() {
            return false;
        }
        // SAFETY: kill(2) on the process group of our own child, which is still running
        // (the main thread is waiting for it).
        unsafe { libc::kill(-group, libc::SIGTERM) };
        if finished.recv_timeout(Duration::from_secs(5)).is_err() {
            // SAFETY: as above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        true
    });
    let output = child.wait_with_output().expect("wait for mpirun");
    let _ = done.send(());
    let killed = watchdog.join().expect("watchdog");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !killed,
        "mpirun ran past {LIMIT:?} and was stopped:\n{text}"
    );
    assert!(
        output.status.success() || !other_exe.is_empty(),
        "mpirun failed ({}):\n{text}",
        output.status
    );
    Some(text)
}

fn two_workers() -> ClusterBuilder {
    ClusterBuilder::new().pool(Pool::builder().workers(2))
}

/// The rank of the process running this (a node's worker inherits its node's environment).
fn rank() -> i32 {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(-1)
}

fn host() -> String {
    let output = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn collatz(mut x: u64) -> u32 {
    let mut steps = 0;
    while x > 1 {
        x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
        steps += 1;
    }
    steps
}

#[test]
fn map_over_100000_items_equals_serial() {
    on_cluster(
        "map_over_100000_items_equals_serial",
        two_workers,
        |cluster| {
            let serial: Vec<u32> = (0..100_000u64).map(collatz).collect();
            assert_eq!(cluster.map(collatz, 0..100_000u64).unwrap(), serial);
            // Lazy, with chunks of 1,000 (the input's length is not told).
            let lazy: Vec<u32> = cluster
                .chunksize(1_000)
                .imap(collatz, (0..100_000u64).filter(|_| true))
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(lazy, serial);
        },
    );
}

fn rank_of(x: u64) -> (u64, i32) {
    if rank() == 2 {
        // Rank 2 is slow: it should get fewer chunks.
        std::thread::sleep(Duration::from_millis(2));
    }
    (x, rank())
}

#[test]
fn every_kind_of_call_matches_serial_and_a_slow_node_gets_less() {
    let name = "every_kind_of_call_matches_serial_and_a_slow_node_gets_less";
    on_cluster(name, two_workers, |cluster| {
        let nodes = cluster.nodes();
        assert_eq!(nodes.iter().map(|n| n.rank).collect::<Vec<_>>(), [1, 2]);
        assert!(nodes.iter().all(|n| n.workers == 2 && n.host == host()));
        assert!(nodes.iter().all(|n| n.pid != std::process::id()));
        assert_eq!(cluster.workers(), 4);

        let sums = cluster
            .starmap(|a: u64, b: u64| a * b, (0..5_000u64).map(|i| (i, i + 1)))
            .unwrap();
        assert_eq!(sums, (0..5_000u64).map(|i| i * (i + 1)).collect::<Vec<_>>());

        // A context of 80 KB, sent once per node and read once per worker.
        let table: Vec<u64> = (0..10_000u64).map(|i| i * 7).collect();
        let looked_up = cluster
            .map_with(&table, |t: &Vec<u64>, i: usize| t[i] + 1, 0..10_000usize)
            .unwrap();
        assert_eq!(
            looked_up,
            (0..10_000u64).map(|i| i * 7 + 1).collect::<Vec<_>>()
        );

        // Unordered: everything once; and every item ran on a node, not on rank 0.
        let mut seen: Vec<(u64, i32)> = cluster
            .chunksize(10)
            .imap_unordered(rank_of, 0..2_000u64)
            .collect::<Result<_, _>>()
            .unwrap();
        let (fast, slow) = (
            seen.iter().filter(|s| s.1 == 1).count(),
            seen.iter().filter(|s| s.1 == 2).count(),
        );
        seen.sort();
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..2_000).collect::<Vec<_>>()
        );
        assert_eq!(fast + slow, 2_000, "items ran elsewhere: {seen:?}");
        assert!(
            slow > 0 && fast > slow,
            "rank 1 ran {fast}, slow rank 2 ran {slow}"
        );

        // One call at a time; bad options are refused before anything runs.
        let mut running = cluster.imap(|x: u8| x, 0..10u8);
        assert_eq!(running.next().unwrap().unwrap(), 0);
        let busy = cluster.map(|x: u8| x, [1u8]).unwrap_err();
        assert!(matches!(busy, Error::Busy), "{busy}");
        drop(running);
        let zero = cluster.chunksize(0).map(|x: u8| x, [1u8]).unwrap_err();
        assert_eq!(zero.to_string(), "chunksize must be at least 1, got 0");
        let instant = cluster.timeout(Duration::ZERO).map(|x: u8| x, [1u8]);
        assert!(instant.unwrap_err().to_string().contains("more than zero"));
        assert_eq!(cluster.map(|x: u8| x + 1, [1u8, 2]).unwrap(), [2, 3]);
    });
}

/// Every 20th item (from 7) is bad: it segfaults on rank 1 and panics on rank 2; items 555
/// and 1,234 sleep a minute.
fn hazard(x: u64) -> u64 {
    if x % 20 == 7 {
        if rank() == 1 {
            common::segfault();
        }
        panic!("item {x} on rank {}", rank());
    }
    if x == 555 || x == 1_234 {
        std::thread::sleep(Duration::from_secs(60));
    }
    x * 3
}

#[test]
fn segfaults_panics_and_timeouts_on_different_ranks_fail_alone_naming_the_rank() {
    let name = "segfaults_panics_and_timeouts_on_different_ranks_fail_alone_naming_the_rank";
    on_cluster(name, two_workers, |cluster| {
        let outcomes: Vec<Result<u64, Error>> = cluster
            .chunksize(10)
            .timeout(Duration::from_millis(500))
            .imap(hazard, 0..2_000u64)
            .collect();
        assert_eq!(outcomes.len(), 2_000);
        let (mut segfaults, mut panics, mut timeouts) = (0, 0, 0);
        for (x, outcome) in (0u64..).zip(&outcomes) {
            let bad = x % 20 == 7 || x == 555 || x == 1_234;
            let Err(error) = outcome else {
                assert!(!bad, "item {x} should have failed");
                assert_eq!(outcome.as_ref().unwrap(), &(x * 3));
                continue;
            };
            let Error::Task {
                rank,
                host: on,
                error: task,
            } = error
            else {
                panic!("item {x}: not an item's failure: {error}");
            };
            assert_eq!(task.index(), x, "{error}");
            assert_eq!(on, &host());
            assert!(
                task.pid() != 0 && task.pid() != std::process::id(),
                "{error}"
            );
            assert!(
                error
                    .to_string()
                    .contains(&format!("on rank {rank} ({on})"))
            );
            match task {
                TaskError::WorkerDied {
                    death: Death::Signal(11),
                    ..
                } if x % 20 == 7 => {
                    assert_eq!(*rank, 1, "only rank 1 segfaults: {error}");
                    segfaults += 1;
                }
                TaskError::Panicked { message, .. } if x % 20 == 7 => {
                    assert_eq!(*rank, 2, "only rank 2 panics: {error}");
                    assert_eq!(message, &format!("item {x} on rank 2"));
                    panics += 1;
                }
                TaskError::TimedOut { after, .. } if x == 555 || x == 1_234 => {
                    assert!([1, 2].contains(rank));
                    assert_eq!(*after, Duration::from_millis(500));
                    timeouts += 1;
                }
                other => panic!("item {x}: unexpected {other}"),
            }
        }
        assert_eq!(segfaults + panics, 100);
        assert!(
            segfaults > 0 && panics > 0,
            "{segfaults} segfaults, {panics} panics"
        );
        assert_eq!(timeouts, 2);
        // The nodes' pools are whole again.
        assert_eq!(cluster.map(|x: u64| x, 0..100u64).unwrap().len(), 100);
    });
}

#[test]
fn imap_over_endless_input_stays_bounded() {
    on_cluster(
        "imap_over_endless_input_stays_bounded",
        two_workers,
        |cluster| {
            use std::cell::Cell;
            for ordered in [true, false] {
                let pulled = Cell::new(0u64);
                let input = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
                let chunks = cluster.chunksize(100);
                let mut outcomes: Box<dyn Iterator<Item = Result<u64, Error>>> = if ordered {
                    Box::new(chunks.imap(|x: u64| x * 3, input))
                } else {
                    Box::new(chunks.imap_unordered(|x: u64| x * 3, input))
                };
                let mut ahead = 0;
                let mut total = 0u64;
                for taken in 1..=50_000u64 {
                    let value = outcomes.next().expect("endless").expect("no failure");
                    if ordered {
                        assert_eq!(value, (taken - 1) * 3);
                    }
                    total += value;
                    ahead = ahead.max(pulled.get() - taken);
                }
                // At most 4 chunks per node past the last item yielded: 4 × 2 × 100.
                assert!(ahead <= 800, "the input ran {ahead} items ahead");
                if ordered {
                    assert_eq!(total, 3 * 49_999 * 50_000 / 2);
                }
                // Dropping it cancels the rest; the next call gets the nodes.
                drop(outcomes);
                assert_eq!(
                    cluster.map(|x: u64| x + 1, 0..1_000u64).unwrap()[999],
                    1_000
                );
            }
        },
    );
}

fn abort_on_rank_2(x: u64) -> u64 {
    if rank() == 2 {
        std::process::abort();
    }
    x
}

fn guarded() -> ClusterBuilder {
    ClusterBuilder::new()
        .pool(Pool::builder().workers(2))
        .max_restarts(3, Duration::from_secs(60))
}

#[test]
fn a_rank_whose_pool_crash_loops_ends_the_call_with_crash_loop() {
    let name = "a_rank_whose_pool_crash_loops_ends_the_call_with_crash_loop";
    on_cluster(name, guarded, |cluster| {
        // Endless input: the stream ends, with the crash loop of rank 2 last. Chunks of 2 items
        // never trip a local pool's own guard (it starts afresh with each chunk): the node's
        // guard counts across them.
        let outcomes: Vec<Result<u64, Error>> =
            cluster.chunksize(2).imap(abort_on_rank_2, 0u64..).collect();
        let (last, rest) = outcomes.split_last().expect("outcomes");
        match last {
            Err(Error::NodePool {
                rank: 2,
                error: forkpool::PoolError::CrashLoop { deaths, .. },
                pid,
                ..
            }) => {
                assert!(*deaths > 3);
                assert_eq!(*pid, cluster.nodes()[1].pid);
            }
            other => panic!("the call ended with {other:?}"),
        }
        for (x, outcome) in (0u64..).zip(rest) {
            match outcome {
                Ok(v) => assert_eq!(*v, x),
                Err(Error::Task {
                    rank: 2,
                    error: TaskError::WorkerDied { death, .. },
                    ..
                }) => {
                    assert_eq!(*death, Death::Signal(6));
                }
                Err(Error::Task {
                    rank: 2,
                    error: TaskError::PoolFailed { cause, .. },
                    ..
                }) => {
                    assert!(cause.contains("crash loop"), "{cause}");
                }
                Err(other) => panic!("item {x}: {other}"),
            }
        }
        // Known length, chunks of 4 (the local guard trips within one): map returns an error
        // naming rank 2, and imap gives every item its outcome.
        let err = cluster
            .chunksize(4)
            .map(abort_on_rank_2, 0..1_000u64)
            .unwrap_err();
        assert_eq!(err.rank(), Some(2), "{err}");
        let all: Vec<_> = cluster
            .chunksize(4)
            .imap(abort_on_rank_2, 0..1_000u64)
            .collect();
        assert_eq!(all.len(), 1_000);
        // Rank 2's pool is whole again for the next call.
        let ranks: Vec<i32> = cluster.chunksize(1).map(|_: u8| rank(), 0..40u8).unwrap();
        assert!(ranks.contains(&2), "{ranks:?}");
    });
}

#[test]
fn ranks_running_another_executable_are_refused() {
    let name = "ranks_running_another_executable_are_refused";
    if std::env::var_os(IN_RANK).is_some() {
        let err = forkpool::mpi::init().expect_err("the ranks differ");
        println!("forkpool-mpi-test refused: {err}");
        return;
    }
    // The same program with one byte more: it runs, but is not the identical binary.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = std::env::temp_dir().join(format!("forkpool-mpi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let other = dir.join("other");
    std::fs::copy(&exe, &other).expect("copy");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&other)
        .and_then(|mut f| f.write_all(b"\0"))
        .expect("append");
    let output = mpirun(name, &[&other]);
    let _ = std::fs::remove_dir_all(&dir);
    let Some(output) = output else { return };
    assert!(
        output.contains("forkpool-mpi-test refused: rank 1 (")
            && output.contains("runs another executable than rank 0: its executable has"),
        "{output}"
    );
    assert_eq!(
        output
            .matches("forkpool-mpi-test refused: rank 0 refused")
            .count(),
        2,
        "{output}"
    );
}
