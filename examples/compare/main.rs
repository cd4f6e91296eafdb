//! The comparison harness: the same workloads, side by side in one run, on forkpool and its
//! peers: Python's `multiprocessing.Pool` (fork and forkserver start methods),
//! `concurrent.futures.ProcessPoolExecutor`, mpire, pebble and loky (through `python3`, pinned
//! versions installed into a virtual environment the harness makes on first run; a peer that
//! cannot be installed or imported shows `n/a` with a note), procspawn's pool, rayon and a
//! serial loop. Prints one markdown table; in brackets, forkpool's advantage over each peer
//! (`×2.0` means forkpool is twice as good; below 1 it is behind).
//!
//! ```text
//! cargo run --release -p forkpool-bench --example compare                # one repeat, about 5 min
//! cargo run --release -p forkpool-bench --example compare -- --repeat 3  # median (min–max) of 3
//! cargo run --release -p forkpool-bench --example compare -- --quick     # small inputs: smoke run
//! cargo run --release -p forkpool-bench --example compare -- --only s    # the word counts, 8 min
//! ```
//!
//! Flags: `--repeat N` repeats the whole run N times (every row, every system, in the same
//! order each time) and prints each cell as the median of the N repeats with their min–max;
//! `--quick` shrinks every input and runs each cell once; `--heap-mib N` sets the parent's
//! heap for row (h) (default 1024); `--curve-1000` adds n = 1,000 to the `Pool::new(n)`
//! curve; `--only a,e,k` runs the rows whose key starts with one of those (the keys: `a`, `b`,
//! `c`, `d`, `e_in`, `e_echo`, `f`, `g`, `h`, `i`, `j`, `k2`, `k16`, ... for the curve, `l`,
//! `m`, `n_med`, `n_max`, `o`, `p`, `s_doc_imap`, `s_doc_fold`, `s_doc_mr`, `s_doc_key`, `s_man_imap`, ...,
//! `t_vec`, `t_map`); the rows (s) run only when `--only` names them (`--only s`, `--only
//! s_man`, `--only s_doc_fold`): each takes one to several minutes;
//! `--no-python` skips the Python peers. Within one repeat a cell is the median of up to 5
//! runs, fewer once its runs have taken 3 s (so a cell of several seconds runs once).
//!
//! Rows: (a) 1,000,000 small integers through a trivial function, default chunksize;
//! (b) 100,000 small integers, chunksize 1; (c) primality of 10,000 odd numbers near 10^12;
//! (d) create and tear down a 2-worker pool; (e) 1 MiB byte buffers in, length out, and
//! echoed back; (f) spawn + join of one process running a trivial closure; (g) `imap` over
//! 10,000,000 items: peak resident memory of the parent above its baseline; (h) row (d) in a
//! parent holding a touched heap of `--heap-mib`; (i) the cost of a worker's death: from the
//! death to the next item done on the replacement (method in `workloads::row_i`); (j) 64 MiB
//! buffers echoed back; (k) `Pool::new(n)` + drop per worker, n = 2, 16, 128, 512; and the
//! many-callers rows (issue 12; runners in `many.rs`): (l) 100,000 trivial tasks submitted
//! from one thread, then each waited; (m) 8 threads × 200 one-item `map` calls of 2 ms items
//! on 2 workers, against the ideal 1.6 s; (n) `apply` latency while another thread maps
//! 1,000,000 trivial items, median and max of 20; (o) a 10-item `map` of 1 ms items while
//! another thread holds an unconsumed `imap` of 20 ms items; (p) a word count over 200 files
//! with `Pool::fold` (tables merged in the workers) against `map` + merge in the parent
//! (runner in `reduce.rs`); and the rows over real data (issue 26; runners in `realdata.rs`):
//! (s) a word count over every `*.gz` under `/usr/share/doc` (about 1,800 files, 25 M words)
//! and under `/usr/share/man` (about 24,000 small files, 18 M words), decompressed and split as
//! Python's `str.split()` does, one row per forkpool variant (`imap_unordered` + merge in the
//! caller, `fold`, `map_reduce`, `reduce_by_key`; `realdata::VARIANTS`), each beside a serial count; the first
//! variant's row also holds rayon (`par_iter().fold().reduce()`) and Python's `Pool` (fork:
//! `imap_unordered` + `Counter.update`, the tutorials' code; the other Python peers are not
//! run, and serial Python is a line under the table); every count is checked against the
//! serial one, and both sides' totals against each other (`check` lines); (t) `map` over
//! 2,000 items each returning 1,000 short strings, as a `Vec<String>` and as a `HashMap<String,
//! u64>`. Each forkpool cell of (s) and (t) notes the parent's share of the call's CPU time
//! and the speedup limit it implies (how it is read: `cpu.rs`). A system
//! without a counterpart of a row shows `n/a` (with a note when there is something to say);
//! peers too slow for the full input run a smaller one and are reported per item (noted).
//!
//! The rows are listed in `workloads.rs`; their runners, which measure forkpool and the Rust
//! peers, are in `rows.rs`; the Python peers' side of each row is in `peers.py`, under the
//! same key. Each row runs in a fresh process on each side (a fork costs more the more memory
//! the parent has mapped, so a row must not pay for the ones before it); the processes report
//! figures as text lines (see `table::Results::read`). A new row is one entry in
//! `workloads::list` with its runner and, for the Python peers, one function in `peers.py`'s
//! `ROWS`.

mod cpu;
mod many;
#[path = "../shared/primality.rs"]
mod primality;
mod python;
mod realdata;
mod reduce;
mod rows;
mod table;
mod workloads;
mod zygote;

use std::process::{Command, Stdio};
use std::time::Instant;

/// The run's settings, parsed from the command line (the same in every workload process).
#[derive(Clone, Debug)]
pub struct Config {
    pub repeat: usize,
    pub quick: bool,
    pub heap_mib: usize,
    pub curve_1000: bool,
    pub only: Option<Vec<String>>,
    pub python: bool,
    /// Runs per cell within one repeat, at most.
    pub runs: usize,
    /// Seconds of measured runs after which a cell takes no more runs.
    pub budget: f64,
}

impl Config {
    fn parse(args: &[String]) -> Result<(Config, Option<String>), String> {
        let mut cfg = Config {
            repeat: 1,
            quick: false,
            heap_mib: 1024,
            curve_1000: false,
            only: None,
            python: true,
            runs: 5,
            budget: 3.0,
        };
        let mut workload = None;
        let mut heap_set = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--repeat" => {
                    cfg.repeat = value("--repeat")?
                        .parse()
                        .map_err(|e| format!("--repeat: {e}"))?;
                    if cfg.repeat == 0 {
                        return Err("--repeat must be at least 1".into());
                    }
                }
                "--quick" => cfg.quick = true,
                "--heap-mib" => {
                    cfg.heap_mib = value("--heap-mib")?
                        .parse()
                        .map_err(|e| format!("--heap-mib: {e}"))?;
                    heap_set = true;
                }
                "--curve-1000" => cfg.curve_1000 = true,
                "--only" => {
                    cfg.only = Some(value("--only")?.split(',').map(String::from).collect());
                }
                "--no-python" => cfg.python = false,
                "--workload" => workload = Some(value("--workload")?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if cfg.quick {
            cfg.runs = 1;
            cfg.budget = 0.0;
            if !heap_set {
                cfg.heap_mib = 256;
            }
        }
        Ok((cfg, workload))
    }

    /// The arguments that give a workload process this configuration.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--heap-mib".to_string(), self.heap_mib.to_string()];
        if self.quick {
            args.push("--quick".into());
        }
        if self.curve_1000 {
            args.push("--curve-1000".into());
        }
        args
    }
}

fn main() {
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, workload) = Config::parse(&args).unwrap_or_else(|why| {
        eprintln!("compare: {why}");
        std::process::exit(2);
    });
    let rows = workloads::list(&cfg);
    // `compare --workload KEY`: measure one row in this process and print its lines.
    if let Some(key) = workload {
        let row = rows
            .iter()
            .find(|w| w.key == key)
            .unwrap_or_else(|| panic!("no workload {key:?}"));
        workloads::run_here(row, &cfg);
        return;
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|w| match &cfg.only {
            None => !w.only_when_named,
            Some(keys) => keys.iter().any(|k| w.key.starts_with(k.as_str())),
        })
        .collect();
    let peers = if cfg.python {
        python::setup()
    } else {
        python::Side::disabled("--no-python")
    };
    let mut results = table::Results::new(cfg.repeat);
    // A failed install explains a peer's absence better than the import error that follows.
    for (system, why) in &peers.install_failures {
        results.skip(system, why);
    }
    if let Some(why) = &peers.unavailable {
        for system in python::SYSTEMS {
            results.skip(system, why);
        }
    }
    let started = Instant::now();
    for repeat in 0..cfg.repeat {
        for row in &rows {
            let t = Instant::now();
            let own = Command::new(std::env::current_exe().expect("own path"))
                .args(["--workload", &row.key])
                .args(cfg.to_args())
                .stderr(Stdio::inherit())
                .output();
            match own {
                Ok(out) if out.status.success() => {
                    results.read(row, &String::from_utf8_lossy(&out.stdout))
                }
                Ok(out) => results.failed(row, &workloads::RUST_SYSTEMS, &out.status.to_string()),
                Err(e) => results.failed(row, &workloads::RUST_SYSTEMS, &e.to_string()),
            }
            if row.python && peers.unavailable.is_none() {
                match peers.run(row, &cfg) {
                    Ok(lines) => results.read(row, &lines),
                    Err(why) => {
                        eprintln!("{}: the Python side failed: {why}", row.key);
                        results.failed(row, &python::SYSTEMS, "the Python side failed");
                    }
                }
            }
            eprintln!(
                "repeat {}/{}: {} measured in {:.1} s",
                repeat + 1,
                cfg.repeat,
                row.name,
                t.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "{} repeat(s) in {:.0} s; each cell: the median over the repeats{}; each repeat's \
         figure is the median of up to {} runs (fewer once they take {} s).\n",
        cfg.repeat,
        started.elapsed().as_secs_f64(),
        if cfg.repeat > 1 { " (min–max)" } else { "" },
        cfg.runs,
        cfg.budget
    );
    results.print(&rows);
    if results.mismatched() {
        eprintln!("compare: two processes computed different results (MISMATCH above)");
        std::process::exit(1);
    }
}
