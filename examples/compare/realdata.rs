//! The runners of the rows over real data (issue 26): (s) a word count over every `*.gz` under
//! a directory of the system (one row per forkpool variant in `VARIANTS`; the first one's row
//! measures the peers too), and (t) `map` over items whose results are heavy. Each forkpool
//! cell's note gives the parent's share of the call's CPU time (see `cpu.rs`).
//!
//! A word is what Python's `str.split()` yields, on both sides: the file's bytes decoded as
//! UTF-8 with each invalid sequence replaced by U+FFFD, split on Python's whitespace (Rust's
//! `char::is_whitespace` and U+001C to U+001F), counted per word with case kept. Every variant's
//! table must equal the serial one, and each side prints a `check` line of the serial table's
//! totals and checksum (see `fingerprint`): the table fails loudly when two differ.

use crate::cpu::{children_time, own_time, timed_calls};
use crate::workloads::{Ctx, Report, thousands};
use flate2::read::MultiGzDecoder;
use forkpool::Pool;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

const WORKERS: usize = 2;

/// A directory whose `*.gz` files are counted: the row key's stem and the path.
pub struct Corpus {
    pub key: &'static str,
    pub root: &'static str,
}

/// The corpora of rows (s), in table order; `peers.py` gets the roots from the sizes.
pub const CORPORA: [Corpus; 2] = [
    Corpus {
        key: "s_doc",
        root: "/usr/share/doc",
    },
    Corpus {
        key: "s_man",
        root: "/usr/share/man",
    },
];

pub type Counts = HashMap<String, u64>;

/// One way of counting the corpus on a forkpool pool: the words of every file in `paths`.
pub struct Variant {
    /// The row key's suffix.
    pub key: &'static str,
    /// The row's name for it.
    pub label: &'static str,
    /// How it counts, for the cell's note.
    pub how: &'static str,
    pub count: fn(&Pool, Vec<String>) -> Counts,
}

/// The forkpool variants of rows (s), one row each, in table order (one more variant is one
/// more entry). The first one's row also measures the peers.
pub const VARIANTS: &[Variant] = &[
    Variant {
        key: "imap",
        label: "`imap_unordered` + merge in the caller",
        how: "one table per file back",
        count: by_imap_unordered,
    },
    Variant {
        key: "fold",
        label: "`fold`",
        how: "tables merged in the workers, one per chunk back",
        count: by_fold,
    },
    Variant {
        key: "mr",
        label: "`map_reduce`",
        how: "a table per file, merged in the workers, one per chunk back",
        count: by_map_reduce,
    },
    Variant {
        key: "key",
        label: "`reduce_by_key`",
        how: "a table per file, merged per key partition in the workers, partitions joined in the parent",
        count: by_key,
    },
];

fn by_imap_unordered(pool: &Pool, paths: Vec<String>) -> Counts {
    pool.imap_unordered(count_file, paths)
        .fold(Counts::new(), |total, counts| {
            merged(total, counts.expect("imap_unordered"))
        })
}

fn by_fold(pool: &Pool, paths: Vec<String>) -> Counts {
    pool.fold(count_into, Counts::new(), merged, paths)
        .expect("fold")
}

fn by_map_reduce(pool: &Pool, paths: Vec<String>) -> Counts {
    pool.map_reduce(count_file, merged, paths)
        .expect("map_reduce")
        .unwrap_or_default()
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn by_key(pool: &Pool, paths: Vec<String>) -> Counts {
    pool.reduce_by_key(count_file, add, paths)
        .expect("reduce_by_key")
}

/// A row (s)'s `param`: its corpus and its variant.
pub fn s_param(corpus: usize, variant: usize) -> usize {
    corpus + CORPORA.len() * variant
}

/// Python's `str.isspace`.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The text of a gzip file (every member), decoded as UTF-8 with invalid sequences replaced.
fn text_of(path: &str) -> String {
    let mut bytes = Vec::new();
    MultiGzDecoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Adds the words of the file at `path` into `counts`.
fn count_into(mut counts: Counts, path: String) -> Counts {
    for word in text_of(&path).split(is_space).filter(|w| !w.is_empty()) {
        match counts.get_mut(word) {
            Some(n) => *n += 1,
            None => {
                counts.insert(word.to_string(), 1);
            }
        }
    }
    counts
}

/// The words of the file at `path`.
fn count_file(path: String) -> Counts {
    count_into(Counts::new(), path)
}

/// Merges the smaller table into the larger.
fn merged(a: Counts, b: Counts) -> Counts {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (word, n) in small {
        *big.entry(word).or_insert(0) += n;
    }
    big
}

/// Every `*.gz` file under `root`, sorted: subdirectories are entered, symbolic links to
/// directories are not; a link to a file counts, a broken one does not (as `os.walk`,
/// `peers.py`'s listing). At most `limit` files (the first ones) when `limit` is not 0.
fn gz_files(root: &Path, limit: usize) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&path, out),
                Ok(_)
                    if entry.file_name().as_encoded_bytes().ends_with(b".gz") && path.is_file() =>
                {
                    out.push(path.to_string_lossy().into_owned())
                }
                _ => {}
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    paths.sort();
    if limit > 0 {
        paths.truncate(limit);
    }
    paths
}

/// The table's totals and a checksum of all of it, for comparing with `peers.py`: files,
/// words, distinct words, and the CRC-32 of the lines `word\tcount\n` in code point order.
fn fingerprint(files: usize, counts: &Counts) -> String {
    let mut entries: Vec<(&String, &u64)> = counts.iter().collect();
    entries.sort_unstable();
    let mut crc = flate2::Crc::new();
    for (word, n) in entries {
        crc.update(format!("{word}\t{n}\n").as_bytes());
    }
    format!(
        "{files} files, {} words, {} distinct, crc32 {:08x}",
        counts.values().sum::<u64>(),
        counts.len(),
        crc.sum()
    )
}

/// Row (s) on one corpus with one variant: the variant, the serial count (the reference every
/// variant must equal), and on the first variant's row rayon (the Python peers are in
/// `peers.py`).
pub fn row_s(ctx: &Ctx, out: &mut Report) {
    let corpus = &CORPORA[ctx.param % CORPORA.len()];
    let variant_index = ctx.param / CORPORA.len();
    let variant = &VARIANTS[variant_index];
    let paths = gz_files(Path::new(corpus.root), ctx.sizes.s_files);
    if paths.is_empty() {
        let why = format!("no *.gz files under {}", corpus.root);
        for system in ["forkpool", "rayon", "serial"] {
            out.none(system, &why);
        }
        return;
    }
    let serial_count = || paths.iter().cloned().fold(Counts::new(), count_into);
    // The first serial run makes the reference table; the others must equal it.
    let mut expected = None;
    let mut serial_cpu = Duration::ZERO;
    let serial = ctx.timer.median_measured(|| {
        let cpu = own_time(false);
        let t = Instant::now();
        let total = serial_count();
        let secs = t.elapsed().as_secs_f64();
        serial_cpu = own_time(false)
            .zip(cpu)
            .map_or(Duration::ZERO, |(a, b)| a - b);
        match &expected {
            None => expected = Some(total),
            Some(first) => assert!(total == *first, "the serial count differs between runs"),
        }
        secs
    });
    let expected = expected.expect("one serial run");
    out.cell("serial", serial, 1.0, "");
    let sum = fingerprint(paths.len(), &expected);
    out.check(&format!("words of {}", corpus.root), &sum);
    eprintln!("{}: {sum}", corpus.key);

    let label = format!("({}) forkpool {}", corpus.key, variant.key);
    let children_before = children_time();
    let pool = Pool::new(WORKERS).unwrap();
    let calls = timed_calls(
        &ctx.timer,
        &pool,
        || (variant.count)(&pool, paths.clone()),
        |total| {
            assert!(
                total == expected,
                "{label} counted {} where the serial count has {sum}",
                fingerprint(paths.len(), &total),
            )
        },
    );
    let secs = calls.secs;
    match calls.each {
        Some(spent) => {
            let note = format!("{}; {}", variant.how, spent.note());
            out.cell("forkpool", secs, 1.0, &note);
            out.also(
                &format!("{label}: parent CPU share"),
                100.0 * spent.parent_share(),
                "%",
            );
            out.also(
                &format!("{label}: CPU of parent + workers / serial CPU"),
                spent.total().as_secs_f64() / serial_cpu.as_secs_f64(),
                "×",
            );
        }
        None => out.cell(
            "forkpool",
            secs,
            1.0,
            "CPU not read (not Linux, or a worker died)",
        ),
    }
    drop(pool);
    // The workers are this process's children (no zygote here): once reaped, RUSAGE_CHILDREN
    // has their whole lives, which the readings from /proc during the calls must nearly make
    // up (the rest: their start, and their idle time between calls).
    let reaped = children_time().zip(children_before).map(|(a, b)| a - b);
    if let Some((spent, reaped)) = calls.each.zip(reaped) {
        out.also(
            &format!("{label}: workers' CPU read from /proc during the calls / RUSAGE_CHILDREN once reaped"),
            (spent.workers * calls.runs).as_secs_f64() / reaped.as_secs_f64(),
            "×",
        );
    }

    if variant_index == 0 {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(WORKERS)
            .build()
            .unwrap();
        let s = ctx.timer.median(|| {
            let total = threads.install(|| {
                paths
                    .par_iter()
                    .fold(Counts::new, |counts, path| count_into(counts, path.clone()))
                    .reduce(Counts::new, merged)
            });
            assert!(total == expected, "rayon counted wrong");
        });
        out.cell("rayon", s, 1.0, "par_iter().fold().reduce(), 2 threads");
    }
}

/// Row (s)'s name.
pub fn s_name(corpus: &Corpus, variant: &Variant, limit: usize) -> String {
    let files = if limit > 0 {
        format!("first {} ", thousands(limit as u64))
    } else {
        String::new()
    };
    format!(
        "(s) word count, {files}`*.gz` under {}: forkpool {}",
        corpus.root, variant.label
    )
}

/// Strings per result in rows (t).
pub const T_STRINGS: u64 = 1_000;

/// The result types of rows (t), by `param`.
pub const T_RESULTS: [&str; 2] = ["`Vec<String>`", "`HashMap<String, u64>`"];

/// Row (t)'s item, `param` 0: `T_STRINGS` short strings (`item-j`).
fn strings(item: u64) -> Vec<String> {
    (0..T_STRINGS).map(|j| format!("{item}-{j}")).collect()
}

/// Row (t)'s item, `param` 1: a table of `T_STRINGS` entries (`item-j` → j).
fn table(item: u64) -> HashMap<String, u64> {
    (0..T_STRINGS).map(|j| (format!("{item}-{j}"), j)).collect()
}
/// A result of row (t) as the total length of its strings, to check every variant against.
trait Heavy {
    fn weight(&self) -> usize;
}

impl Heavy for Vec<String> {
    fn weight(&self) -> usize {
        self.iter().map(String::len).sum()
    }
}

impl Heavy for HashMap<String, u64> {
    fn weight(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + *v as usize).sum()
    }
}

/// Row (t): `map` over `t_items` items, each returning a heavy result (`T_RESULTS[param]`),
/// on forkpool (with its parent's CPU share), rayon and serially.
pub fn row_t(ctx: &Ctx, out: &mut Report) {
    match ctx.param {
        0 => heavy(ctx, out, strings),
        _ => heavy(ctx, out, table),
    }
}

fn heavy<R>(ctx: &Ctx, out: &mut Report, f: fn(u64) -> R)
where
    R: Heavy + Send + serde::Serialize + serde::de::DeserializeOwned,
{
    let n = ctx.sizes.t_items;
    let weight = |results: &[R]| results.iter().map(Heavy::weight).sum::<usize>();
    let expected = weight(&(0..n).map(f).collect::<Vec<_>>());
    let s = ctx.timer.median(|| {
        let v: Vec<R> = (0..n).map(f).collect();
        assert_eq!(weight(&v), expected);
    });
    out.cell("serial", s, n as f64, "");
    let pool = Pool::new(WORKERS).unwrap();
    let calls = timed_calls(
        &ctx.timer,
        &pool,
        || pool.map(f, 0..n).unwrap(),
        |v| assert_eq!(weight(&v), expected, "forkpool's results differ"),
    );
    let s = calls.secs;
    match calls.each {
        Some(spent) => {
            out.cell("forkpool", s, n as f64, &spent.note());
            let label = format!("(t) forkpool `map`, {} results", T_RESULTS[ctx.param]);
            out.also(
                &format!("{label}: parent CPU share"),
                100.0 * spent.parent_share(),
                "%",
            );
        }
        None => out.cell("forkpool", s, n as f64, "CPU not read"),
    }
    drop(pool);
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .unwrap();
    let s = ctx.timer.median(|| {
        let v: Vec<R> = threads.install(|| (0..n).into_par_iter().map(f).collect());
        assert_eq!(weight(&v), expected);
    });
    out.cell("rayon", s, n as f64, "2 threads");
}
