"""The Python side of `cargo run --release --example compare`: the same workloads on
multiprocessing.Pool (fork context) and concurrent.futures.ProcessPoolExecutor.

Prints one JSON object: {system: {workload: median seconds (or bytes, for "g")}} plus the
item counts used, for the Rust harness to turn into rates. Runs each timing 5 times.
"""

import concurrent.futures
import json
import multiprocessing as mp
import statistics
import sys
import time

RUNS = 5
WORKERS = 2
START = 1_000_000_000_001


def inc(x):
    return x + 1


def length(b):
    return len(b)


def echo(b):
    return b


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


def median_seconds(f, runs=RUNS):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_above_baseline(f):
    """Peak resident memory of this process while f runs, above what it held before (Linux)."""
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


def main():
    n = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    a_items = n.get("a", 1_000_000)
    b_items = n.get("b", 100_000)
    c_items = n.get("c", 10_000)
    e_bufs = n.get("e", 64)
    g_items = n.get("g", 10_000_000)
    ppe_items = n.get("ppe", 20_000)
    ctx = mp.get_context("fork")
    numbers = [START + 2 * i for i in range(c_items)]
    buf = bytes(1 << 20)
    out = {"items": {"a": a_items, "b": b_items, "c": c_items, "e": e_bufs, "g": g_items,
                     "ppe": ppe_items}}

    pool = ctx.Pool(WORKERS)
    res = {}
    res["a"] = median_seconds(lambda: pool.map(inc, range(a_items)))
    res["b"] = median_seconds(lambda: pool.map(inc, range(b_items), chunksize=1))
    res["c"] = median_seconds(lambda: pool.map(is_prime, numbers))
    res["e_in"] = median_seconds(lambda: pool.map(length, [buf] * e_bufs, chunksize=1))
    res["e_echo"] = median_seconds(lambda: pool.map(echo, [buf] * e_bufs, chunksize=1))
    # imap over g_items, chunksize 10,000 (its default, 1, would take minutes): memory only.
    res["g"] = peak_rss_above_baseline(
        lambda: sum(1 for _ in pool.imap(inc, range(g_items), chunksize=10_000)))
    pool.close()
    pool.join()

    def start_and_stop():
        p = ctx.Pool(WORKERS)
        p.close()
        p.join()

    res["d"] = median_seconds(start_and_stop)
    out["python_pool"] = res

    res = {}
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
        list(ex.map(inc, range(100)))  # start the workers
        # Its default chunksize is 1: run a smaller input and report per item.
        res["a"] = median_seconds(lambda: list(ex.map(inc, range(ppe_items))))
        res["b"] = res["a"]
        res["c"] = median_seconds(lambda: list(ex.map(is_prime, numbers)))
        res["e_in"] = median_seconds(lambda: list(ex.map(length, [buf] * e_bufs)))
        res["e_echo"] = median_seconds(lambda: list(ex.map(echo, [buf] * e_bufs)))

    def executor_start_and_stop():
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            ex.submit(inc, 1).result()  # it forks lazily: make it start

    res["d"] = median_seconds(executor_start_and_stop)
    out["process_pool_executor"] = res
    print(json.dumps(out))


if __name__ == "__main__":
    main()
