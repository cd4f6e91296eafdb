//! `Vec<u8>` and `String` beside `serde_bytes::ByteBuf` as items and results: the codec writes
//! and reads all three as one run of bytes, so the three rows of each case should match.
//!
//! - `return_process`: a [`forkpool::ReturnProcess`] whose closure returns 64 MiB.
//! - `echo`: 64 buffers of 1 MiB to a 2-worker pool and back (`map`, chunksize 1).
//!
//! Each round runs every case once, in turn, so a change in the machine's load hits them all;
//! the medians over the rounds are printed: wall time, and the CPU time of this process and of
//! the children it reaped (a `ReturnProcess`'s child; the pool's workers live on). Run it with
//! `cargo bench -p forkpool-bench --bench byte_vectors` (`-- 15` for 15 rounds; 7 by default).

use forkpool::{Pool, ReturnProcess};
use serde_bytes::ByteBuf;
use std::time::Instant;

mod stats;
use stats::median;

const MIB: usize = 1 << 20;

/// The size of a `ReturnProcess`'s value.
const RETURNED: usize = 64 * MIB;

/// Buffers per `echo` call, each of 1 MiB.
const BUFFERS: usize = 64;

fn echo_vec(b: Vec<u8>) -> Vec<u8> {
    b
}

fn echo_buf(b: ByteBuf) -> ByteBuf {
    b
}

fn echo_string(s: String) -> String {
    s
}

/// CPU time (user and system) of `who` so far, in ms.
fn cpu_ms(who: libc::c_int) -> f64 {
    // SAFETY: `getrusage` writes a `rusage` it is given; all zeroes is a valid one.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(who, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 * 1e-3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The cases, in the order each round runs them.
const CASES: [&str; 6] = [
    "return_process Vec<u8>",
    "return_process ByteBuf",
    "return_process String",
    "echo Vec<u8>",
    "echo ByteBuf",
    "echo String",
];

/// Runs case `k` once; the echo's buffers are made before the clock starts. Returns the wall
/// time and the CPU time of this process and of the children it reaped, in ms.
fn run(k: usize, pool: &Pool) -> [f64; 3] {
    let vecs: Vec<Vec<u8>> = (0..BUFFERS).map(|_| vec![7u8; MIB]).collect();
    let bufs: Vec<ByteBuf> = vecs.iter().cloned().map(ByteBuf::from).collect();
    let strings: Vec<String> = (0..BUFFERS).map(|_| "s".repeat(MIB)).collect();
    let own = cpu_ms(libc::RUSAGE_SELF);
    let children = cpu_ms(libc::RUSAGE_CHILDREN);
    let start = Instant::now();
    let lengths: Vec<usize> = match k {
        0 => vec![
            ReturnProcess::spawn(|| vec![7u8; RETURNED])
                .unwrap()
                .join()
                .unwrap()
                .len(),
        ],
        1 => {
            let p = ReturnProcess::spawn(|| ByteBuf::from(vec![7u8; RETURNED])).unwrap();
            vec![p.join().unwrap().len()]
        }
        2 => vec![
            ReturnProcess::spawn(|| "s".repeat(RETURNED))
                .unwrap()
                .join()
                .unwrap()
                .len(),
        ],
        3 => pool
            .chunksize(1)
            .map(echo_vec, vecs)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect(),
        4 => pool
            .chunksize(1)
            .map(echo_buf, bufs)
            .unwrap()
            .iter()
            .map(|b| b.len())
            .collect(),
        _ => pool
            .chunksize(1)
            .map(echo_string, strings)
            .unwrap()
            .iter()
            .map(String::len)
            .collect(),
    };
    let times = [
        start.elapsed().as_secs_f64() * 1e3,
        cpu_ms(libc::RUSAGE_SELF) - own,
        cpu_ms(libc::RUSAGE_CHILDREN) - children,
    ];
    let expected = if k < 3 {
        vec![RETURNED]
    } else {
        vec![MIB; BUFFERS]
    };
    assert_eq!(lengths, expected, "{}", CASES[k]);
    times
}

fn main() {
    // `cargo bench` passes `--bench`: the round count is the first number among the arguments.
    let rounds = std::env::args()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(7);
    let pool = Pool::new(2).unwrap();
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; CASES.len()];
    for _ in 0..rounds {
        for (k, seen) in times.iter_mut().enumerate() {
            for (all, one) in seen.iter_mut().zip(run(k, &pool)) {
                all.push(one);
            }
        }
    }
    println!("medians of {rounds} rounds (ms; GB/s of the 64 MiB each case moves one way)");
    for (name, [wall, own, children]) in CASES.iter().zip(times) {
        let wall = median(wall);
        println!(
            "{name:<24} wall {wall:8.1}  {:5.2} GB/s  cpu: own {:7.1}, reaped children {:7.1}",
            (64 * MIB) as f64 / wall / 1e6,
            median(own),
            median(children),
        );
    }
}
