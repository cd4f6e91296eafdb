//! `ReturnProcess`: one closure in one child, its value on join.

mod common;

use forkpool::{Death, Error, ItemError, PoolError, ProcessError, ReturnProcess};
use std::time::Duration;

/// A child whose closure never returns.
fn never_finishes() -> ReturnProcess<u32> {
    ReturnProcess::spawn(|| -> u32 {
        loop {
            std::thread::park();
        }
    })
    .unwrap()
}

#[test]
fn returns_the_value_of_a_closure_that_borrows() {
    let numbers: Vec<u64> = (1..=100).collect();
    let p = ReturnProcess::spawn(|| numbers.iter().sum::<u64>()).unwrap();
    assert_ne!(p.pid(), std::process::id());
    assert_eq!(p.join().unwrap(), 5050);
}

#[test]
fn a_panic_is_an_error_with_its_message() {
    let p = ReturnProcess::spawn(|| -> u32 { panic!("the child gave up") }).unwrap();
    let pid = p.pid();
    let err = p.join().unwrap_err();
    match &err {
        Error::Process(ProcessError {
            cause:
                ItemError::Panicked {
                    message,
                    location,
                    pid: reported,
                    ..
                },
            ..
        }) => {
            assert_eq!(message, "the child gave up");
            assert!(location.as_deref().unwrap().contains("process.rs"));
            assert_eq!(*reported, pid);
        }
        other => panic!("unexpected {other}"),
    }
    // It speaks of a process, not of an item in a worker.
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("the process {pid} panicked at ")),
        "{text}"
    );
    assert!(text.ends_with(": the child gave up"), "{text}");
    assert!(!text.contains("item") && !text.contains("worker"), "{text}");
}

#[test]
fn a_child_killed_by_sigkill_is_an_error_naming_the_signal() {
    let mut p = never_finishes();
    // Killed from outside, as an OOM killer would.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) }, 0);
    let err = p.join_timeout(Duration::from_secs(60)).unwrap_err();
    match &err {
        Error::Process(e) => {
            assert!(
                matches!(e.cause, ItemError::WorkerDied { death, .. } if death == Death::Signal(libc::SIGKILL))
            );
            assert_eq!(e.pid(), p.pid());
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the process {} died before sending its value: ",
            p.pid()
        )),
        "{text}"
    );
    assert!(text.contains("SIGKILL"), "{text}");
    assert!(matches!(
        p.join_timeout(Duration::from_secs(1)),
        Err(Error::Pool(PoolError::AlreadyJoined))
    ));
}

#[test]
fn join_timeout_leaves_a_slow_child_running_until_killed() {
    let mut p = never_finishes();
    // "Not yet" is no error: the child runs on.
    assert_eq!(p.join_timeout(Duration::from_millis(20)).unwrap(), None);
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    // Still alive: signal 0 probes the process.
    // SAFETY: kill(2) with signal 0 sends nothing.
    assert_eq!(unsafe { libc::kill(p.pid() as i32, 0) }, 0);
    p.kill();
    match p.join().unwrap_err().as_task() {
        Some(ItemError::WorkerDied { death, .. }) => {
            assert_eq!(death.signal_name(), Some("SIGKILL"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_64_mib_result_comes_back_intact() {
    const LEN: usize = 64 << 20;
    let p = ReturnProcess::spawn(|| {
        let bytes: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        serde_bytes::ByteBuf::from(bytes)
    })
    .unwrap();
    let got = p.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

#[test]
fn dropping_an_unjoined_process_kills_and_reaps_it() {
    let p = never_finishes();
    let pid = p.pid() as i32;
    drop(p);
    // SAFETY: kill(2) with signal 0 sends nothing; ESRCH means no such process (not even a
    // zombie).
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ESRCH)
    );
}

/// Waits (bounded) until the child `pid` has been reaped by its waiter thread.
fn until_reaped(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !common::is_reaped(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} never ended"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_zero_timeout_join_returns_the_value_of_a_finished_child() {
    for _ in 0..10 {
        let mut p = ReturnProcess::spawn(|| 7u32).unwrap();
        until_reaped(p.pid());
        assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), Some(7));
        let p = ReturnProcess::spawn(|| vec![9u8; 1000]).unwrap();
        until_reaped(p.pid());
        assert_eq!(p.join_or_kill(Duration::ZERO).unwrap().len(), 1000);
    }
}

#[test]
fn join_timeout_says_the_child_still_runs_and_a_later_join_gets_the_value() {
    let mut p = ReturnProcess::spawn(|| {
        std::thread::sleep(Duration::from_secs(1));
        5u8
    })
    .unwrap();
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert!(!common::is_reaped(p.pid()));
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(5));
    // Taken: a further call is an error, not "not yet".
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::Pool(PoolError::AlreadyJoined))
    ));
}

/// A value whose `Serialize` refuses it.
#[derive(Debug, serde::Deserialize)]
struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Refuses refuses to serialize"))
    }
}

#[test]
fn a_value_that_cannot_be_encoded_is_the_processs_codec_error_in_its_own_words() {
    let p = ReturnProcess::spawn(|| Refuses).unwrap();
    let pid = p.pid();
    let err = p.join().unwrap_err();
    match &err {
        Error::Process(ProcessError {
            cause:
                ItemError::Codec {
                    stage: forkpool::CodecStage::EncodeResult,
                    message,
                    ..
                },
            ..
        }) => assert_eq!(message, "Refuses refuses to serialize"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("the process {pid} could not encode its value: Refuses refuses to serialize")
    );
}

/// Skips `note` when it is `None`: bincode then cannot decode it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Skipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<u32>,
    name: String,
}

#[test]
fn a_value_that_cannot_be_decoded_names_skip_serializing_if() {
    let p = ReturnProcess::spawn(|| Skipping {
        note: None,
        name: "seven".into(),
    })
    .unwrap();
    let pid = p.pid();
    let err = p.join().unwrap_err();
    assert!(
        matches!(
            err.as_task(),
            Some(ItemError::Codec {
                stage: forkpool::CodecStage::DecodeResult,
                ..
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the value of the process {pid} could not be decoded in the parent: "
        )),
        "{text}"
    );
    assert!(text.contains("skip_serializing_if"), "{text}");
    assert!(
        !text.contains("item 0") && !text.contains("worker"),
        "{text}"
    );
    // With the field present the value comes back: only a skipped field breaks decoding.
    let present = Skipping {
        note: Some(7),
        name: "seven".into(),
    };
    let p = ReturnProcess::spawn(|| Skipping {
        note: Some(7),
        name: "seven".into(),
    })
    .unwrap();
    assert_eq!(p.join().unwrap(), present);
}
