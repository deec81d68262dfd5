#!/usr/bin/env python3
"""swetcd and real etcd 3.4.23 side by side (issue 9, first part of the runner): for each
round, each server (alternating which goes first) starts on a fresh data dir with the same
flags, under `strace -f -c` (fdatasync/fsync counted), and stock `etcdctl check perf
--load=L` runs against it (Go's clientv3, what users run). Printed per load: writes/s,
slowest request, stddev and PASS/FAIL of each server, medians over the rounds, the ratio
swetcd/etcd, syncs per 1,000 writes, and the machine's raw fdatasync latency (a 4 KiB
write + fdatasync in the data dirs' file system: the floor of a durable single-client put).

    python3 Benchmarks/side-by-side.py --swetcd-bin .build/release/swetcd --loads s,l --rounds 3

Bounded: each server runs only for its check (etcd's check perf lasts 60 s) and is stopped by
its PID; everything binds 127.0.0.1 on free ports."""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from e2elib import ETCDCTL, free_port, start, stop


def raw_fdatasync_ms(directory, n=300):
    path = os.path.join(directory, "fdatasync.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    block = os.urandom(4096)
    times = []
    try:
        for i in range(n):
            os.pwrite(fd, block, (i % 64) * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.remove(path)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def revision(port):
    r = subprocess.run([ETCDCTL, "--endpoints=127.0.0.1:%d" % port, "endpoint", "status", "-w", "json"],
                       capture_output=True, text=True, timeout=20)
    return json.loads(r.stdout)[0]["Status"]["header"]["revision"]


def strace_syncs(path):
    """fdatasync + fsync calls from `strace -c` output."""
    n = 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[-1] in ("fdatasync", "fsync"):
                n += int(parts[3])
    return n


def run_one(binary, load, work, use_strace):
    data = tempfile.mkdtemp(prefix="data-", dir=work)
    port = free_port()
    log = open(os.path.join(work, "server-%s.log" % os.path.basename(binary)), "ab")
    strace_out = os.path.join(work, "strace-%d.txt" % port)
    if use_strace:
        # strace -c writes its table when the traced server exits.
        wrapper = os.path.join(work, "wrap-%d.sh" % port)
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec strace -f -c -e trace=fdatasync,fsync -o %s %s \"$@\"\n" % (strace_out, binary))
        os.chmod(wrapper, 0o755)
        p = start(wrapper, data, port, log)
    else:
        p = start(binary, data, port, log)
    try:
        before = revision(port)
        r = subprocess.run([ETCDCTL, "--endpoints=127.0.0.1:%d" % port, "check", "perf", "--load=" + load],
                           capture_output=True, text=True, timeout=300)
        writes = revision(port) - before
    finally:
        if use_strace:
            # The server (strace's child) gets SIGTERM, so strace writes its table and exits.
            subprocess.run(["pkill", "-TERM", "-P", str(p.pid)])
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop(p)
        else:
            stop(p)
    out = r.stdout + r.stderr
    m = re.search(r"Throughput is (\d+) writes/s", out)
    slow = re.search(r"Slowest request took ([\d.]+)s", out)
    sd = re.search(r"Stddev is ([\d.]+)s", out)
    res = {
        "writes_per_s": int(m.group(1)) if m else 0,
        "slowest_ms": float(slow.group(1)) * 1000 if slow else float("nan"),
        "stddev_ms": float(sd.group(1)) * 1000 if sd else float("nan"),
        "verdict": "PASS" if "PASS" in out and "FAIL" not in out else "FAIL",
        "lines": [l for l in out.splitlines() if l.startswith(("PASS", "FAIL"))],
        "writes": writes,
    }
    if use_strace and os.path.exists(strace_out):
        res["syncs_per_1000"] = 1000.0 * strace_syncs(strace_out) / max(writes, 1)
    shutil.rmtree(data, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swetcd-bin", required=True)
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--loads", default="s")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--dir", default=None, help="where the data dirs go (default: a temp dir in the current directory)")
    a = ap.parse_args()
    use_strace = not a.no_strace and shutil.which("strace") is not None
    work = tempfile.mkdtemp(prefix="side-by-side-", dir=a.dir or os.getcwd())
    servers = {"swetcd": os.path.abspath(a.swetcd_bin), "etcd": a.etcd_bin}
    p50, p99 = raw_fdatasync_ms(work)
    print("raw fdatasync (4 KiB, %s): p50 %.2f ms, p99 %.2f ms" % (work, p50, p99), flush=True)
    try:
        for load in a.loads.split(","):
            results = {name: [] for name in servers}
            for rnd in range(a.rounds):
                order = list(servers) if rnd % 2 == 0 else list(reversed(list(servers)))
                for name in order:
                    res = run_one(servers[name], load, work, use_strace)
                    results[name].append(res)
                    print("load=%s round %d %-6s %5d writes/s  slowest %.1f ms  %s%s" % (
                        load, rnd + 1, name, res["writes_per_s"], res["slowest_ms"], res["verdict"],
                        ("  %.1f syncs/1000 writes" % res["syncs_per_1000"]) if "syncs_per_1000" in res else ""), flush=True)
                    for l in res["lines"]:
                        print("    " + l)
            print("\nload=%s, median over %d rounds" % (load, a.rounds))
            print("| figure | swetcd | etcd | swetcd/etcd |\n|---|---|---|---|")
            for key, label in [("writes_per_s", "writes/s"), ("slowest_ms", "slowest request (ms)"),
                               ("stddev_ms", "stddev (ms)"), ("syncs_per_1000", "fdatasync+fsync per 1,000 writes")]:
                vals = {n: [r[key] for r in results[n] if key in r] for n in servers}
                if not all(vals.values()):
                    continue
                s, e = statistics.median(vals["swetcd"]), statistics.median(vals["etcd"])
                print("| %s | %.1f | %.1f | %.2f |" % (label, s, e, s / e if e else float("nan")))
            print("| check perf verdicts | %s | %s | |" % (" ".join(r["verdict"] for r in results["swetcd"]),
                                                          " ".join(r["verdict"] for r in results["etcd"])), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
