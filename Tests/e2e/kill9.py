#!/usr/bin/env python3
"""End-to-end durability under SIGKILL: concurrent writers put numbered keys through the
gRPC API (stock etcdctl), the server is killed with SIGKILL at random moments, restarted
on the same data dir, and every acknowledged key must be there with its value; revisions
continue without gaps or repeats (every revision up to the current one holds one put).

Usage: kill9.py --server-bin PATH [--kills 20] [--seed 1]
Prints 'kill9: N passed, N failed' (one check after each kill point, and one at the start) and exits non-zero on failure.
"""
import argparse, base64, json, os, random, shutil, signal, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import ctl, free_port, start  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="swetcd-kill9-")
    data_dir = os.path.join(work, "data")
    log = open(os.path.join(work, "server.log"), "ab")
    acked = {}          # key -> value, for every put etcdctl reported OK
    lock = threading.Lock()
    counter = [0]
    passed = failed = 0
    try:
        # One start per kill point, and a last one to check what the last kill left.
        for kill in range(args.kills + 1):
            port = free_port()
            proc = start(args.server_bin, data_dir, port, log)
            # Check everything acknowledged so far survived the previous kill.
            r = ctl(port, "get", "k", "--prefix", "-w", "json", timeout=20)
            ok = r.returncode == 0
            problems = []
            if ok:
                resp = json.loads(r.stdout)
                kvs = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                       for kv in resp.get("kvs", [])}
                for k, v in acked.items():
                    if kvs.get(k) != v:
                        problems.append("acknowledged %s=%s missing (got %r)" % (k, v, kvs.get(k)))
                mods = sorted(int(kv["mod_revision"]) for kv in resp.get("kvs", []))
                rev = int(resp["header"]["revision"])
                # Every key is put once: revisions 2..rev each hold exactly one key.
                if mods != list(range(2, rev + 1)):
                    problems.append("revisions not contiguous: %d keys, current revision %d" % (len(mods), rev))
            else:
                problems.append("get failed: %s" % r.stderr.strip()[-300:])
            if problems:
                failed += 1
                print("FAIL kill point %d: %s" % (kill, "; ".join(problems[:5])))
            else:
                passed += 1
            if kill == args.kills:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
                break
            # Write concurrently, then SIGKILL at a random moment.
            stop = threading.Event()

            def writer(w):
                while not stop.is_set():
                    with lock:
                        counter[0] += 1
                        n = counter[0]
                    key, val = "k%06d" % n, "v%d-%d" % (n, w)
                    try:
                        res = ctl(port, "put", key, val, timeout=10)
                    except subprocess.TimeoutExpired:
                        continue
                    if res.returncode == 0:
                        with lock:
                            acked[key] = val
            threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
            for t in threads:
                t.join()
        # A put that failed (the kill) may still have been applied: it is then present with
        # its value, which is allowed; only acknowledged ones must be there.
    finally:
        log.close()
        if failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kill9: logs kept in %s" % work)
    print("kill9: %d acknowledged puts over %d kill points" % (len(acked), args.kills))
    print("kill9: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
