//! The comparison harness: the same workloads, in one run, on forkpool, Python's
//! `multiprocessing.Pool` (fork context) and `ProcessPoolExecutor` (through `python3`, skipped
//! with a note when it is missing), procspawn's pool, rayon and a serial loop. Prints one
//! markdown table: each system's median of 5 runs, and forkpool's advantage over each
//! (`×2.0` means forkpool is twice as good; below 1 it is behind).
//!
//! ```text
//! cargo run --release --example compare
//! ```
//!
//! Workloads: (a) 1,000,000 small integers through a trivial function, default chunksize;
//! (b) 100,000 small integers, chunksize 1; (c) primality of 10,000 odd numbers near 10^12;
//! (d) create and tear down a 2-worker pool; (e) 1 MiB byte buffers in, length out, and echoed
//! back; (f) spawn + join of one process running a trivial closure; (g) `imap` over 10,000,000
//! items: peak resident memory of the parent above its baseline. Systems without a
//! counterpart of a workload show `n/a`; peers too slow for the full input run a smaller one
//! and are reported per item (noted in the table).

#[path = "shared/primality.rs"]
mod primality;
use primality::is_prime;

use forkpool::{Pool, ReturnProcess};
use rayon::prelude::*;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 5;
const WORKERS: usize = 2;
const A_ITEMS: u64 = 1_000_000;
const B_ITEMS: u64 = 100_000;
const C_ITEMS: u64 = 10_000;
const E_BUFFERS: usize = 64;
const G_ITEMS: u64 = 10_000_000;
/// procspawn runs one process call per item (it has no map): (b) runs this many items.
const PROCSPAWN_ITEMS: u64 = 5_000;
/// procspawn calls kept pending at once (each holds open channels).
const PROCSPAWN_BATCH: usize = 256;
/// ProcessPoolExecutor's default chunksize is 1: (a) and (b) run this many items.
const PPE_ITEMS: u64 = 20_000;
const START: u64 = 1_000_000_000_001;
const MIB: usize = 1 << 20;

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn length(b: ByteBuf) -> usize {
    b.len()
}

fn echo(b: ByteBuf) -> ByteBuf {
    b
}

fn numbers() -> Vec<u64> {
    (0..C_ITEMS).map(|i| START + 2 * i).collect()
}

fn buffers() -> Vec<ByteBuf> {
    (0..E_BUFFERS)
        .map(|_| ByteBuf::from(vec![7u8; MIB]))
        .collect()
}

/// `RUNS` fresh sets of buffers, made before any timing starts (`map` consumes its input; the
/// Python side passes references to one buffer, so making them is no part of the work).
fn buffer_sets() -> Vec<Vec<ByteBuf>> {
    (0..RUNS).map(|_| buffers()).collect()
}

/// Median wall time of `RUNS` runs of `f`, in seconds.
fn median_seconds(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

/// Peak resident memory of this process while `f` runs, above what it held before (Linux:
/// resets the high-water mark through /proc/self/clear_refs).
fn peak_rss_above_baseline(f: impl FnOnce()) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    };
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = field("VmRSS:")?;
    f();
    Some(field("VmHWM:")? - base)
}

/// One cell: a figure in the row's unit, and a note.
#[derive(Clone)]
struct Cell {
    value: f64,
    note: &'static str,
}

/// One workload's row.
struct Row {
    name: &'static str,
    unit: &'static str,
    /// Whether a larger figure is better (a rate) or a smaller one (a time, a size).
    higher_is_better: bool,
    cells: BTreeMap<&'static str, Cell>,
}

const SYSTEMS: [&str; 6] = [
    "forkpool",
    "Python Pool",
    "Python ProcessPoolExecutor",
    "procspawn Pool",
    "rayon",
    "serial",
];

impl Row {
    fn new(name: &'static str, unit: &'static str, higher_is_better: bool) -> Row {
        Row {
            name,
            unit,
            higher_is_better,
            cells: BTreeMap::new(),
        }
    }

    fn set(&mut self, system: &'static str, value: f64) {
        self.cells.insert(system, Cell { value, note: "" });
    }

    fn set_noted(&mut self, system: &'static str, value: f64, note: &'static str) {
        self.cells.insert(system, Cell { value, note });
    }
}

/// A workload: its row's name, unit, whether higher is better, and the code that fills it.
type Workload = (&'static str, &'static str, bool, fn(&mut Row));

/// The workloads, in table order.
const WORKLOADS: [Workload; 8] = [
    (
        "(a) 1M ints, trivial fn, default chunksize",
        "M items/s",
        true,
        row_a,
    ),
    ("(b) 100k ints, chunksize 1", "µs/item", false, row_b),
    (
        "(c) primality of 10,000 numbers near 10^12",
        "s",
        false,
        row_c,
    ),
    ("(d) create + tear down a 2-worker pool", "ms", false, row_d),
    ("(e) 1 MiB buffers in, length out", "GB/s", true, row_e_in),
    ("(e) 1 MiB buffers echoed back", "GB/s", true, row_e_echo),
    (
        "(f) spawn + join one process, trivial closure",
        "ms",
        false,
        row_f,
    ),
    (
        "(g) imap over 10M items: parent peak RSS",
        "MB",
        false,
        row_g,
    ),
];

fn main() {
    procspawn::init();
    // `compare --workload N`: run workload N in this process and print its cells.
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, n] = args.as_slice() {
        if flag == "--workload" {
            let (name, unit, higher, run) = WORKLOADS[n.parse::<usize>().expect("workload number")];
            let mut row = Row::new(name, unit, higher);
            run(&mut row);
            for (system, cell) in &row.cells {
                println!("{system}\t{}\t{}", cell.value, cell.note);
            }
            return;
        }
    }
    // Each workload runs in a fresh process: a fork costs more the more memory the parent has
    // mapped, so a workload must not pay for the ones before it.
    let mut rows = Vec::new();
    for (n, (name, unit, higher, _)) in WORKLOADS.into_iter().enumerate() {
        let t = Instant::now();
        let mut row = Row::new(name, unit, higher);
        let out = Command::new(std::env::current_exe().expect("own path"))
            .args(["--workload", &n.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run a workload");
        assert!(out.status.success(), "workload {} failed", row.name);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split('\t');
            let (Some(system), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some(system) = SYSTEMS.iter().find(|s| **s == system) else {
                continue;
            };
            let note_field = fields.next();
            let note = NOTES
                .iter()
                .find(|note| Some(**note) == note_field)
                .copied()
                .unwrap_or("");
            row.set_noted(system, value.parse().expect("a figure"), note);
        }
        eprintln!(
            "{} measured in {:.1} s",
            row.name,
            t.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    let python = python_figures();
    match &python {
        Ok(json) => merge_python(&mut rows, json),
        Err(why) => eprintln!("note: Python peers skipped: {why}"),
    }
    print_table(&rows);
}

/// The notes a cell may carry (so cells read back from a workload process keep `'static` text).
const NOTES: [&str; 4] = [
    "5,000 items, one spawn each",
    "with_max_len(1)",
    "one call at a time",
    "procspawn::spawn",
];

fn row_a(row: &mut Row) {
    let rate = |secs: f64, n: u64| n as f64 / secs / 1e6;
    let pool = Pool::new(WORKERS).unwrap();
    let s = median_seconds(|| {
        let v = pool.map(inc, 0..A_ITEMS).unwrap();
        assert_eq!(v.len() as u64, A_ITEMS);
    });
    row.set("forkpool", rate(s, A_ITEMS));
    let s = median_seconds(|| {
        let v: Vec<u64> = (0..A_ITEMS).into_par_iter().map(inc).collect();
        assert_eq!(v.len() as u64, A_ITEMS);
    });
    row.set("rayon", rate(s, A_ITEMS));
    let s = median_seconds(|| {
        let v: Vec<u64> = (0..A_ITEMS).map(|x| std::hint::black_box(inc(x))).collect();
        assert_eq!(v.len() as u64, A_ITEMS);
    });
    row.set("serial", rate(s, A_ITEMS));
    // Without a length: the adaptive chunker.
    let s = median_seconds(|| {
        let n = pool
            .imap(inc, (0..A_ITEMS).filter(|_| true))
            .map(Result::unwrap)
            .count();
        assert_eq!(n as u64, A_ITEMS);
    });
    eprintln!(
        "(a) forkpool without a length (adaptive chunks): {:.1} M items/s",
        rate(s, A_ITEMS)
    );
    let s = median_seconds(|| {
        let v = pool.chunksize(1000).map(inc, 0..A_ITEMS).unwrap();
        assert_eq!(v.len() as u64, A_ITEMS);
    });
    eprintln!(
        "(a) forkpool chunksize 1000: {:.1} M items/s",
        rate(s, A_ITEMS)
    );
}

fn procspawn_inc(x: u64) -> u64 {
    inc(x)
}

fn row_b(row: &mut Row) {
    let per_item = |secs: f64, n: u64| secs / n as f64 * 1e6;
    let pool = Pool::new(WORKERS).unwrap();
    let s = median_seconds(|| {
        let v = pool.chunksize(1).map(inc, 0..B_ITEMS).unwrap();
        assert_eq!(v.len() as u64, B_ITEMS);
    });
    row.set("forkpool", per_item(s, B_ITEMS));
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let s = median_seconds(|| {
        // In batches: each pending spawn holds open channels.
        for batch in (0..PROCSPAWN_ITEMS)
            .collect::<Vec<_>>()
            .chunks(PROCSPAWN_BATCH)
        {
            let handles: Vec<_> = batch.iter().map(|x| ps.spawn(*x, procspawn_inc)).collect();
            for h in handles {
                h.join().unwrap();
            }
        }
    });
    row.set_noted(
        "procspawn Pool",
        per_item(s, PROCSPAWN_ITEMS),
        "5,000 items, one spawn each",
    );
    ps.shutdown();
    let s = median_seconds(|| {
        let v: Vec<u64> = (0..B_ITEMS as usize)
            .into_par_iter()
            .with_max_len(1)
            .map(|x| inc(x as u64))
            .collect();
        assert_eq!(v.len() as u64, B_ITEMS);
    });
    row.set_noted("rayon", per_item(s, B_ITEMS), "with_max_len(1)");
}

fn procspawn_is_prime(n: u64) -> bool {
    is_prime(n)
}

fn row_c(row: &mut Row) {
    let numbers = numbers();
    let serial = median_seconds(|| {
        let n = numbers.iter().filter(|n| is_prime(**n)).count();
        assert!(n > 0);
    });
    row.set("serial", serial);
    let pool = Pool::new(WORKERS).unwrap();
    let s = median_seconds(|| {
        let v = pool.map(is_prime, numbers.iter().copied()).unwrap();
        assert_eq!(v.len(), numbers.len());
    });
    row.set("forkpool", s);
    eprintln!("(c) forkpool speedup over serial: {:.2}×", serial / s);
    let s = median_seconds(|| {
        let v: Vec<bool> = numbers.par_iter().map(|n| is_prime(*n)).collect();
        assert_eq!(v.len(), numbers.len());
    });
    row.set("rayon", s);
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let s = median_seconds(|| {
        for batch in numbers.chunks(PROCSPAWN_BATCH) {
            let handles: Vec<_> = batch
                .iter()
                .map(|n| ps.spawn(*n, procspawn_is_prime))
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
    });
    row.set("procspawn Pool", s);
    ps.shutdown();
}

fn row_d(row: &mut Row) {
    let ms = |secs: f64| secs * 1e3;
    row.set(
        "forkpool",
        ms(median_seconds(|| drop(Pool::new(WORKERS).unwrap()))),
    );
    row.set(
        "procspawn Pool",
        ms(median_seconds(|| {
            let p = procspawn::Pool::new(WORKERS).unwrap();
            p.shutdown();
        })),
    );
    row.set(
        "rayon",
        ms(median_seconds(|| {
            drop(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(WORKERS)
                    .build()
                    .unwrap(),
            )
        })),
    );
}

fn procspawn_length(b: ByteBuf) -> usize {
    b.len()
}

fn procspawn_echo(b: ByteBuf) -> ByteBuf {
    b
}

fn row_e_in(row: &mut Row) {
    let gbps = |secs: f64, bytes: usize| bytes as f64 / secs / 1e9;
    let bytes = E_BUFFERS * MIB;
    let pool = Pool::new(WORKERS).unwrap();
    let mut sets = buffer_sets();
    let s = median_seconds(|| {
        let v = pool.chunksize(1).map(length, sets.pop().unwrap()).unwrap();
        assert!(v.iter().all(|n| *n == MIB));
    });
    row.set("forkpool", gbps(s, bytes));
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let mut sets = buffer_sets();
    let s = median_seconds(|| {
        // One call at a time: with several 1 MiB calls pending, procspawn's pool blocks
        // forever in a send (seen while writing this harness).
        for b in sets.pop().unwrap() {
            assert_eq!(ps.spawn(b, procspawn_length).join().unwrap(), MIB);
        }
    });
    row.set_noted("procspawn Pool", gbps(s, bytes), "one call at a time");
    ps.shutdown();
}

fn row_e_echo(row: &mut Row) {
    let gbps = |secs: f64, bytes: usize| bytes as f64 / secs / 1e9;
    let bytes = E_BUFFERS * MIB;
    let pool = Pool::new(WORKERS).unwrap();
    let mut sets = buffer_sets();
    let s = median_seconds(|| {
        let v = pool.chunksize(1).map(echo, sets.pop().unwrap()).unwrap();
        assert!(v.iter().all(|b| b.len() == MIB));
    });
    row.set("forkpool", gbps(s, bytes));
    let ps = procspawn::Pool::new(WORKERS).unwrap();
    let mut sets = buffer_sets();
    let s = median_seconds(|| {
        for b in sets.pop().unwrap() {
            assert_eq!(ps.spawn(b, procspawn_echo).join().unwrap().len(), MIB);
        }
    });
    row.set_noted("procspawn Pool", gbps(s, bytes), "one call at a time");
    ps.shutdown();
}

fn procspawn_one(_: ()) -> u8 {
    1
}

fn row_f(row: &mut Row) {
    let ms = |secs: f64| secs * 1e3;
    row.set(
        "forkpool",
        ms(median_seconds(|| {
            assert_eq!(ReturnProcess::spawn(|| 1u8).unwrap().join().unwrap(), 1)
        })),
    );
    row.set(
        "procspawn Pool",
        ms(median_seconds(|| {
            assert_eq!(procspawn::spawn((), procspawn_one).join().unwrap(), 1)
        })),
    );
    row.cells.get_mut("procspawn Pool").unwrap().note = "procspawn::spawn";
}

fn row_g(row: &mut Row) {
    let pool = Pool::new(WORKERS).unwrap();
    if let Some(bytes) = peak_rss_above_baseline(|| {
        let n = pool.imap(inc, 0..G_ITEMS).map(Result::unwrap).count();
        assert_eq!(n as u64, G_ITEMS);
    }) {
        row.set("forkpool", bytes / 1e6);
    }
}

/// Runs `examples/compare_peers.py` with the item counts; its JSON output.
fn python_figures() -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/compare_peers.py");
    let counts = format!(
        r#"{{"a":{A_ITEMS},"b":{B_ITEMS},"c":{C_ITEMS},"e":{E_BUFFERS},"g":{G_ITEMS},"ppe":{PPE_ITEMS}}}"#
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(counts)
        .output()
        .map_err(|e| format!("python3 could not be run ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `"key":` inside the object that follows `"section":` (the script's JSON is
/// flat enough for this; no JSON crate needed).
fn json_number(json: &str, section: &str, key: &str) -> Option<f64> {
    let start = json.find(&format!("\"{section}\""))?;
    let body = &json[start..];
    let body = &body[..body.find('}')?];
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = body[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn merge_python(rows: &mut [Row], json: &str) {
    let systems = [
        ("python_pool", "Python Pool"),
        ("process_pool_executor", "Python ProcessPoolExecutor"),
    ];
    for (section, system) in systems {
        let get = |key: &str| json_number(json, section, key);
        let ppe = section == "process_pool_executor";
        for row in rows.iter_mut() {
            let tag = &row.name[..3];
            let value = match (tag, row.name.contains("echoed")) {
                ("(a)", _) => get("a").map(|s| {
                    let n = if ppe { PPE_ITEMS } else { A_ITEMS };
                    n as f64 / s / 1e6
                }),
                ("(b)", _) => get("b").map(|s| {
                    let n = if ppe { PPE_ITEMS } else { B_ITEMS };
                    s / n as f64 * 1e6
                }),
                ("(c)", _) => get("c"),
                ("(d)", _) => get("d").map(|s| s * 1e3),
                ("(e)", false) => get("e_in").map(|s| (E_BUFFERS * MIB) as f64 / s / 1e9),
                ("(e)", true) => get("e_echo").map(|s| (E_BUFFERS * MIB) as f64 / s / 1e9),
                ("(g)", _) => get("g").map(|b| b / 1e6),
                _ => None,
            };
            if let Some(value) = value {
                let note = match (tag, ppe) {
                    ("(a)", true) | ("(b)", true) => "20,000 items, default chunksize 1",
                    ("(g)", false) => "imap chunksize 10,000",
                    _ => "",
                };
                row.set_noted(system, value, note);
            }
        }
    }
}

fn print_table(rows: &[Row]) {
    println!("| workload | unit | {} |", SYSTEMS.join(" | "));
    println!("|{}", " --- |".repeat(SYSTEMS.len() + 2));
    for row in rows {
        let ours = row.cells.get("forkpool").map(|c| c.value);
        let cells: Vec<String> = SYSTEMS
            .iter()
            .map(|system| match row.cells.get(system) {
                None => "n/a".to_string(),
                Some(cell) => {
                    let mut text = format_figure(cell.value);
                    if *system != "forkpool" {
                        if let Some(ours) = ours {
                            let advantage = if row.higher_is_better {
                                ours / cell.value
                            } else {
                                cell.value / ours
                            };
                            text.push_str(&format!(" (×{advantage:.2})"));
                        }
                    }
                    if !cell.note.is_empty() {
                        text.push_str(&format!(" [{}]", cell.note));
                    }
                    text
                }
            })
            .collect();
        println!("| {} | {} | {} |", row.name, row.unit, cells.join(" | "));
    }
}

fn format_figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
