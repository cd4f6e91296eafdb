//! An item whose decoding kills its worker costs that item only, never the parent: the parent
//! splits the dead worker's chunk at item boundaries it recorded while encoding, and runs no
//! `Deserialize` of an item (CPython's `test_crash_at_task_unpickle` and
//! `test_exit_at_task_unpickle`, ported).

mod common;

use forkpool::{Death, ItemError, Pool};
use serde::{Deserialize, Deserializer, Serialize};

/// Decoding it segfaults (wherever that happens).
#[derive(Serialize)]
struct SegfaultOnDecode;

impl<'de> Deserialize<'de> for SegfaultOnDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        common::segfault();
        unreachable!("the write to address 0 faults")
    }
}

/// Decoding it ends the process with exit code 3 (wherever that happens).
#[derive(Serialize)]
struct ExitOnDecode;

impl<'de> Deserialize<'de> for ExitOnDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        // SAFETY: _exit ends the process at once; nothing of it is used after.
        unsafe { libc::_exit(3) }
    }
}

#[derive(Serialize, Deserialize)]
enum Job {
    Value(u64),
    Segfault(SegfaultOnDecode),
    Exit(ExitOnDecode),
}

fn run(job: Job) -> u64 {
    match job {
        Job::Value(x) => x * 10,
        Job::Segfault(_) | Job::Exit(_) => unreachable!("decoding it killed the worker"),
    }
}

/// Runs 12 items in chunks of 4, the one at `killer` being `job`; checks that only it fails,
/// with `death`, and every other item gets its value.
fn only_the_killer_fails(job: fn() -> Job, killer: u64, death: Death) {
    let pool = Pool::new(2).unwrap();
    for _round in 0..5 {
        let items = (0..12u64).map(|x| if x == killer { job() } else { Job::Value(x) });
        let outcomes: Vec<_> = pool.chunksize(4).imap(run, items).collect();
        assert_eq!(outcomes.len(), 12);
        for (x, outcome) in (0..12u64).zip(outcomes) {
            if x != killer {
                assert_eq!(outcome.unwrap(), x * 10, "item {x}");
                continue;
            }
            match outcome.unwrap_err().as_task() {
                Some(ItemError::WorkerDied {
                    index, death: d, ..
                }) => {
                    assert_eq!((*index, *d), (killer, death));
                }
                other => panic!("item {x}: {other:?}"),
            }
        }
    }
}

#[test]
fn an_item_whose_decoding_segfaults_fails_alone_and_the_parent_lives() {
    only_the_killer_fails(
        || Job::Segfault(SegfaultOnDecode),
        5,
        Death::Signal(libc::SIGSEGV),
    );
}

#[test]
fn an_item_whose_decoding_exits_fails_alone_and_the_parent_lives() {
    only_the_killer_fails(|| Job::Exit(ExitOnDecode), 6, Death::Exit(3));
}

#[test]
fn every_item_of_a_chunk_whose_decoding_kills_fails_alone() {
    // Two killers in one chunk, one of them its first item: each split leaves the other.
    let pool = Pool::new(2).unwrap();
    let items = (0..8u64).map(|x| match x {
        4 => Job::Exit(ExitOnDecode),
        6 => Job::Segfault(SegfaultOnDecode),
        x => Job::Value(x),
    });
    let outcomes: Vec<_> = pool.chunksize(4).imap(run, items).collect();
    for (x, outcome) in (0..8u64).zip(outcomes) {
        match (x, outcome) {
            (4 | 6, Err(error)) => {
                let Some(ItemError::WorkerDied { index, death, .. }) = error.as_task() else {
                    panic!("item {x}: {error}");
                };
                let expected = if x == 4 {
                    Death::Exit(3)
                } else {
                    Death::Signal(libc::SIGSEGV)
                };
                assert_eq!((*index, *death), (x, expected));
            }
            (x, outcome) => assert_eq!(outcome.unwrap(), x * 10, "item {x}"),
        }
    }
}
