//! Soundness against results that would overflow the parent's stack, and against a pool or
//! process handle used from a forked child.

use forkpool::{CodecStage, Error, FnPool, ItemError, MAX_DEPTH, Pool, ReturnProcess};
use serde::{Deserialize, Serialize, Serializer};
use std::sync::mpsc;
use std::time::Duration;

/// An `Option` chain. Built, serialized and dropped without recursing, so a worker can send
/// any depth; deserialized by serde's derive, recursively, so the parent really decodes it
/// nested: two levels per node (the newtype and the `Option`).
#[derive(Deserialize)]
struct Node(Option<Box<Node>>);

impl Node {
    /// A chain of `links` links, built iteratively.
    fn chain(links: u32) -> Node {
        let mut node = Node(None);
        for _ in 0..links {
            node = Node(Some(Box::new(node)));
        }
        node
    }

    fn links(&self) -> u32 {
        let (mut n, mut at) = (0, self);
        while let Some(next) = &at.0 {
            n += 1;
            at = next;
        }
        n
    }
}

impl Serialize for Node {
    /// The bytes of the nested encoding, written flat: bincode writes `Some` as 1 and `None`
    /// as 0, a newtype as its content, and a tuple with no length.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let links = self.links() as usize;
        let mut tuple = s.serialize_tuple(links + 1)?;
        for _ in 0..links {
            tuple.serialize_element(&1u8)?;
        }
        tuple.serialize_element(&0u8)?;
        tuple.end()
    }
}

impl Drop for Node {
    /// Frees the chain iteratively (the derived drop would recurse once per link).
    fn drop(&mut self) {
        let mut next = self.0.take();
        while let Some(mut node) = next {
            next = node.0.take();
        }
    }
}

fn chain(links: u32) -> Node {
    Node::chain(links)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Runs `f` on a thread with a 256 KiB stack.
fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

/// Each outcome as its number of links, or its error.
fn lengths(outcomes: impl Iterator<Item = Result<Node, Error>>) -> Vec<Result<u32, Error>> {
    outcomes.map(|o| o.map(|node| node.links())).collect()
}

fn is_too_deep(outcome: &Result<u32, Error>) -> bool {
    match outcome {
        Err(Error::Task(ItemError::Codec { stage, message, .. })) => {
            *stage == CodecStage::DecodeResult
                && message.contains(&format!("nested deeper than {MAX_DEPTH} levels"))
        }
        _ => false,
    }
}

#[test]
fn a_result_nested_too_deep_fails_its_item_on_a_small_stack_and_the_pool_lives_on() {
    let pool = Pool::new(2).unwrap();
    let outcomes = on_small_stack(|| lengths(pool.chunksize(1).imap(chain, [3, 100_000, 4])));
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].as_ref().unwrap(), &3);
    assert!(is_too_deep(&outcomes[1]), "{:?}", outcomes[1]);
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().as_task().unwrap().index(),
        1
    );
    assert_eq!(outcomes[2].as_ref().unwrap(), &4);
    // The next call on the same pool works.
    assert_eq!(pool.map(square, [3u64, 4]).unwrap(), [9, 16]);
}

#[test]
fn a_result_at_the_depth_limit_decodes_and_one_level_more_fails() {
    // A chain of n links is 2(n + 1) levels.
    let at_limit = (MAX_DEPTH / 2 - 1) as u32;
    let pool = Pool::new(2).unwrap();
    let outcomes = on_small_stack(|| lengths(pool.imap(chain, [at_limit, at_limit + 1])));
    assert_eq!(outcomes[0].as_ref().unwrap(), &at_limit);
    assert!(is_too_deep(&outcomes[1]), "{:?}", outcomes[1]);
}

/// Runs `square` over 0..1000 on `pool` in a loop until `stop` says so, checking each result
/// and reporting each finished call on `done`.
fn busy_loop(pool: &Pool, done: mpsc::Sender<()>, stop: &std::sync::atomic::AtomicBool) {
    let expected: Vec<u64> = (0..1000u64).map(square).collect();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        assert_eq!(pool.map(square, 0..1000u64).unwrap(), expected);
        if done.send(()).is_err() {
            return;
        }
    }
}

#[test]
fn a_child_process_gets_foreign_process_from_its_parents_pool() {
    let pool = Pool::new(2).unwrap();
    let workers = pool.pids();
    let parent = std::process::id();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (done, finished) = mpsc::channel();
    std::thread::scope(|s| {
        let looping = s.spawn(|| busy_loop(&pool, done, &stop));
        finished.recv().unwrap(); // the loop runs: the fork below happens amid its calls
        let child = ReturnProcess::spawn(|| {
            let map = pool.map(square, [2u64]).map_err(|e| e.to_string());
            let join = pool.join().map_err(|e| e.to_string());
            let pids = pool.pids();
            pool.terminate(); // must leave the parent's workers alone
            pool.close();
            format!("map: {map:?}; join: {join:?}; pids: {pids:?}")
        })
        .unwrap();
        let report = child.join().unwrap();
        let foreign = format!("belongs to process {parent}, not to this process");
        assert!(report.starts_with("map: Err("), "{report}");
        assert_eq!(report.matches(&foreign).count(), 2, "{report}");
        assert!(report.ends_with("pids: []"), "{report}");
        // The parent's loop goes on: two more calls finish after the child is gone.
        finished.recv().unwrap();
        finished.recv().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Release);
        drop(finished);
        looping.join().unwrap();
    });
    assert_eq!(pool.pids(), workers, "the same workers serve the parent");
    assert_eq!(pool.map(square, [5u64]).unwrap(), [25]);
}

/// A child the program forks itself, with the C library's `fork` (not through forkpool), while
/// another thread keeps calling the pool: its every call is `ForeignProcess` at once (the pool
/// tells from a fork count, with no system call and no lock). 20 forks.
#[test]
fn a_child_forked_by_the_program_itself_gets_foreign_process_at_once() {
    let pool = Pool::new(2).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (done, finished) = mpsc::channel();
    std::thread::scope(|s| {
        let looping = s.spawn(|| busy_loop(&pool, done, &stop));
        finished.recv().unwrap();
        for round in 0..20 {
            // SAFETY: the child only calls the pool (which returns at once, taking no lock),
            // then `_exit`s; it never returns into the test harness.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let foreign = matches!(
                    pool.map(square, [2u64]),
                    Err(Error::Pool(forkpool::PoolError::ForeignProcess { .. }))
                ) && matches!(
                    pool.submit(square, 3u64).wait(),
                    Err(Error::Pool(forkpool::PoolError::ForeignProcess { .. }))
                );
                // SAFETY: ends the child at once, running nothing of the parent's.
                unsafe { libc::_exit(if foreign { 0 } else { 1 }) };
            }
            let mut status = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                // SAFETY: looks at the child just forked, into a live integer.
                let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if waited == pid {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: the child is ours and not reaped yet.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    panic!("round {round}: the child's call did not return within 10 s");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "round {round}: the child's calls were not ForeignProcess (status {status:#x})"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        drop(finished);
        looping.join().unwrap();
    });
    assert_eq!(pool.map(square, [5u64]).unwrap(), [25]);
}

#[test]
fn an_fn_pool_worker_gets_foreign_process_per_item() {
    let pool = Pool::new(2).unwrap();
    let workers = pool.pids();
    let parent = std::process::id();
    let borrowing = FnPool::new(2, |x: u64| match pool.map(square, [x]) {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => e.to_string(),
    })
    .unwrap();
    let outcomes = borrowing.map(0..4u64).unwrap();
    assert_eq!(outcomes.len(), 4);
    for outcome in &outcomes {
        assert!(
            outcome.contains(&format!("belongs to process {parent}")),
            "{outcome}"
        );
    }
    drop(borrowing);
    assert_eq!(pool.pids(), workers);
    assert_eq!(pool.map(square, 0..3u64).unwrap(), [0, 1, 4]);
}

#[test]
fn a_process_handle_in_another_child_gets_foreign_process_and_kills_nothing() {
    let parent = std::process::id();
    // The first child waits for a byte from the parent, so it is alive while the second
    // child tries to join and kill it.
    let (mut release, mut held) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut first = ReturnProcess::spawn(move || {
        let mut byte = [0u8];
        std::io::Read::read_exact(&mut held, &mut byte).unwrap();
        7u32
    })
    .unwrap();
    let second = ReturnProcess::spawn(|| {
        let join = first.join_timeout(Duration::from_secs(5));
        first.kill(); // must not kill the parent's child
        join.map_err(|e| e.to_string())
    })
    .unwrap();
    let report = second.join().unwrap();
    assert!(
        report
            .unwrap_err()
            .contains(&format!("belongs to process {parent}")),
    );
    std::io::Write::write_all(&mut release, &[1]).unwrap();
    assert_eq!(
        first.join_timeout(Duration::from_secs(60)).unwrap(),
        Some(7)
    );
}
