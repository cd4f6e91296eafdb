use forkpool::{Death, Error, Pool, TaskError};

#[test]
fn smoke() {
    let pool = Pool::new(2).unwrap();
    let v: Vec<u64> = pool.map(|x: u64| x * x, 0..1000u64).unwrap();
    assert_eq!(v, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let outcomes: Vec<Result<u64, Error>> = pool
        .chunksize(10)
        .imap(
            |x: u64| {
                if x == 55 {
                    unsafe { libc::raise(libc::SIGSEGV) };
                }
                if x == 77 {
                    panic!("seventy-seven");
                }
                x
            },
            0..200u64,
        )
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(Error::Task(TaskError::WorkerDied { index, death, .. })) => {
                assert!((50..60).contains(index), "{index}");
                assert_eq!(*death, Death::Signal(11));
            }
            Err(Error::Task(TaskError::Panicked { index, message, .. })) => {
                assert_eq!(*index, 77);
                assert_eq!(message, "seventy-seven");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pool.pids().len(), 2);
}
