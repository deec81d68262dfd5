#!/usr/bin/env python3
"""One data dir, two servers: real etcd 3.4.23 and swetcd take turns on it.

1. real etcd writes (puts over many revisions, deletes, a txn, a compaction) and stops;
2. swetcd starts on etcd's files (WAL, member/snap/db) and must answer every read at every
   revision from the compaction on exactly as etcd did; then it writes more with
   --snapshot-count 40, so it takes snapshots (.snap with the v2 store) and releases WAL
   segments, and stops;
3. real etcd starts on swetcd's files (its db, WAL and .snap) and must answer every read as
   swetcd did; `etcdctl snapshot status` reads the db and reports the revision and the
   number of keys of every bucket.

Usage: datadir_exchange.py --server-bin PATH [--etcd-bin /usr/bin/etcd]
Prints 'datadir-exchange: N passed, N failed' and exits non-zero on failure.
"""
import argparse, glob, json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import ETCDCTL, ctl, free_port, start, stop  # noqa: E402


def reads(port, first_rev):
    """Every key at every revision from first_rev to the current one, plus the current state."""
    r = ctl(port, "get", "", "--prefix", "-w", "json")
    if r.returncode != 0:
        raise RuntimeError("get failed: %s" % r.stderr)
    head = json.loads(r.stdout)
    out = {"current": head.get("kvs", []), "revision": head["header"]["revision"]}
    for rev in range(first_rev, head["header"]["revision"] + 1):
        r = ctl(port, "get", "", "--prefix", "--rev=%d" % rev, "-w", "json")
        out[rev] = json.loads(r.stdout).get("kvs", []) if r.returncode == 0 else r.stderr.strip()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    args = ap.parse_args()
    if not os.path.exists(args.etcd_bin):
        print("datadir-exchange: real etcd not found at %s" % args.etcd_bin)
        return 1
    work = tempfile.mkdtemp(prefix="swetcd-exchange-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "servers.log"), "ab")
    checks = []

    def check(name, ok, detail=""):
        checks.append(ok)
        print("%s %s%s" % ("ok  " if ok else "FAIL", name, "" if ok else ": " + detail))

    procs = []
    try:
        # 1. real etcd writes.
        port = free_port()
        p = start(args.etcd_bin, data, port, log)
        procs.append(p)
        for i in range(60):
            ctl(port, "put", "k%02d" % (i % 17), "v%d" % i)
        ctl(port, "del", "k05")
        ctl(port, "del", "k1", "--prefix")
        ctl(port, "compact", "20")
        txn = subprocess.run([ETCDCTL, "--endpoints=127.0.0.1:%d" % port, "txn"],
                             input='value("k02") = "v53"\n\nput k02 txn\ndel k03\n\n\n', capture_output=True,
                             text=True, timeout=10, env=dict(os.environ, ETCDCTL_API="3"))
        check("etcd txn", txn.returncode == 0, txn.stderr)
        by_etcd = reads(port, 20)
        stop(p)

        # 2. swetcd on etcd's data dir.
        port = free_port()
        p = start(args.server_bin, data, port, log, extra=["--snapshot-count", "40", "--max-wals", "5"])
        procs.append(p)
        got = reads(port, 20)
        check("swetcd reads etcd's keys at every revision", got == by_etcd,
              json.dumps({k: (by_etcd.get(k), got.get(k)) for k in by_etcd if by_etcd.get(k) != got.get(k)})[:2000])
        for i in range(150):
            ctl(port, "put", "s%03d" % (i % 50), "w%d" % i)
        ctl(port, "del", "k0", "--prefix")
        ctl(port, "compact", "100")
        by_swetcd = reads(port, 100)
        stop(p)
        snaps = glob.glob(os.path.join(data, "member", "snap", "*.snap"))
        check("swetcd took snapshots", len(snaps) >= 1, "no .snap files")

        # 3. real etcd on swetcd's data dir.
        port = free_port()
        p = start(args.etcd_bin, data, port, log)
        procs.append(p)
        got = reads(port, 100)
        check("etcd reads swetcd's keys at every revision", got == by_swetcd,
              json.dumps({k: (by_swetcd.get(k), got.get(k)) for k in by_swetcd if by_swetcd.get(k) != got.get(k)})[:2000])
        r = ctl(port, "member", "list", "-w", "json")
        members = json.loads(r.stdout).get("members", []) if r.returncode == 0 else []
        check("etcd sees the member from swetcd's snapshot", [m.get("name") for m in members] == ["default"], r.stdout)
        stop(p)

        r = ctl(0, "snapshot", "status", os.path.join(data, "member", "snap", "db"), "-w", "json")
        status = json.loads(r.stdout) if r.returncode == 0 else {}
        check("etcdctl snapshot status reads the db", status.get("revision") == by_swetcd["revision"],
              r.stdout + r.stderr)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        check("run", False, str(e))
    finally:
        for p in procs:
            stop(p)
        log.close()
    failed = checks.count(False)
    print("datadir-exchange: %d passed, %d failed" % (len(checks) - failed, failed))
    if failed:
        print("logs kept in %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
