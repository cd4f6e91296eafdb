//! Counting words over many files with `Pool::fold`: each worker folds the files of each chunk
//! it runs into one table of counts, and the parent merges only those tables.
//!
//! Writes 200 small text files of deterministic pseudo-random words into a fresh directory under
//! the system temp dir, has the pool's workers count them (each worker reads its files itself;
//! only the paths go out, and one table per chunk of files comes back, not one per file),
//! prints the ten most frequent words, checks them against a serial count, and removes the
//! directory. (`cargo run --release -p forkpool-bench --example compare -- --only p` times this
//! fold against a `map` that sends every file's table back to be merged in the parent.)
//!
//! Run it with:
//!
//! ```text
//! cargo run --example wordcount
//! ```

use forkpool::Pool;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const FILES: usize = 200;
const WORDS_PER_FILE: usize = 2_000;
const WORDS: &[&str] = &[
    "the", "process", "pool", "fork", "worker", "item", "chunk", "result", "signal", "parent",
    "child", "pipe", "map", "Map", "queue", "error", "panic", "value", "Rust", "a",
];

/// Word counts of one file, keyed by lowercase word.
type Counts = HashMap<String, u64>;

/// Reads the file at `path` and counts its words (runs of letters), lowercased.
fn count_file(path: String) -> Counts {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut counts = Counts::new();
    for word in text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

/// Counts the words of the file at `path` into `counts` (what each worker folds its files with).
fn count_into(mut counts: Counts, path: String) -> Counts {
    merge(&mut counts, count_file(path));
    counts
}

/// Adds `part` into `total`.
fn merge(total: &mut Counts, part: Counts) {
    for (word, n) in part {
        *total.entry(word).or_insert(0) += n;
    }
}

/// Merges two tables (what the parent combines the workers' tables with).
fn merged(mut total: Counts, part: Counts) -> Counts {
    merge(&mut total, part);
    total
}

/// A linear congruential generator (Knuth's MMIX constants): deterministic, no extra crates.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A directory removed, with everything in it, when this guard is dropped (also on errors).
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("forkpool-wordcount-example-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Writes the text files and returns their paths.
fn write_files(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut rng = Lcg(42);
    let mut paths = Vec::with_capacity(FILES);
    for file in 0..FILES {
        let mut text = String::new();
        for i in 0..WORDS_PER_FILE {
            // Skew the distribution (the minimum of two draws) so the top ten is clear-cut.
            let a = rng.next() as usize % WORDS.len();
            let b = rng.next() as usize % WORDS.len();
            text.push_str(WORDS[a.min(b)]);
            text.push(match i % 12 {
                11 => '\n',
                7 => ',',
                _ => ' ',
            });
            if i % 12 == 7 {
                text.push(' ');
            }
        }
        writeln!(text, "end of file {file}.")?;
        let path = dir.join(format!("file-{file:02}.txt"));
        std::fs::write(&path, text)?;
        let path = path
            .into_os_string()
            .into_string()
            .map_err(|p| format!("temp path is not UTF-8: {p:?}"))?;
        paths.push(path);
    }
    Ok(paths)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = TempDir::create()?;
    let paths = write_files(dir.path())?;
    println!("wrote {} files to {}", paths.len(), dir.path().display());

    let workers = std::thread::available_parallelism()?.get();
    let pool = Pool::new(workers)?;
    // One chunk of files per worker: the partial tables are big, and the parent decodes and
    // merges one per chunk.
    let per_worker = paths.len().div_ceil(workers);
    let total =
        pool.chunksize(per_worker)
            .fold(count_into, Counts::new(), merged, paths.clone())?;

    let mut serial = Counts::new();
    for path in &paths {
        merge(&mut serial, count_file(path.clone()));
    }

    let mut ranked: Vec<(&String, &u64)> = total.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let words: u64 = total.values().sum();
    println!(
        "{words} words, {} distinct, counted by {workers} workers; the 10 most frequent:",
        total.len()
    );
    for (rank, (word, n)) in ranked.iter().take(10).enumerate() {
        println!("{:>3}. {word:<10} {n:>6}", rank + 1);
    }

    if total != serial {
        return Err("the pool's counts differ from the serial count".into());
    }
    println!("the pool's counts equal the serial count");
    let shown = dir.path().display().to_string();
    drop(dir);
    println!("removed {shown}");
    Ok(())
}
