#!/usr/bin/env python3
"""How long writes and reads wait while the member defragments, swetcd next to real etcd.

For each server (fresh data dir, 127.0.0.1, free ports): write --keys keys of --value-size
bytes, delete every other one, compact, then run `etcdctl defrag` while one writer and one
reader loop on `etcdctl put` / `etcdctl get` (each a fresh etcdctl process, so every figure
includes ~10-20 ms of process start). Prints the defrag's duration, the db size before and
after, and the slowest put and get that overlapped it next to the median outside it.

Usage: Benchmarks/defrag-latency.py --server-bin .build/release/swetcd [--etcd-bin /usr/bin/etcd]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from e2elib import ETCDCTL, ctl, free_port, start, stop  # noqa: E402


def fill(port, keys, size):
    # One txn per 100 puts through etcdctl's txn stdin, to keep the fill quick.
    value = "x" * size
    for base in range(0, keys, 100):
        body = "\n" + "".join("put k%07d %s\n" % (i, value) for i in range(base, min(keys, base + 100))) + "\n\n"
        subprocess.run([ETCDCTL, "--endpoints=127.0.0.1:%d" % port, "txn"], input=body, text=True,
                       capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), check=True, timeout=60)


def status(port):
    r = ctl(port, "endpoint", "status", "-w", "json")
    return json.loads(r.stdout)[0]["Status"]


def measure(server_bin, keys, size):
    work = tempfile.mkdtemp(prefix="defrag-latency-")
    log = open(os.path.join(work, "server.log"), "ab")
    port = free_port()
    p = start(server_bin, os.path.join(work, "data"), port, log)
    try:
        fill(port, keys, size)
        for base in range(0, keys, 2000):
            ctl(port, "del", "k%07d" % base, "k%07d" % min(keys, base + 1000), timeout=60)
        rev = status(port)["header"]["revision"]
        ctl(port, "compact", str(rev), "--physical", timeout=120)
        before = status(port)["dbSize"]
        samples = {"put": [], "get": []}
        stop_flag = threading.Event()

        def loop(kind):
            i = 0
            while not stop_flag.is_set():
                t0 = time.monotonic()
                if kind == "put":
                    ctl(port, "put", "during-%d" % i, "v")
                else:
                    ctl(port, "get", "k0000001")
                samples[kind].append((t0, time.monotonic()))
                i += 1

        threads = [threading.Thread(target=loop, args=(k,)) for k in ("put", "get")]
        for t in threads:
            t.start()
        time.sleep(1.0)          # baseline samples before the defrag
        d0 = time.monotonic()
        r = ctl(port, "--command-timeout=600s", "defrag", timeout=600)
        d1 = time.monotonic()
        time.sleep(1.0)
        stop_flag.set()
        for t in threads:
            t.join()
        after = status(port)["dbSize"]
        out = {"defrag_s": d1 - d0, "ok": r.returncode == 0, "db_before": before, "db_after": after}
        for kind, xs in samples.items():
            during = [e - s for s, e in xs if s < d1 and e > d0]
            outside = [e - s for s, e in xs if e <= d0 or s >= d1]
            out[kind + "_max_during_ms"] = 1000 * max(during) if during else None
            out[kind + "_median_outside_ms"] = 1000 * statistics.median(outside) if outside else None
        return out
    finally:
        stop(p)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--value-size", type=int, default=2048)
    args = ap.parse_args()
    for name, binary in (("swetcd", args.server_bin), ("etcd", args.etcd_bin)):
        m = measure(binary, args.keys, args.value_size)
        print("%-7s defrag %.2fs (%s), db %d -> %d bytes; put: slowest during %.0f ms, median outside %.0f ms; "
              "get: slowest during %.0f ms, median outside %.0f ms" % (
                  name, m["defrag_s"], "ok" if m["ok"] else "FAILED", m["db_before"], m["db_after"],
                  m["put_max_during_ms"] or 0, m["put_median_outside_ms"] or 0,
                  m["get_max_during_ms"] or 0, m["get_median_outside_ms"] or 0))


if __name__ == "__main__":
    main()
