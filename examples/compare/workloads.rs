//! The rows of the table, in order (their runners, which measure forkpool and the Rust peers,
//! are in `rows.rs`; the Python peers' side of a row is the function of the same key in
//! `peers.py`).
//!
//! Every runner reports a measurement as a value and a count (seconds and items, seconds and
//! bytes, bytes and 1, ...); the row's `figure` turns the pair into the figure shown, the
//! same way for both sides.

use crate::Config;
use crate::many;
use crate::realdata;
use crate::reduce;
use crate::rows;
use crate::zygote;
use std::time::Instant;

/// The systems measured on this side (the Python peers are in `python::SYSTEMS`).
pub const RUST_SYSTEMS: [&str; 4] = ["forkpool", "procspawn Pool", "rayon", "serial"];

pub const MIB: usize = 1 << 20;

/// The inputs, from the configuration (`--quick` shrinks them all).
#[derive(Clone, Debug)]
pub struct Sizes {
    /// (a): items through a trivial function.
    pub a_items: u64,
    /// (b): items at chunksize 1.
    pub b_items: u64,
    /// (c): numbers tested for primality.
    pub c_items: u64,
    /// (e): 1 MiB buffers.
    pub e_buffers: usize,
    /// (g): items through `imap`.
    pub g_items: u64,
    /// Peers whose map sends one item per message (ProcessPoolExecutor, pebble, loky: their
    /// default chunksize is 1) run (a) and (b) on this many items, reported per item.
    pub per_message_items: u64,
    /// procspawn runs one process call per item (it has no map): (b) runs this many items.
    pub procspawn_items: u64,
    /// (h): the parent's touched heap, in bytes.
    pub heap_bytes: usize,
    /// (i): deaths per measured call, forkpool.
    pub deaths: usize,
    /// (i): deaths per measured call, the Python peers (some start a whole executor per death).
    pub python_deaths: usize,
    /// (j): 64 MiB buffers.
    pub j_buffers: usize,
    /// (k): the pool sizes of the `Pool::new(n)` curve.
    pub curve: Vec<usize>,
    /// (l): tasks submitted, then waited (Python's `Pool`; the other Python peers run
    /// `per_message_items`, procspawn `procspawn_items`).
    pub l_tasks: u64,
    /// (m): one-item calls per thread.
    pub m_calls: u64,
    /// (n): items of the map beside the applies.
    pub n_items: u64,
    /// (n): applies timed.
    pub n_applies: usize,
    /// (o): the Python peers' held `imap`: items (their `imap` queues all of them at once).
    pub o_held: u64,
    /// (s): files counted per corpus, the first ones in path order (0: all of them).
    pub s_files: usize,
    /// (t): items mapped.
    pub t_items: u64,
}

impl Sizes {
    pub fn of(cfg: &Config) -> Sizes {
        let mut curve = if cfg.quick {
            vec![2, 16, 128]
        } else {
            vec![2, 16, 128, 512]
        };
        if cfg.curve_1000 {
            curve.push(1000);
        }
        let (a, b, c, e, g, per_message, procspawn, deaths, python_deaths, j) = if cfg.quick {
            (100_000, 10_000, 1_000, 16, 1_000_000, 2_000, 500, 10, 5, 2)
        } else {
            (
                1_000_000, 100_000, 10_000, 64, 10_000_000, 20_000, 5_000, 50, 20, 8,
            )
        };
        Sizes {
            a_items: a,
            b_items: b,
            c_items: c,
            e_buffers: e,
            g_items: g,
            per_message_items: per_message,
            procspawn_items: procspawn,
            heap_bytes: cfg.heap_mib * MIB,
            deaths,
            python_deaths,
            j_buffers: j,
            curve,
            l_tasks: if cfg.quick { 10_000 } else { 100_000 },
            m_calls: if cfg.quick { 20 } else { 200 },
            n_items: if cfg.quick { 100_000 } else { 1_000_000 },
            n_applies: 20,
            o_held: 100,
            s_files: if cfg.quick { 100 } else { 0 },
            t_items: if cfg.quick { 200 } else { 2_000 },
        }
    }

    /// The sizes as a JSON object, for `peers.py`.
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                r#"{{"a":{},"b":{},"c":{},"e":{},"g":{},"per_message":{},"heap":{},"deaths":{},"#,
                r#""j":{},"l":{},"m_calls":{},"m_threads":{},"n":{},"n_applies":{},"o_held":{},"#,
                r#""s_files":{},"corpora":[{}],"t_items":{},"t_strings":{}}}"#
            ),
            self.a_items,
            self.b_items,
            self.c_items,
            self.e_buffers,
            self.g_items,
            self.per_message_items,
            self.heap_bytes,
            self.python_deaths,
            self.j_buffers,
            self.l_tasks,
            self.m_calls,
            many::M_THREADS,
            self.n_items,
            self.n_applies,
            self.o_held,
            self.s_files,
            realdata::CORPORA.map(|c| format!("{:?}", c.root)).join(","),
            self.t_items,
            realdata::T_STRINGS
        )
    }
}

/// What a runner gets: the inputs, the timer, and the row's parameter (n for the curve).
pub struct Ctx {
    pub sizes: Sizes,
    pub timer: Timer,
    pub param: usize,
}

/// One row of the table.
pub struct Workload {
    /// Its name in the workload processes' command lines, in `peers.py` and for `--only`.
    pub key: String,
    pub name: String,
    pub unit: &'static str,
    /// Whether a larger figure is better (a rate) or a smaller one (a time, a size).
    pub higher_is_better: bool,
    /// The figure shown, from a measurement's value and count.
    pub figure: fn(f64, f64) -> f64,
    /// Measures forkpool and the Rust peers.
    pub rust: fn(&Ctx, &mut Report),
    /// Whether `peers.py` has this row.
    pub python: bool,
    pub param: usize,
    /// Runs only when `--only` names it (a row of more than about a minute).
    pub only_when_named: bool,
}

pub fn m_items_per_s(secs: f64, items: f64) -> f64 {
    items / secs / 1e6
}
fn us_per_item(secs: f64, items: f64) -> f64 {
    secs / items * 1e6
}
fn k_items_per_s(secs: f64, items: f64) -> f64 {
    items / secs / 1e3
}
fn seconds(secs: f64, _: f64) -> f64 {
    secs
}
fn millis(secs: f64, _: f64) -> f64 {
    secs * 1e3
}
pub fn millis_each(secs: f64, n: f64) -> f64 {
    secs * 1e3 / n
}
fn gb_per_s(secs: f64, bytes: f64) -> f64 {
    bytes / secs / 1e9
}
fn megabytes(bytes: f64, _: f64) -> f64 {
    bytes / 1e6
}

/// `1,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows, in table order.
pub fn list(cfg: &Config) -> Vec<Workload> {
    let s = Sizes::of(cfg);
    let row = |key: &str,
               name: String,
               unit: &'static str,
               higher_is_better: bool,
               figure: fn(f64, f64) -> f64,
               rust: fn(&Ctx, &mut Report),
               python: bool| Workload {
        key: key.to_string(),
        name,
        unit,
        higher_is_better,
        figure,
        rust,
        python,
        param: 0,
        only_when_named: false,
    };
    let heap = if s.heap_bytes % (1 << 30) == 0 {
        format!("{} GiB", s.heap_bytes >> 30)
    } else {
        format!("{} MiB", s.heap_bytes >> 20)
    };
    let mut rows = vec![
        row(
            "a",
            format!(
                "(a) {} ints, trivial fn, default chunksize",
                thousands(s.a_items)
            ),
            "M items/s",
            true,
            m_items_per_s,
            rows::row_a,
            true,
        ),
        row(
            "b",
            format!("(b) {} ints, chunksize 1", thousands(s.b_items)),
            "µs/item",
            false,
            us_per_item,
            rows::row_b,
            true,
        ),
        row(
            "c",
            format!(
                "(c) primality of {} numbers near 10^12",
                thousands(s.c_items)
            ),
            "s",
            false,
            seconds,
            rows::row_c,
            true,
        ),
        row(
            "d",
            "(d) create + tear down a 2-worker pool".into(),
            "ms",
            false,
            millis,
            rows::row_d,
            true,
        ),
        row(
            "e_in",
            "(e) 1 MiB buffers in, length out".into(),
            "GB/s",
            true,
            gb_per_s,
            rows::row_e_in,
            true,
        ),
        row(
            "e_echo",
            "(e) 1 MiB buffers echoed back".into(),
            "GB/s",
            true,
            gb_per_s,
            rows::row_e_echo,
            true,
        ),
        row(
            "f",
            "(f) spawn + join one process, trivial closure".into(),
            "ms",
            false,
            millis,
            rows::row_f,
            false,
        ),
        row(
            "g",
            format!(
                "(g) imap over {} items: parent peak RSS",
                thousands(s.g_items)
            ),
            "MB",
            false,
            megabytes,
            rows::row_g,
            true,
        ),
        row(
            "h",
            format!("(h) create + tear down a 2-worker pool, parent holding a {heap} touched heap"),
            "ms",
            false,
            millis,
            rows::row_h,
            true,
        ),
        row(
            "i",
            "(i) replacement fork: cost of one worker death (1 worker, chunksize 1)".into(),
            "ms/death",
            false,
            millis_each,
            rows::row_i,
            true,
        ),
        row(
            "j",
            "(j) 64 MiB buffers echoed back".into(),
            "GB/s",
            true,
            gb_per_s,
            rows::row_j,
            true,
        ),
    ];
    rows.push(Workload {
        param: 1,
        ..row(
            "hz",
            format!("(h) with `zygote()` (started before the heap): create + tear down a 2-worker pool, parent holding a {heap} touched heap"),
            "ms",
            false,
            millis,
            zygote::row_h_zygote,
            false,
        )
    });
    for (param, key, how) in [(0, "q", ""), (1, "qz", ", forkpool with `zygote()`")] {
        rows.push(Workload {
            param,
            ..row(
                key,
                format!("(q) replacement fork, parent holding a {heap} touched heap{how}"),
                "ms/death",
                false,
                millis_each,
                zygote::row_q,
                false,
            )
        });
    }
    for (param, key, how) in [(0, "r", ""), (1, "rz", ", forkpool with `zygote()`")] {
        rows.push(Workload {
            param,
            ..row(
                key,
                format!("(r) the parent writes every page of its {heap} heap while a 2-worker pool lives{how}"),
                "ms",
                false,
                millis,
                zygote::row_r,
                false,
            )
        });
    }
    for n in s.curve {
        rows.push(Workload {
            param: n,
            ..row(
                &format!("k{n}"),
                format!("(k) create + tear down a {n}-worker pool, per worker"),
                "ms/worker",
                false,
                millis_each,
                rows::row_k,
                true,
            )
        });
    }
    rows.push(row(
        "l",
        format!(
            "(l) `submit` {} trivial tasks from one thread, then `wait` each",
            thousands(s.l_tasks)
        ),
        "µs/task",
        false,
        us_per_item,
        many::row_l,
        true,
    ));
    rows.push(row(
        "m",
        format!(
            "(m) {} threads × {} one-item calls (2 ms items); ideal {:.2} s",
            many::M_THREADS,
            s.m_calls,
            many::m_ideal(s.m_calls)
        ),
        "s",
        false,
        seconds,
        many::row_m,
        true,
    ));
    for (param, key, what) in [(0, "n_med", "median"), (1, "n_max", "max")] {
        rows.push(Workload {
            param,
            ..row(
                key,
                format!(
                    "(n) `apply` latency while another thread maps {} trivial items: {what} of {}",
                    thousands(s.n_items),
                    s.n_applies
                ),
                "ms",
                false,
                millis,
                many::row_n,
                true,
            )
        });
    }
    rows.push(row(
        "o",
        "(o) 10-item `map` of 1 ms items beside a held, unconsumed `imap` of 20 ms items".into(),
        "ms",
        false,
        millis,
        many::row_o,
        true,
    ));
    rows.push(row(
        "p",
        format!(
            "(p) word count over {} files: `fold` in the workers",
            thousands(200)
        ),
        "ms",
        false,
        millis,
        reduce::row_p,
        false,
    ));
    // (s): a row per corpus and forkpool variant; the peers run on each corpus's first.
    for (c, corpus) in realdata::CORPORA.iter().enumerate() {
        for (v, variant) in realdata::VARIANTS.iter().enumerate() {
            rows.push(Workload {
                param: realdata::s_param(c, v),
                only_when_named: true,
                ..row(
                    &format!("{}_{}", corpus.key, variant.key),
                    realdata::s_name(corpus, variant, s.s_files),
                    "s",
                    false,
                    seconds,
                    realdata::row_s,
                    v == 0,
                )
            });
        }
    }
    for (param, key) in [(0, "t_vec"), (1, "t_map")] {
        rows.push(Workload {
            param,
            ..row(
                key,
                format!(
                    "(t) `map` over {} items, each returning a {} of {} short strings",
                    thousands(s.t_items),
                    realdata::T_RESULTS[param],
                    thousands(realdata::T_STRINGS)
                ),
                "k items/s",
                true,
                k_items_per_s,
                realdata::row_t,
                true,
            )
        });
    }
    rows
}

/// Runs `row`'s Rust side in this process, printing its lines.
pub fn run_here(row: &Workload, cfg: &Config) {
    let ctx = Ctx {
        sizes: Sizes::of(cfg),
        timer: Timer {
            runs: cfg.runs,
            budget: cfg.budget,
        },
        param: row.param,
    };
    (row.rust)(&ctx, &mut Report);
}

/// Prints a workload process's lines (see `table::Results::read` for their meaning).
pub struct Report;

impl Report {
    /// A measurement of `system`: a value and a count for the row's `figure`, and a note.
    pub fn cell(&mut self, system: &str, value: f64, count: f64, note: &str) {
        println!("cell\t{system}\t{value}\t{count}\t{note}");
    }

    /// A figure printed under the table, not in it.
    pub fn also(&mut self, label: &str, figure: f64, unit: &str) {
        println!("also\t{label}\t{figure}\t{unit}");
    }

    /// `system` has no counterpart of the row (or nothing to run it on), and why.
    pub fn none(&mut self, system: &str, why: &str) {
        println!("none\t{system}\t{why}");
    }

    /// A value every process that reports `label` must report the same (a result's totals,
    /// on both sides); the table fails when two differ.
    pub fn check(&mut self, label: &str, value: &str) {
        println!("check\t{label}\t{value}");
    }
}

/// Times closures: the median of up to `runs` runs, fewer once they took `budget` seconds.
pub struct Timer {
    pub runs: usize,
    pub budget: f64,
}

impl Timer {
    pub fn median(&self, mut f: impl FnMut()) -> f64 {
        self.median_with(|| (), |()| f())
    }

    /// Like `median`, after one untimed run (for the rows that start pools: the first one in
    /// a process pays one-off costs).
    pub fn median_warm(&self, mut f: impl FnMut()) -> f64 {
        f();
        self.median(f)
    }

    /// The median of the seconds `f` returns (for runs that time only a part of themselves).
    pub fn median_measured(&self, mut f: impl FnMut() -> f64) -> f64 {
        let mut times = Vec::new();
        let mut spent = 0.0;
        while times.len() < self.runs.max(1) && (times.is_empty() || spent < self.budget) {
            let t = Instant::now();
            times.push(f());
            spent += t.elapsed().as_secs_f64();
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }

    /// The median time of `f`, each run on a fresh value from `setup` (untimed).
    pub fn median_with<S>(&self, mut setup: impl FnMut() -> S, mut f: impl FnMut(S)) -> f64 {
        let mut times = Vec::new();
        let mut spent = 0.0;
        while times.len() < self.runs.max(1) && (times.is_empty() || spent < self.budget) {
            let input = setup();
            let t = Instant::now();
            f(input);
            let secs = t.elapsed().as_secs_f64();
            spent += secs;
            times.push(secs);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }
}
