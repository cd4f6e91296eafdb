"""The Python side of `cargo run --release -p forkpool-bench --example compare`: one row of the
table on Python's multiprocessing.Pool (fork and forkserver start methods), concurrent.futures'
ProcessPoolExecutor (fork), mpire (fork), pebble (fork) and loky (its own start method: loky
does not support fork).

Run by the harness once per row and repeat, in a fresh interpreter, with one JSON argument:
{"row": KEY, "param": N, "runs": R, "budget": SECONDS, "sizes": {...}}. Prints tab-separated
lines (see `table.rs`): `cell SYSTEM VALUE COUNT NOTE`, `none SYSTEM WHY` (no counterpart),
`fail SYSTEM WHY`, `skip SYSTEM WHY` (the peer cannot be imported), `version NAME VERSION`.
A new row is one function in ROWS: it gets a peer and returns (value, count, note) or raises
NoCounterpart.
"""

import collections
import concurrent.futures
import contextlib
import gzip
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import sys
import threading
import time
import zlib

WORKERS = 2
START = 1_000_000_000_001
MIB = 1 << 20


def inc(x):
    return x + 1


def length(b):
    return len(b)


def echo(b):
    return b


def die(_):
    os._exit(1)


def nap2(x):
    time.sleep(0.002)
    return x


def nap1(x):
    time.sleep(0.001)
    return x


def slow20(x):
    time.sleep(0.020)
    return x


def is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


# Seconds one peer may take on one row.
PEER_LIMIT = 900


def out_of_time(*_):
    raise TimeoutError(f"no answer within {PEER_LIMIT} s")


class NoCounterpart(Exception):
    """The peer has nothing to compare on this row; the message says why."""


class Timer:
    """The median of up to `runs` runs, fewer once they took `budget` seconds."""

    def __init__(self, runs, budget):
        self.runs = max(1, runs)
        self.budget = budget

    def median(self, f, setup=None):
        times = []
        while len(times) < self.runs and (not times or sum(times) < self.budget):
            arg = setup() if setup else None
            t = time.perf_counter()
            f(arg) if setup else f()
            times.append(time.perf_counter() - t)
        return statistics.median(times)


def check(results, n):
    results = list(results)
    assert len(results) == n, (len(results), n)
    return results


def count(results, n):
    """Like check, holding no result."""
    seen = sum(1 for _ in results)
    assert seen == n, (seen, n)


# The peers. Each has: `open(n)`, a started pool of n workers; `map(pool, f, items,
# chunksize)` (None: the peer's default); `close(pool)`; `start_stop(n)`, a pool started (with
# the least work that makes it start its workers) and torn down; `replacement(timer, deaths)`;
# `per_message`, true when its default chunksize is 1; `submit(pool, f, x)`, one task, and
# `result(handle)`, its result (Pool.apply_async, executor.submit, pebble's schedule, ...);
# `shared_by_threads`, true when several threads may use one pool at once.


class PoolPeer:
    per_message = False
    shared_by_threads = True

    def __init__(self, method):
        self.ctx = mp.get_context(method)

    def open(self, n):
        return self.ctx.Pool(n)

    def map(self, pool, f, items, chunksize=None):
        return pool.map(f, items, chunksize)

    def submit(self, pool, f, x):
        return pool.apply_async(f, (x,))

    def result(self, handle):
        return handle.get()

    def close(self, pool):
        pool.close()
        pool.join()

    def start_stop(self, n):
        pool = self.ctx.Pool(n)
        pool.close()
        pool.join()

    def replacement(self, timer, deaths):
        # A dead worker's item never gets a result in Pool (its map would wait forever), so
        # one item at a time with apply_async: a dying one, then one that must wait for the
        # replacement.
        pool = self.ctx.Pool(1)

        def calls(first):
            for _ in range(deaths):
                pool.apply_async(first, (0,))
                assert pool.apply_async(inc, (1,)).get(timeout=60) == 2

        with_deaths = timer.median(lambda: calls(die))
        without = timer.median(lambda: calls(inc))
        pool.terminate()
        pool.join()
        return with_deaths - without, "apply_async: the dying item's result never comes"


class ExecutorPeer:
    per_message = True
    shared_by_threads = True

    def __init__(self):
        self.ctx = mp.get_context("fork")

    def new(self, n):
        return concurrent.futures.ProcessPoolExecutor(n, mp_context=self.ctx)

    def open(self, n):
        ex = self.new(n)
        check(ex.map(inc, range(100)), 100)  # it forks lazily: make it start
        return ex

    def map(self, ex, f, items, chunksize=None):
        return ex.map(f, items, chunksize=chunksize or 1)

    def submit(self, ex, f, x):
        return ex.submit(f, x)

    def result(self, future):
        return future.result()

    def close(self, ex):
        ex.shutdown(wait=True)

    def start_stop(self, n):
        ex = self.new(n)
        ex.submit(inc, 1).result()
        ex.shutdown(wait=True)

    def replacement(self, timer, deaths):
        # A death breaks the executor (BrokenProcessPool): the next item needs a new one.
        state = {"ex": self.new(1)}

        def calls(first):
            for _ in range(deaths):
                try:
                    state["ex"].submit(first, 0).result()
                except concurrent.futures.process.BrokenProcessPool:
                    state["ex"].shutdown(wait=True)
                    state["ex"] = self.new(1)
                assert state["ex"].submit(inc, 1).result() == 2

        with_deaths = timer.median(lambda: calls(die))
        without = timer.median(lambda: calls(inc))
        state["ex"].shutdown(wait=True)
        return with_deaths - without, "a death breaks the executor: a new one per death"


class MpirePeer:
    per_message = False
    # Not measured from several threads: mpire's docs do not say its WorkerPool may be shared.
    shared_by_threads = False

    def __init__(self):
        import mpire

        self.mpire = mpire

    def open(self, n):
        pool = self.mpire.WorkerPool(n_jobs=n, start_method="fork", keep_alive=True)
        check(pool.map(inc, range(100)), 100)
        return pool

    def map(self, pool, f, items, chunksize=None):
        return pool.map(f, items, chunk_size=chunksize, progress_bar=False)

    def submit(self, pool, f, x):
        return pool.apply_async(f, (x,))

    def result(self, handle):
        return handle.get()

    def close(self, pool):
        pool.stop_and_join()

    def start_stop(self, n):
        with self.mpire.WorkerPool(n_jobs=n, start_method="fork") as pool:
            pool.map(inc, [1])  # it starts its workers in map

    def replacement(self, timer, deaths):
        raise NoCounterpart("a worker's death ends mpire's whole map and shuts its pool down")


class PebblePeer:
    per_message = True
    shared_by_threads = True

    def __init__(self):
        import pebble

        self.pebble = pebble
        self.ctx = mp.get_context("fork")

    def new(self, n):
        return self.pebble.ProcessPool(max_workers=n, context=self.ctx)

    def open(self, n):
        pool = self.new(n)
        pool.schedule(inc, args=(1,)).result()
        return pool

    def map(self, pool, f, items, chunksize=None):
        return pool.map(f, items, chunksize=chunksize or 1).result()

    def submit(self, pool, f, x):
        return pool.schedule(f, args=(x,))

    def result(self, future):
        return future.result()

    def close(self, pool):
        pool.close()
        pool.join()

    def start_stop(self, n):
        pool = self.new(n)
        pool.schedule(inc, args=(1,)).result()  # it starts lazily
        pool.close()
        pool.join()

    def replacement(self, timer, deaths):
        pool = self.new(1)

        def calls(first):
            for _ in range(deaths):
                dying = pool.schedule(first, args=(0,))
                assert pool.schedule(inc, args=(1,)).result() == 2
                dying.exception()  # ProcessExpired when it died

        with_deaths = timer.median(lambda: calls(die))
        without = timer.median(lambda: calls(inc))
        pool.close()
        pool.join()
        return with_deaths - without, ""


class LokyPeer:
    per_message = True
    shared_by_threads = True

    def __init__(self):
        import loky

        self.loky = loky

    def open(self, n):
        ex = self.loky.ProcessPoolExecutor(max_workers=n)
        check(ex.map(inc, range(100)), 100)
        return ex

    def map(self, ex, f, items, chunksize=None):
        return ex.map(f, items, chunksize=chunksize or 1)

    def submit(self, ex, f, x):
        return ex.submit(f, x)

    def result(self, future):
        return future.result()

    def close(self, ex):
        ex.shutdown(wait=True)

    def start_stop(self, n):
        ex = self.loky.ProcessPoolExecutor(max_workers=n)
        ex.submit(inc, 1).result()
        ex.shutdown(wait=True)

    def replacement(self, timer, deaths):
        # A death breaks the executor (TerminatedWorkerError); get_reusable_executor, loky's
        # way back, makes a new one when the last one broke.
        def calls(first):
            for _ in range(deaths):
                try:
                    self.loky.get_reusable_executor(max_workers=1).submit(first, 0).result()
                except self.loky.process_executor.TerminatedWorkerError:
                    pass
                ex = self.loky.get_reusable_executor(max_workers=1)
                assert ex.submit(inc, 1).result() == 2

        calls(inc)  # start it
        with_deaths = timer.median(lambda: calls(die))
        without = timer.median(lambda: calls(inc))
        self.loky.get_reusable_executor(max_workers=1).shutdown(wait=True)
        note = "a death breaks the executor: get_reusable_executor makes a new one"
        return with_deaths - without, note


def load_peers():
    """{system: peer}, reporting the ones that cannot be loaded."""
    peers = {"Python Pool (fork)": lambda: PoolPeer("fork")}
    if "forkserver" in mp.get_all_start_methods():
        peers["Python Pool (forkserver)"] = lambda: PoolPeer("forkserver")
    else:
        emit("skip", "Python Pool (forkserver)", "no forkserver start method on this platform")
    peers["Python ProcessPoolExecutor"] = ExecutorPeer
    peers["mpire"] = MpirePeer
    peers["pebble"] = PebblePeer
    peers["loky"] = LokyPeer
    emit("version", "Python", platform.python_version())
    loaded = {}
    for system, make in peers.items():
        try:
            loaded[system] = make()
        except ImportError as e:
            emit("skip", system, f"cannot import it ({e})")
            continue
        if system in ("mpire", "pebble", "loky"):
            emit("version", system, version_of(system))
    return loaded


def version_of(package):
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - a version is only informative
        return "?"


def emit(kind, *fields):
    text = "\t".join([kind] + [str(f).replace("\t", " ").replace("\n", " ") for f in fields])
    print(text, flush=True)


@contextlib.contextmanager
def opened(peer, n):
    pool = peer.open(n)
    try:
        yield pool
    finally:
        peer.close(pool)


# The rows. Each: (peer, sizes, timer, param) -> (value, count, note), like the Rust side's
# cells (see `workloads.rs` for what each row measures and how value and count make its figure).


def row_a(peer, sizes, timer, _):
    n = sizes["per_message"] if peer.per_message else sizes["a"]
    with opened(peer, WORKERS) as pool:
        s = timer.median(lambda: check(peer.map(pool, inc, range(n)), n))
    return s, n, f"{n:,} items, default chunksize 1" if peer.per_message else ""


def row_b(peer, sizes, timer, _):
    n = sizes["per_message"] if peer.per_message else sizes["b"]
    with opened(peer, WORKERS) as pool:
        s = timer.median(lambda: check(peer.map(pool, inc, range(n), 1), n))
    return s, n, f"{n:,} items" if peer.per_message else ""


def row_c(peer, sizes, timer, _):
    numbers = [START + 2 * i for i in range(sizes["c"])]
    with opened(peer, WORKERS) as pool:
        s = timer.median(lambda: check(peer.map(pool, is_prime, numbers), len(numbers)))
    return s, 1, ""


def row_d(peer, sizes, timer, _):
    peer.start_stop(WORKERS)  # untimed, as on the Rust side (and it starts the forkserver)
    return timer.median(lambda: peer.start_stop(WORKERS)), 1, ""


def buffers_in(peer, sizes, timer, f, count, size):
    buf = bytes(size)
    with opened(peer, WORKERS) as pool:
        s = timer.median(lambda: check(peer.map(pool, f, [buf] * count, 1), count))
    return s, count * size, ""


def row_e_in(peer, sizes, timer, _):
    return buffers_in(peer, sizes, timer, length, sizes["e"], MIB)


def row_e_echo(peer, sizes, timer, _):
    return buffers_in(peer, sizes, timer, echo, sizes["e"], MIB)


def row_g(peer, sizes, timer, _):
    if not isinstance(peer, PoolPeer) or peer.ctx.get_start_method() != "fork":
        raise NoCounterpart("not measured")
    n = sizes["g"]

    def peak_rss_above_baseline(f):
        with open("/proc/self/clear_refs", "w") as c:
            c.write("5")  # resets VmHWM to the current RSS

        def field(name):
            with open("/proc/self/status") as s:
                for line in s:
                    if line.startswith(name):
                        return int(line.split()[1]) * 1024
            return 0

        base = field("VmRSS:")
        f()
        return field("VmHWM:") - base

    with opened(peer, WORKERS) as pool:
        # chunksize 10,000 (its default, 1, would take minutes): memory only.
        rss = peak_rss_above_baseline(
            lambda: count(pool.imap(inc, range(n), chunksize=10_000), n))
    return rss, 1, "imap chunksize 10,000"


def row_h(peer, sizes, timer, _):
    return row_d(peer, sizes, timer, _)


def row_i(peer, sizes, timer, _):
    deaths = sizes["deaths"]
    cost, note = peer.replacement(timer, deaths)
    return cost, deaths, note


def row_j(peer, sizes, timer, _):
    return buffers_in(peer, sizes, timer, echo, sizes["j"], 64 * MIB)


def row_l(peer, sizes, timer, _):
    # Python's Pool runs the full count; the peers that take ~100 µs a task run fewer.
    n = sizes["l"] if isinstance(peer, PoolPeer) else sizes["per_message"]
    with opened(peer, WORKERS) as pool:

        def run():
            handles = [peer.submit(pool, inc, x) for x in range(n)]
            assert sum(peer.result(h) for h in handles) == n * (n + 1) // 2

        s = timer.median(run)
    return s, n, "" if isinstance(peer, PoolPeer) else f"{n:,} tasks"


def row_m(peer, sizes, timer, _):
    if not peer.shared_by_threads:
        raise NoCounterpart("not measured (one pool from several threads)")
    threads, calls = sizes["m_threads"], sizes["m_calls"]
    with opened(peer, WORKERS) as pool:

        def caller(t):
            for i in range(calls):
                x = t * 1_000_000 + i
                assert peer.result(peer.submit(pool, nap2, x)) == x

        def run():
            with concurrent.futures.ThreadPoolExecutor(threads) as callers:
                list(callers.map(caller, range(threads)))

        s = timer.median(run)
    note = "pool.apply" if isinstance(peer, PoolPeer) else "submit and wait, one task per call"
    return s, 1, note


def row_n(peer, sizes, timer, param):
    if not isinstance(peer, PoolPeer):
        raise NoCounterpart("not measured (compared with Python's Pool)")
    n, wanted = sizes["n"], sizes["n_applies"]
    state = {"begun": 0, "ended": 0, "enough": False}
    latencies, tried = [], 0
    with opened(peer, WORKERS) as pool:

        def mapper():
            while not state["enough"]:
                state["begun"] += 1
                count(pool.map(inc, range(n)), n)
                state["ended"] += 1

        thread = threading.Thread(target=mapper)
        thread.start()
        while len(latencies) < wanted:
            time.sleep(0.001)
            before = (state["begun"], state["ended"])
            t = time.perf_counter()
            assert pool.apply(inc, (1,)) == 2
            took = time.perf_counter() - t
            tried += 1
            if before[0] == before[1] + 1 and before == (state["begun"], state["ended"]):
                latencies.append(took)
        state["enough"] = True
        thread.join()
    latencies.sort()
    figure = latencies[len(latencies) // 2] if param == 0 else latencies[-1]
    return figure, 1, "pool.apply"


def row_o(peer, sizes, timer, _):
    if not isinstance(peer, PoolPeer):
        raise NoCounterpart("not measured (compared with Python's Pool)")
    held_items = sizes["o_held"]

    def run():
        pool = peer.open(WORKERS)
        try:
            held = pool.imap(slow20, range(held_items))
            assert next(held) == 0
            took = []

            def other():
                t = time.perf_counter()
                check(pool.map(nap1, range(10)), 10)
                took.append(time.perf_counter() - t)

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
            return took[0]
        finally:
            pool.terminate()
            pool.join()

    times = []
    while len(times) < timer.runs and (not times or sum(times) < timer.budget):
        times.append(run())
    return statistics.median(times), 1, f"imap over {held_items} items, chunksize 1"


def row_k(peer, sizes, timer, n):
    if not isinstance(peer, PoolPeer):
        raise NoCounterpart("not measured (the curve compares with Python's Pool)")
    peer.start_stop(WORKERS)  # untimed, as on the Rust side
    return timer.median(lambda: peer.start_stop(n)), n, ""


# Rows (s) and (t): the real-data rows (see `realdata.rs`).


def gz_files(root, limit):
    """Every `*.gz` file under root, sorted, as `realdata.rs` lists them: symbolic links to
    directories not entered, links to files counted, broken ones not; the first `limit` (0: all).
    """
    paths = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name.endswith(".gz") and os.path.isfile(path):
                paths.append(path)
    paths.sort()
    return paths[:limit] if limit else paths


def count_file(path):
    """The words of one file: the tutorials' `Counter(text.split())`, the text decoded as
    UTF-8 with invalid sequences replaced (as `realdata.rs` does)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        return collections.Counter(f.read().split())


def fingerprint(files, counts):
    """The totals and checksum `realdata.rs`'s `fingerprint` prints for the same table."""
    text = "".join(f"{w}\t{n}\n" for w, n in sorted(counts.items()))
    crc = zlib.crc32(text.encode("utf-8"))
    words = sum(counts.values())
    return f"{files} files, {words} words, {len(counts)} distinct, crc32 {crc:08x}"


def process_cpu(pid):
    """A process's CPU seconds: the run time of each of its threads, as `cpu.rs` reads it."""
    nanos = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            nanos += int(f.read().split()[0])
    return nanos / 1e9


class CpuShare:
    """The parent's share of a Pool's calls' CPU time (all its threads, `os.times`), against
    its workers' (`cpu.rs` measures forkpool's the same way)."""

    def __init__(self, pool):
        self.pids = [p.pid for p in pool._pool]  # noqa: SLF001 - the workers' pids
        self.parent = self.workers = 0.0

    def reading(self):
        t = os.times()
        return t.user + t.system, sum(process_cpu(pid) for pid in self.pids)

    def measure(self, f):
        before = self.reading()
        f()
        after = self.reading()
        self.parent += after[0] - before[0]
        self.workers += after[1] - before[1]

    def note(self):
        share = self.parent / (self.parent + self.workers)
        return f"parent CPU {100 * share:.1f}% of parent + workers: speedup limit ×{1 / share:.1f}"


def fork_pool_only(peer):
    if not isinstance(peer, PoolPeer) or peer.ctx.get_start_method() != "fork":
        raise NoCounterpart("not measured (compared with Python's Pool, fork)")


def row_s(peer, sizes, timer, param):
    fork_pool_only(peer)
    root = sizes["corpora"][param % len(sizes["corpora"])]
    paths = gz_files(root, sizes["s_files"])
    if not paths:
        raise NoCounterpart(f"no *.gz files under {root}")

    def serial():
        total = collections.Counter()
        for path in paths:
            total.update(count_file(path))
        return total

    # The first serial run makes the reference table; the others must equal it.
    first = []

    def serial_run():
        total = serial()
        if first:
            check_equal(total, first[0])
        else:
            first.append(total)

    s = timer.median(serial_run)
    expected = first[0]
    emit("check", f"words of {root}", fingerprint(len(paths), expected))
    emit("also", f"(s) serial Python, {root}", s, "s")
    with opened(peer, WORKERS) as pool:
        cpu = CpuShare(pool)

        def run():
            total = collections.Counter()
            for counts in pool.imap_unordered(count_file, paths):
                total.update(counts)
            check_equal(total, expected)

        s = timer.median(lambda: cpu.measure(run))
    return s, 1, f"imap_unordered + Counter.update; {cpu.note()}"


def check_equal(total, expected):
    assert total == expected, "the word counts differ from the serial count"


# Strings per result of rows (t): `realdata.rs`'s T_STRINGS (`row_t` checks they agree).
T_STRINGS = 1_000


def strings(item):
    return [f"{item}-{j}" for j in range(T_STRINGS)]


def table(item):
    return {f"{item}-{j}": j for j in range(T_STRINGS)}


def row_t(peer, sizes, timer, param):
    assert sizes["t_strings"] == T_STRINGS, (sizes["t_strings"], T_STRINGS)
    n = sizes["t_items"]
    f = strings if param == 0 else table
    if isinstance(peer, PoolPeer) and peer.ctx.get_start_method() == "fork":
        s = timer.median(lambda: check(map(f, range(n)), n))
        emit("also", f"(t) serial Python, {'list of str' if param == 0 else 'dict'} results",
             n / s / 1e3, "k items/s")
        with opened(peer, WORKERS) as pool:
            cpu = CpuShare(pool)
            s = timer.median(lambda: cpu.measure(lambda: check(peer.map(pool, f, range(n)), n)))
        return s, n, cpu.note()
    with opened(peer, WORKERS) as pool:
        s = timer.median(lambda: check(peer.map(pool, f, range(n)), n))
    return s, n, "default chunksize 1" if peer.per_message else ""


ROWS = {
    "a": row_a,
    "b": row_b,
    "c": row_c,
    "d": row_d,
    "e_in": row_e_in,
    "e_echo": row_e_echo,
    "g": row_g,
    "h": row_h,
    "i": row_i,
    "j": row_j,
    "k": row_k,
    "l": row_l,
    "m": row_m,
    "n_med": row_n,
    "n_max": row_n,
    "o": row_o,
    "s_doc_imap": row_s,
    "s_man_imap": row_s,
    "t_vec": row_t,
    "t_map": row_t,
}


def main():
    cfg = json.loads(sys.argv[1])
    key = cfg["row"]
    row = ROWS.get(key) or ROWS[key.rstrip("0123456789")]
    sizes = cfg["sizes"]
    timer = Timer(cfg["runs"], cfg["budget"])
    peers = load_peers()
    heap = None
    if row is row_h:
        # The parent's heap, every page written, before any pool starts.
        heap = bytearray(sizes["heap"])
        heap[::4096] = b"\x01" * len(range(0, len(heap), 4096))
    signal.signal(signal.SIGALRM, out_of_time)
    for system, peer in peers.items():
        # A peer that hangs (a lost result, a stuck pool) fails its cell, not the whole run.
        signal.alarm(PEER_LIMIT)
        try:
            value, amount, note = row(peer, sizes, timer, cfg["param"])
        except NoCounterpart as e:
            emit("none", system, e)
            continue
        except Exception as e:  # noqa: BLE001 - one peer's failure must not hide the others
            emit("fail", system, f"{type(e).__name__}: {e}")
            continue
        finally:
            signal.alarm(0)
        emit("cell", system, value, amount, note)
    del heap


if __name__ == "__main__":
    main()
