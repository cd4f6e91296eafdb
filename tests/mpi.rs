//! The cluster under real `mpirun -n 3` (a driver and two nodes of two workers each): every test
//! runs this same test binary under `mpirun`, filtered to itself, and in there its body is the
//! MPI program (rank 0 asserts, ranks 1 and 2 serve). Without `mpirun` on the PATH a test says
//! why it is skipped (and fails when `FORKPOOL_MPI_REQUIRED` is set, as in CI).

mod common;

use forkpool::mpi::{ClusterBuilder, ClusterPool, Error};
use forkpool::{Death, ItemError, Pool};
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
    run_cluster(name, builder, body, true);
}

/// As [`on_cluster`], for a body that loses a node: rank 0 then leaves MPI unfinalized, and
/// `mpirun` ends the job with a failure once rank 0 has passed.
fn on_cluster_losing_a_node(name: &str, builder: fn() -> ClusterBuilder, body: fn(&ClusterPool)) {
    run_cluster(name, builder, body, false);
}

fn run_cluster(
    name: &str,
    builder: fn() -> ClusterBuilder,
    body: fn(&ClusterPool),
    must_succeed: bool,
) {
    if std::env::var_os(IN_RANK).is_some() {
        if let Some(cluster) = builder().init().expect("init") {
            body(&cluster);
            println!("forkpool-mpi-test passed: {name}");
        }
        return;
    }
    let output = mpirun(name, &[], must_succeed);
    let Some(output) = output else { return };
    assert!(
        output.contains(&format!("forkpool-mpi-test passed: {name}")),
        "rank 0 did not finish {name}:\n{output}"
    );
}

/// Runs `mpirun -n 3` on this test binary filtered to `name` (with `extra` ranks'
/// executables, MPMD style, if given); its output, or `None` when skipped. With
/// `must_succeed`, `mpirun` must exit with success.
fn mpirun(name: &str, other_exe: &[&std::path::Path], must_succeed: bool) -> Option<String> {
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
        output.status.success() || !must_succeed,
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
                ItemError::WorkerDied {
                    death: Death::Signal(11),
                    ..
                } if x % 20 == 7 => {
                    assert_eq!(*rank, 1, "only rank 1 segfaults: {error}");
                    segfaults += 1;
                }
                ItemError::Panicked { message, .. } if x % 20 == 7 => {
                    assert_eq!(*rank, 2, "only rank 2 panics: {error}");
                    assert_eq!(message, &format!("item {x} on rank 2"));
                    panics += 1;
                }
                ItemError::TimedOut { after, .. } if x == 555 || x == 1_234 => {
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
                    error: ItemError::WorkerDied { death, .. },
                    ..
                }) => {
                    assert_eq!(*death, Death::Signal(6));
                }
                Err(Error::Task {
                    rank: 2,
                    error: ItemError::PoolFailed { cause, .. },
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
    let output = mpirun(name, &[&other], false);
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

/// A result whose encoding is written byte by byte (a tuple of `u8`s has no length prefix) and
/// which decodes as a `T`: how a node's worker hands the driver any bytes at all.
enum Crafted<T> {
    Bytes(Vec<u8>),
    Value(T),
}

impl<T> serde::Serialize for Crafted<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let Crafted::Bytes(bytes) = self else {
            return Err(serde::ser::Error::custom("only crafted bytes are sent"));
        };
        let mut tuple = serializer.serialize_tuple(bytes.len())?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Crafted<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Crafted::Value)
    }
}

/// A length prefix claiming 1 TiB (bincode's varint: 253, then a u64), and nothing after it.
fn lying_length() -> Vec<u8> {
    [&[253u8][..], &(1u64 << 40).to_le_bytes()].concat()
}

fn lying_string(_: u8) -> Crafted<String> {
    Crafted::Bytes(lying_length())
}

fn lying_bytes(_: u8) -> Crafted<serde_bytes::ByteBuf> {
    Crafted::Bytes(lying_length())
}

/// One level per link.
#[derive(serde::Deserialize)]
enum Chain {
    End,
    Link(#[allow(dead_code)] Box<Chain>),
}

/// The encoding of a chain `links` deep.
fn deep_chain(links: u16) -> Crafted<Chain> {
    let mut bytes = vec![1u8; usize::from(links)];
    bytes.push(0);
    Crafted::Bytes(bytes)
}

fn depth(chain: &Chain) -> usize {
    let (mut n, mut at) = (0, chain);
    while let Chain::Link(next) = at {
        n += 1;
        at = next;
    }
    n
}

/// The failure of the one item of a call whose result the driver could not decode.
fn decode_failure(outcome: Result<usize, Error>) -> String {
    match outcome {
        Err(Error::Task {
            error:
                ItemError::Codec {
                    index: 0,
                    stage: forkpool::CodecStage::DecodeResult,
                    message,
                    ..
                },
            ..
        }) => message,
        other => panic!("not a result the driver could not decode: {other:?}"),
    }
}

#[test]
fn a_result_with_a_lying_length_or_nested_20000_deep_fails_alone_on_the_driver() {
    let name = "a_result_with_a_lying_length_or_nested_20000_deep_fails_alone_on_the_driver";
    on_cluster(name, two_workers, |cluster| {
        // A length prefix of 1 TiB: an error, not an allocation that aborts rank 0.
        let message = decode_failure(cluster.map(lying_string, [0u8]).map(|v| v.len()));
        assert!(message.contains("end"), "{message}");
        decode_failure(cluster.map(lying_bytes, [0u8]).map(|v| v.len()));
        // 20,000 levels: an error (the codec's depth limit), not a stack overflow when the
        // value is dropped; a value within the limit arrives whole.
        let message = decode_failure(cluster.map(deep_chain, [20_000u16]).map(|v| v.len()));
        assert!(message.contains("nested deeper than"), "{message}");
        let within = forkpool::MAX_DEPTH as u16 - 1;
        let chains = cluster.map(deep_chain, [within, 3]).unwrap();
        let depths: Vec<usize> = chains
            .iter()
            .map(|c| match c {
                Crafted::Value(chain) => depth(chain),
                Crafted::Bytes(_) => unreachable!("decoded values only"),
            })
            .collect();
        assert_eq!(depths, [usize::from(within), 3]);
        // The nodes serve on.
        assert_eq!(cluster.map(|x: u8| x + 1, [1u8, 2]).unwrap(), [2, 3]);
    });
}

/// Stops its node (the rank process, its worker's parent) with `SIGSTOP` on rank 2 from item 5:
/// a node that stops answering.
fn stop_node_on_rank_2(x: u64) -> u64 {
    if x >= 5 && rank() == 2 {
        // SAFETY: kill(2) on this worker's parent, the node's rank process.
        unsafe { libc::kill(libc::getppid(), libc::SIGSTOP) };
    }
    x
}

/// Sleeps three times the node timeout of [`answering_within_a_second`].
fn sleep_three_seconds(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(3));
    x
}

fn answering_within_a_second() -> ClusterBuilder {
    two_workers().node_timeout(Duration::from_secs(1))
}

#[test]
fn a_node_that_stops_answering_fails_its_items_within_the_bound_and_the_rest_go_on() {
    let name = "a_node_that_stops_answering_fails_its_items_within_the_bound_and_the_rest_go_on";
    on_cluster_losing_a_node(name, answering_within_a_second, |cluster| {
        // An item longer than the bound is no hang: a node running it says it is alive.
        let slow = cluster.chunksize(1).map(sleep_three_seconds, [1u64, 2]);
        assert_eq!(slow.unwrap(), [1, 2]);
        // Rank 2 stops at item 5: its items fail within about the bound, rank 1's succeed.
        let started = std::time::Instant::now();
        let outcomes: Vec<Result<u64, Error>> = cluster
            .chunksize(1)
            .imap(stop_node_on_rank_2, 0..40u64)
            .collect();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(outcomes.len(), 40);
        let mut lost = 0;
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(v) => assert_eq!(*v, x),
                Err(Error::Task {
                    rank: 2,
                    error: ItemError::PoolFailed { index, cause },
                    ..
                }) => {
                    assert_eq!(*index, x);
                    assert!(cause.contains("did not answer within 1s"), "{cause}");
                    lost += 1;
                }
                Err(other) => panic!("item {x}: {other}"),
            }
        }
        assert!(lost > 0, "no item was lost with rank 2");
        // Later calls run on rank 1 alone.
        let ranks: Vec<i32> = cluster.chunksize(1).map(|_: u8| rank(), 0..20u8).unwrap();
        assert!(ranks.iter().all(|&r| r == 1), "{ranks:?}");
    });
}

#[test]
fn dropping_a_cluster_whose_node_stopped_returns_within_the_bound() {
    let name = "dropping_a_cluster_whose_node_stopped_returns_within_the_bound";
    if std::env::var_os(IN_RANK).is_some() {
        if let Some(cluster) = answering_within_a_second().init().expect("init") {
            assert_eq!(cluster.map(|x: u8| x, [1u8, 2]).unwrap(), [1, 2]);
            // Rank 2 (on this host, as every rank of the test) stops while idle: it will not
            // answer the shutdown.
            let pid = cluster.nodes()[1].pid;
            // SAFETY: kill(2) on rank 2's process, which serves this cluster.
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
            let started = std::time::Instant::now();
            drop(cluster);
            let took = started.elapsed();
            assert!(took < Duration::from_secs(10), "the drop took {took:?}");
            println!("forkpool-mpi-test passed: {name}");
        }
        return;
    }
    let Some(output) = mpirun(name, &[], false) else {
        return;
    };
    assert!(
        output.contains(&format!("forkpool-mpi-test passed: {name}")),
        "rank 0 did not finish {name}:\n{output}"
    );
}
