#!/usr/bin/env python3
"""swetcd and real etcd 3.4.23 side by side (issue 9's runner).

Every workload runs, for each round and each server (alternating which server goes first),
on a fresh data dir and a fresh server start with the same flags, under
`strace -f -c --seccomp-bpf -e trace=fdatasync,fsync` (or, with `--sync-counter perf`, under
`perf stat` counting the fdatasync/fsync tracepoints), so the sync count and the peak RSS
belong to that workload alone. Workloads:

    put-1            swetcd-benchmark put, 1 connection, 1 client, 10,000 sequential keys
    put-100          swetcd-benchmark put, 10 connections, 100 clients, 100,000 keys
    range-l/range-s  swetcd-benchmark range foo, 100 clients, 100,000 reads, linearizable /
                     serializable (after one `etcdctl put foo` of 256 bytes)
    txn-put          swetcd-benchmark txn-put, 100 clients, 50,000 txns
    watch-latency    swetcd-benchmark watch-latency, 100 watchers, 1,000 puts at 100/s
    lease-keepalive  swetcd-benchmark lease-keepalive, 100 clients, 100,000 keepalives
    perf-l, perf-xl  stock `etcdctl check perf --load=l|xl` (also perf-s, perf-m on request)
    datascale-s      stock `etcdctl check datascale --load=s` (reads the server's /metrics)
    clientv3-put-100 the cross-check of put-100 through Go's clientv3 (Benchmarks/clientv3,
                     built here with Debian's Go sources when `go` is installed)
    clientv3-put-500 check perf's shape (500 clients, a connection each, 256-byte keys, 1 KiB
                     values, random keys) through clientv3 without check perf's rate limiter:
                     100,000 puts as fast as the member takes them

With the clientv3 tool, the header also gives what check perf's rate limiter (Go's
golang.org/x/time/rate, burst 1) lets through in a process doing nothing else.

Writes are counted as the revision difference (`etcdctl endpoint status`) across the
workload; syncs are reported per 1,000 writes, or per 1,000 requests for the read-only and
keepalive workloads. After each workload the server's VmHWM (peak RSS) is read from /proc.
At the end: one markdown table per workload (medians over the rounds, both servers, ratio
swetcd/etcd), the machine, the date and the command line, ready to paste into the README.

    python3 Benchmarks/side-by-side.py --swetcd-bin .build/release/swetcd \\
        --loadgen-bin .build/release/swetcd-benchmark --rounds 3 --json-out results.json

Bounded: every subprocess has a timeout, every server is stopped by its PID, everything binds
127.0.0.1 on free ports."""
import argparse, datetime, json, os, platform, re, shlex, shutil, signal, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from e2elib import ctl, free_port, start, stop  # noqa: E402

# name -> (kind, arguments, what syncs are counted per: "writes" or "requests")
WORKLOADS = {
    "put-1": ("loadgen", "put --conns 1 --clients 1 --total 10000 --key-size 8 --val-size 256"
                         " --sequential-keys --key-space-size 10000", "writes"),
    "put-100": ("loadgen", "put --conns 10 --clients 100 --total 100000 --key-size 8 --val-size 256"
                           " --sequential-keys --key-space-size 100000", "writes"),
    "range-l": ("loadgen", "range foo --conns 10 --clients 100 --total 100000 --consistency l", "requests"),
    "range-s": ("loadgen", "range foo --conns 10 --clients 100 --total 100000 --consistency s", "requests"),
    "txn-put": ("loadgen", "txn-put --conns 10 --clients 100 --total 50000 --key-size 8 --val-size 256"
                           " --key-space-size 100000", "writes"),
    "watch-latency": ("loadgen", "watch-latency --conns 10 --clients 10 --streams 10 --watchers-per-stream 10"
                                 " --put-total 1000 --put-rate 100 --val-size 256", "writes"),
    "lease-keepalive": ("loadgen", "lease-keepalive --conns 10 --clients 100 --total 100000", "requests"),
}
WORKLOADS.update({
    "clientv3-put-100": ("clientv3", "put --conns 10 --clients 100 --total 100000 --key-size 8 --val-size 256"
                                     " --sequential-keys --key-space-size 100000", "writes"),
    "clientv3-put-500": ("clientv3", "put --conns 500 --clients 500 --total 100000 --key-size 256 --val-size 1024",
                         "writes"),
})
WORKLOADS.update({"perf-" + load: ("perf", load, "writes") for load in ("s", "m", "l", "xl")})
WORKLOADS.update({"datascale-" + load: ("datascale", load, "writes") for load in ("s", "m", "l", "xl")})
DEFAULT_WORKLOADS = ["put-1", "put-100", "range-l", "range-s", "txn-put", "watch-latency",
                     "lease-keepalive", "perf-l", "perf-xl", "datascale-s", "clientv3-put-100", "clientv3-put-500"]
CLIENTV3_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clientv3", "main.go")
SERVERS = ("swetcd", "etcd")


def raw_fdatasync_ms(directory, n=300):
    """p50 and p99 of a 4 KiB pwrite + fdatasync in `directory`'s file system."""
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
    r = ctl(port, "endpoint", "status", "-w", "json", timeout=20)
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


def perf_syncs(path):
    """fdatasync + fsync calls from `perf stat -x,` output (count,unit,event,...)."""
    n = 0
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2] in ("syscalls:sys_enter_fdatasync", "syscalls:sys_enter_fsync"):
                n += int(parts[0]) if parts[0].isdigit() else 0
    return n


# How a server's syncs are counted: the command that runs it, and the parser of its table.
SYNC_COUNTERS = {
    "strace": ("strace -f -c --seccomp-bpf -e trace=fdatasync,fsync -o %s", strace_syncs),
    # In-kernel tracepoint counts, inherited by every thread: no ptrace stops, so the server
    # runs at full speed (strace -f stops each traced call and every thread creation).
    "perf": ("perf stat -x , -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -o %s", perf_syncs),
}


def read_pid(pidfile):
    """The server's PID as its wrapper wrote it, or None before that."""
    try:
        with open(pidfile) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def send(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def stop_server(p, pid):
    """By PID: SIGTERM, SIGKILL after 30 s. Under strace, `p` is strace and `pid` its traced
    server: the server gets the signal, and strace then writes its table and exits."""
    if p is not None and pid in (None, p.pid):
        stop(p, timeout=30)
    elif p is None:
        if pid is not None:  # start() failed and killed strace; its server may live on
            send(pid, signal.SIGKILL)
    else:
        send(pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            send(pid, signal.SIGKILL)
            stop(p)


def run_loadgen(loadgen, args, port, timeout):
    cmd = [loadgen] + args.split() + ["--endpoints", "127.0.0.1:%d" % port]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if r.returncode != 0 or not lines or not lines[-1].startswith("JSON "):
        raise RuntimeError("load generator exited %d without a last `JSON {...}` line; stderr: %s"
                           % (r.returncode, r.stderr.strip()[-500:]))
    res = json.loads(lines[-1][len("JSON "):])
    res["requests"] = res["total"]
    res["report"] = "\n".join(lines[:-1])
    return res


def build_clientv3(work):
    """The Go cross-check tool, built from Debian's Go sources (nothing fetched); None without Go."""
    go = shutil.which("go")
    if go is None:
        return None
    out = os.path.join(work, "clientv3-bench")
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off")
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = os.path.join(work, "gocache")
    r = subprocess.run([go, "build", "-o", out, CLIENTV3_SOURCE], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        print("clientv3 tool not built: %s" % r.stderr.strip()[-500:], file=sys.stderr)
        return None
    return out


def limiter_lines(clientv3):
    """What check perf's rate limiter lets through alone, for --load=l and --load=xl."""
    cells = []
    for load, limit in (("l", 8000), ("xl", 15000)):
        r = subprocess.run([clientv3, "limiter", "--rate", str(limit), "--seconds", "3"],
                           capture_output=True, text=True, timeout=30)
        cells.append("--load=%s asks %d/s, gets %s/s" % (load, limit, r.stdout.strip() or "?"))
    return ["- etcdctl check perf's rate limiter (x/time/rate, burst 1) alone in an idle process: " + "; ".join(cells)]


def run_perf(load, port, timeout):
    r = ctl(port, "check", "perf", "--load=" + load, timeout=timeout)
    out = r.stdout + r.stderr
    # PASS and FAIL lines: "PASS: Throughput is N writes/s" / "FAIL: Throughput too low: N writes/s",
    # "PASS: Slowest request took Xs" / "Slowest request took too long: Xs", likewise Stddev.
    rate = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", out)
    slow = re.search(r"Slowest request took (?:too long: )?([\d.]+)s", out)
    sd = re.search(r"Stddev (?:is|too high:) ([\d.]+)s", out)
    res = {
        "verdict": "PASS" if r.returncode == 0 and "FAIL" not in out else "FAIL",
        "lines": [l for l in out.splitlines() if l.startswith(("PASS", "FAIL", "Slowest", "Stddev"))],
    }
    if rate:
        res["requests_per_s"] = int(rate.group(1))
    if slow:
        res["slowest_ms"] = float(slow.group(1)) * 1000
    if sd:
        res["stddev_ms"] = float(sd.group(1)) * 1000
    return res


def run_datascale(load, port, timeout):
    r = ctl(port, "check", "datascale", "--load=" + load, timeout=timeout)
    out = r.stdout + r.stderr
    mem = re.search(r"PASS: Approximate system memory used : ([\d.]+) MB\.", out)
    res = {"verdict": "PASS" if r.returncode == 0 and mem else "FAIL",
           "lines": [l for l in out.splitlines() if l.startswith(("PASS", "FAIL", "fetch error", "could not find"))
                     or "Error" in l]}
    if mem:
        res["datascale_mb"] = float(mem.group(1))
    return res


def run_one(name, binary, workload, a, work, use_strace):
    counter, parse_syncs = SYNC_COUNTERS[a.sync_counter]
    kind, arg, unit = WORKLOADS[workload]
    data = tempfile.mkdtemp(prefix="data-", dir=work)
    port = free_port()
    log = open(os.path.join(work, "server-%s.log" % name), "ab")
    strace_out = os.path.join(work, "strace-%d.txt" % port)
    pidfile = os.path.join(work, "server-%d.pid" % port)
    if use_strace:
        # strace runs a shell that writes its PID and execs the server (same PID); strace -c
        # writes its table when the traced server exits.
        wrapper = os.path.join(work, "wrap-%d.sh" % port)
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + counter % shlex.quote(strace_out) +
                    " sh -c 'echo $$ > \"$0\"; exec \"$@\"' %s %s \"$@\"\n"
                    % (shlex.quote(pidfile), shlex.quote(binary)))
        os.chmod(wrapper, 0o755)
    res = {"server": name, "workload": workload}
    p = pid = None
    try:
        p = start(wrapper if use_strace else binary, data, port, log)
        pid = read_pid(pidfile) if use_strace else p.pid
        if pid is None:
            raise RuntimeError("no PID from the strace wrapper")
        if workload.startswith("range-"):
            if ctl(port, "put", "foo", "v" * 256, timeout=20).returncode != 0:
                raise RuntimeError("etcdctl put foo failed")
        before = revision(port)
        t0 = time.monotonic()
        if kind == "loadgen":
            res.update(run_loadgen(a.loadgen_bin, arg, port, a.timeout))
        elif kind == "clientv3":
            res.update(run_loadgen(a.clientv3_bin, arg, port, a.timeout))
        elif kind == "perf":
            res.update(run_perf(arg, port, a.timeout))
        else:
            res.update(run_datascale(arg, port, a.timeout))
        res["wall_s"] = time.monotonic() - t0
        res["writes"] = revision(port) - before
        res["peak_rss_mb"] = peak_rss_mb(pid)
    except subprocess.TimeoutExpired as e:
        res["error"] = "%s timed out after %.0f s" % (os.path.basename(e.cmd[0]), e.timeout)
    except Exception as e:  # one failed run (crash, unparsable output) must not end the others
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if use_strace and pid is None:
            pid = read_pid(pidfile)
        stop_server(p, pid)
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    if use_strace and os.path.exists(strace_out) and "error" not in res:
        res["syncs"] = parse_syncs(strace_out)
        count = res["writes"] if unit == "writes" else res.get("requests", 0)
        if count:
            res["syncs_per_1000"] = 1000.0 * res["syncs"] / count
    return res


def run_line(workload, rnd, res):
    head = "%-15s round %d %-6s " % (workload, rnd, res["server"])
    if "error" in res:
        return head + "ERROR " + res["error"]
    parts = []
    if "requests_per_s" in res:
        parts.append("%.0f %s/s" % (res["requests_per_s"], "writes" if WORKLOADS[workload][0] == "perf" else "req"))
    if "p50_ms" in res:
        parts.append("p50 %.2f p99 %.2f ms" % (res["p50_ms"], res["p99_ms"]))
    if "errors" in res:
        parts.append("%d errors" % res["errors"])
    if "slowest_ms" in res:
        parts.append("slowest %.1f ms" % res["slowest_ms"])
    if "datascale_mb" in res:
        parts.append("datascale %.2f MB" % res["datascale_mb"])
    if "verdict" in res:
        parts.append(res["verdict"])
    if "syncs_per_1000" in res:
        parts.append("%.1f syncs/1000 %s" % (res["syncs_per_1000"], WORKLOADS[workload][2]))
    parts.append("%d writes" % res["writes"])
    if res.get("peak_rss_mb") is not None:
        parts.append("peak RSS %.0f MB" % res["peak_rss_mb"])
    return head + "  ".join(parts)


def table(workload, results, rounds):
    kind, _, unit = WORKLOADS[workload]
    lines = ["", "### %s (median of %d round%s)" % (workload, rounds, "" if rounds == 1 else "s"), "",
             "| figure | swetcd | etcd | swetcd/etcd |", "|---|---|---|---|"]
    rows = [("requests_per_s", "writes/s" if kind == "perf" else "requests/s", "%.0f"),
            ("p50_ms", "p50 (ms)", "%.2f"), ("p90_ms", "p90 (ms)", "%.2f"),
            ("p99_ms", "p99 (ms)", "%.2f"), ("p999_ms", "p99.9 (ms)", "%.2f"),
            ("slowest_ms", "slowest request (ms)", "%.1f"), ("stddev_ms", "stddev (ms)", "%.1f"),
            ("syncs_per_1000", "fdatasync+fsync per 1,000 %s" % unit, "%.1f"),
            ("peak_rss_mb", "peak RSS (MB)", "%.0f"),
            ("datascale_mb", "datascale memory used (MB)", "%.2f")]
    ok = {n: [r for r in results[n] if "error" not in r] for n in SERVERS}
    for key, label, fmt in rows:
        vals = {n: [r[key] for r in ok[n] if r.get(key) is not None] for n in SERVERS}
        if not any(vals.values()):
            continue
        med = {n: statistics.median(vals[n]) if vals[n] else None for n in SERVERS}
        cells = [fmt % med[n] if med[n] is not None else "–" for n in SERVERS]
        ratio = "%.2f" % (med["swetcd"] / med["etcd"]) if med["swetcd"] is not None and med["etcd"] else ""
        lines.append("| %s | %s | %s | %s |" % (label, cells[0], cells[1], ratio))
    if any("errors" in r for n in SERVERS for r in ok[n]):
        lines.append("| request errors (all rounds) | %d | %d | |" % tuple(
            sum(r.get("errors", 0) for r in ok[n]) for n in SERVERS))
    if kind in ("perf", "datascale"):
        lines.append("| verdicts | %s | %s | |" % tuple(" ".join(r["verdict"] for r in ok[n]) or "–" for n in SERVERS))
    failed = [len(results[n]) - len(ok[n]) for n in SERVERS]
    if any(failed):
        lines.append("| failed runs | %d | %d | |" % tuple(failed))
    return lines


def machine_lines(a, argv, fsync, use_strace):
    counter = SYNC_COUNTERS[a.sync_counter][0].replace(" -o %s", "")
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    etcd_version = subprocess.run([a.etcd_bin, "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.splitlines()[:1]
    return [
        "- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "- machine: %d CPUs (nproc), %s, Linux %s" % (os.cpu_count(), cpu, platform.release()),
        "- servers: swetcd `%s`, etcd `%s` (%s)" % (a.swetcd_bin, a.etcd_bin, (etcd_version or ["?"])[0]),
        "- command: `%s`" % shlex.join(["python3"] + argv),
        "- raw fdatasync (4 KiB, data dirs' file system): p50 %.2f ms, p99 %.2f ms" % fsync,
        "- servers run under `%s` (fdatasync/fsync counted)" % counter if use_strace
        else "- servers run without a sync counter: no sync counts",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--swetcd-bin", required=True)
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--loadgen-bin", default=".build/release/swetcd-benchmark")
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help="comma-separated, from: " + ", ".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed to one workload's client")
    ap.add_argument("--no-strace", action="store_true", help="run the servers without a sync counter")
    ap.add_argument("--sync-counter", choices=sorted(SYNC_COUNTERS), default="strace",
                    help="strace -f -c (the default; its ptrace stops slow a server down, the more"
                         " threads it starts the more) or perf stat's syscall tracepoints")
    ap.add_argument("--dir", default=None, help="where the data dirs go (default: a temp dir in the current directory)")
    ap.add_argument("--json-out", default=None, help="write every run's raw results here (after each run)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the work dir (server logs, strace tables)")
    a = ap.parse_args()
    workloads = a.workloads.split(",")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        ap.error("unknown workload(s) %s; known: %s" % (", ".join(unknown), ", ".join(WORKLOADS)))
    a.swetcd_bin = os.path.abspath(a.swetcd_bin)
    a.loadgen_bin = os.path.abspath(a.loadgen_bin)
    if any(WORKLOADS[w][0] == "loadgen" for w in workloads) and not os.access(a.loadgen_bin, os.X_OK):
        ap.error("no load generator at %s (--loadgen-bin)" % a.loadgen_bin)
    use_strace = not a.no_strace and shutil.which(a.sync_counter) is not None
    servers = {"swetcd": a.swetcd_bin, "etcd": a.etcd_bin}

    work = tempfile.mkdtemp(prefix="side-by-side-", dir=a.dir or os.getcwd())
    fsync = raw_fdatasync_ms(work)
    header = machine_lines(a, sys.argv, fsync, use_strace)
    a.clientv3_bin = build_clientv3(work) if any(WORKLOADS[w][0] == "clientv3" for w in workloads) else None
    if a.clientv3_bin:
        header += limiter_lines(a.clientv3_bin)
    else:
        skipped = [w for w in workloads if WORKLOADS[w][0] == "clientv3"]
        if skipped:
            header.append("- the clientv3 tool is not built (no Go toolchain, or its build failed): %s skipped"
                          % ", ".join(skipped))
        workloads = [w for w in workloads if WORKLOADS[w][0] != "clientv3"]
    print("\n".join(header), flush=True)
    raw = {"machine": header, "raw_fdatasync_ms": {"p50": fsync[0], "p99": fsync[1]}, "results": {}}
    try:
        for workload in workloads:
            results = raw["results"][workload] = {n: [] for n in SERVERS}
            for rnd in range(a.rounds):
                order = SERVERS if rnd % 2 == 0 else tuple(reversed(SERVERS))
                for name in order:
                    res = run_one(name, servers[name], workload, a, work, use_strace)
                    results[name].append(res)
                    print(run_line(workload, rnd + 1, res), flush=True)
                    for l in res.get("lines", []):
                        print("    " + l)
                    if a.json_out:
                        with open(a.json_out, "w") as f:
                            json.dump(raw, f, indent=1)
    finally:
        if a.keep_logs:
            print("logs kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print("\n## swetcd vs etcd 3.4.23, side by side\n")
    print("\n".join(header))
    for workload in workloads:
        print("\n".join(table(workload, raw["results"][workload], a.rounds)))
        if workload == "put-1":
            ratios = []
            for n in SERVERS:
                p50s = [r["p50_ms"] for r in raw["results"][workload][n] if "error" not in r]
                if p50s:
                    ratios.append("%s %.2f" % (n, statistics.median(p50s) / fsync[0]))
            if ratios:
                print("\nput-1, median p50 / raw fdatasync p50: " + ", ".join(ratios))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
