#!/usr/bin/env python3
"""Multi-member clusters of a server binary (swetcd, or real etcd for comparison), driven by
stock etcdctl. Every member binds 127.0.0.1 on free ports, is started and stopped by PID,
and every call has a time bound. Each check uses a fresh cluster:

  replication   a put on one member is read on every member (linearizable and serializable);
                `endpoint status --cluster` shows 3 members, one leader, equal revisions;
                `member list` has 3 members; `endpoint hashkv --cluster` agrees.
  kill_leader   concurrent writers on all members, the leader SIGKILLed mid-way and restarted:
                a new leader is elected, every acknowledged put is read back with its value on
                every member, hashkv agrees.
  kill_follower the same with a follower.
  pause_leader  SIGSTOP the leader, a new leader is elected, a new value is written through it,
                SIGCONT: a linearizable get on the old leader never returns the stale value.
  partition     (swetcd's fault hook, SWETCD_TEST_PEER_FAULTS) the leader's peer traffic is
                cut: the others elect a leader and take writes; the old leader refuses
                linearizable reads; after healing it serves the new value.
  linearizable  clients put and get one register on random members while the leader is
                killed and restarted; the history (invocation/response times, results) is
                checked for linearizability (writes that failed may or may not have happened).
  member_ops    under a background writer: add a learner, start it with
                --initial-cluster-state existing, promote it once in sync, remove the old
                leader; the remaining members' hashkv agree and every acknowledged put is there.
  restore3      the runbook: snapshot save, stop all, `snapshot restore` per member with a new
                token, start the three: they form a cluster serving the snapshot's keys.
  addback       restore one member from a snapshot, then add the others back one by one
                (member add + --initial-cluster-state existing); they catch up by snapshot.
  five          5 members: the leader and a follower SIGKILLed together under writes; the
                other three go on; both restart and catch up; nothing acknowledged is lost.
  defrag3       defrag each follower then the leader while a writer runs; `endpoint status
                --cluster -w table` has 3 rows; nothing acknowledged is lost.

Usage: cluster.py --server-bin PATH [--only NAME ...] [--keep] [--timeout 900]
"""
import argparse, json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import ETCDCTL, free_port  # noqa: E402


def etcdctl(endpoints, *args, timeout=15, cmd_timeout="5s"):
    env = dict(os.environ, ETCDCTL_API="3")
    try:
        return subprocess.run([ETCDCTL, "--endpoints=" + endpoints, "--command-timeout=" + cmd_timeout, *args],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", "timeout")


def wait_until(what, pred, timeout=30, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


class Member:
    def __init__(self, name, root):
        self.name = name
        self.cport = free_port()
        self.pport = free_port()
        self.data = os.path.join(root, name)
        self.proc = None
        self.log = os.path.join(root, name + ".log")

    @property
    def ep(self):
        return "127.0.0.1:%d" % self.cport

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.pport


class Cluster:
    def __init__(self, binary, root, n=3, token="tok", faults=False):
        self.binary, self.root, self.token, self.faults = binary, root, token, faults
        self.members = [Member("m%d" % (i + 1), root) for i in range(n)]

    def initial_cluster(self, members=None):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in (members or self.members))

    def start(self, m, state="new", initial=None, token=None):
        args = [self.binary, "--name", m.name, "--data-dir", m.data,
                "--listen-client-urls", "http://" + m.ep, "--advertise-client-urls", "http://" + m.ep,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial or self.initial_cluster(), "--initial-cluster-token", token or self.token,
                "--initial-cluster-state", state, "--heartbeat-interval", "50", "--election-timeout", "500"]
        env = dict(os.environ)
        if self.faults:
            env["SWETCD_TEST_PEER_FAULTS"] = "1"
        with open(m.log, "a") as log:
            m.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)

    def start_all(self):
        for m in self.members:
            self.start(m)
        self.wait_healthy(self.members)

    def wait_healthy(self, members, timeout=40):
        for m in members:
            wait_until("%s healthy" % m.name, lambda m=m: m.proc.poll() is None and
                       etcdctl(m.ep, "endpoint", "health", timeout=5, cmd_timeout="2s").returncode == 0, timeout)

    def status(self, m):
        r = etcdctl(m.ep, "endpoint", "status", "-w", "json", timeout=5, cmd_timeout="2s")
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)[0]["Status"]
        except (ValueError, KeyError, IndexError):
            return None

    def leader(self, among=None):
        """The member that is leader in the eyes of every running member asked."""
        def find():
            for m in among or self.running():
                st = self.status(m)
                if st and st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return m
            return None
        return wait_until("a leader", find, 30)

    def running(self):
        return [m for m in self.members if m.proc and m.proc.poll() is None]

    def signal(self, m, sig):
        m.proc.send_signal(sig)

    def kill(self, m):
        m.proc.kill()
        m.proc.wait(10)

    def stop(self, m):
        if m.proc and m.proc.poll() is None:
            m.proc.terminate()
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)

    def stop_all(self):
        for m in self.members:
            if m.proc and m.proc.poll() is None:
                try:
                    m.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self.stop(m)

    def endpoints(self, members=None):
        return ",".join(m.ep for m in (members or self.running()))


class Writers:
    """Threads putting k<thread>-<n>=v<n> through the given members; records what was acknowledged."""

    def __init__(self, members, threads=3, prefix="w"):
        self.members, self.threads, self.prefix = members, threads, prefix
        self.acked = {}
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.workers = []

    def run(self, t):
        n = 0
        while not self.stop_flag.is_set():
            m = self.members[(t + n) % len(self.members)]
            key, val = "%s%d-%d" % (self.prefix, t, n), "v%d" % n
            if etcdctl(m.ep, "put", key, val, timeout=10, cmd_timeout="3s").returncode == 0:
                with self.lock:
                    self.acked[key] = val
            n += 1

    def __enter__(self):
        for t in range(self.threads):
            w = threading.Thread(target=self.run, args=(t,), daemon=True)
            w.start()
            self.workers.append(w)
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for w in self.workers:
            w.join(30)


def reconfigure(endpoint, *args):
    """A member add/remove, retried while etcd answers "unhealthy cluster" (a member
    connected less than 5 s ago: etcd's isConnectedFullySince)."""
    def attempt():
        r = etcdctl(endpoint, "member", *args)
        if r.returncode == 0:
            return r
        assert "etcdserver: unhealthy cluster" in r.stderr, r.stderr
        return None
    return wait_until("member " + " ".join(args), attempt, 30, 0.5)


def check_acked(c, acked, members, prefix):
    for m in members:
        r = etcdctl(m.ep, "get", prefix, "--prefix", "-w", "json", timeout=20, cmd_timeout="10s")
        assert r.returncode == 0, "get on %s failed: %s" % (m.name, r.stderr)
        got = {}
        import base64
        for kv in json.loads(r.stdout).get("kvs", []):
            got[base64.b64decode(kv["key"]).decode()] = base64.b64decode(kv.get("value", "")).decode()
        for k, v in acked.items():
            assert got.get(k) == v, "%s: acknowledged %s=%s, read %r" % (m.name, k, v, got.get(k))


def hashkv_agree(c, members):
    def same():
        hashes = set()
        for m in members:
            r = etcdctl(m.ep, "endpoint", "hashkv", "-w", "json", timeout=10)
            if r.returncode != 0:
                return False
            hashes.add(json.loads(r.stdout)[0]["HashKV"]["hash"])
        return len(hashes) == 1
    wait_until("hashkv to agree", same, 30, 0.2)


def wait_caught_up(c, members):
    def equal():
        revs = set()
        for m in members:
            st = c.status(m)
            if not st:
                return False
            revs.add(st["header"]["revision"])
        return len(revs) == 1
    wait_until("members to catch up", equal, 30, 0.1)


# ---------------------------------------------------------------- checks

def replication(c):
    c.start_all()
    m1, m2, m3 = c.members
    assert etcdctl(m1.ep, "put", "foo", "bar").returncode == 0
    for m in c.members:
        r = etcdctl(m.ep, "get", "foo", "--print-value-only")
        assert r.stdout == "bar\n", (m.name, r.stdout, r.stderr)
    for m in c.members:
        r = etcdctl(m.ep, "get", "foo", "--print-value-only", "--consistency=s")
        assert r.stdout == "bar\n", (m.name, r.stdout, r.stderr)
    wait_caught_up(c, c.members)
    r = etcdctl(m2.ep, "endpoint", "status", "--cluster", "-w", "json")
    sts = json.loads(r.stdout)
    assert len(sts) == 3, r.stdout
    assert sum(1 for s in sts if s["Status"].get("leader") == s["Status"]["header"]["member_id"]) == 1
    assert len({s["Status"]["header"]["revision"] for s in sts}) == 1
    r = etcdctl(m3.ep, "member", "list", "-w", "json")
    assert len(json.loads(r.stdout)["members"]) == 3
    r = etcdctl(m1.ep, "endpoint", "hashkv", "--cluster", "-w", "json")
    assert len({h["HashKV"]["hash"] for h in json.loads(r.stdout)}) == 1, r.stdout
    r = etcdctl(m1.ep, "endpoint", "health", "--cluster")
    assert r.returncode == 0 and (r.stdout + r.stderr).count("is healthy") == 3, r.stdout + r.stderr


def kill_one(c, which):
    c.start_all()
    with Writers(c.members) as w:
        wait_until("some writes", lambda: len(w.acked) >= 10, 30)
        lead = c.leader()
        victim = lead if which == "leader" else next(m for m in c.members if m is not lead)
        c.kill(victim)
        others = [m for m in c.members if m is not victim]
        new = c.leader(others)
        assert new is not victim
        n = len(w.acked)
        wait_until("writes after the kill", lambda: len(w.acked) >= n + 10, 30)
        c.start(victim)
        c.wait_healthy([victim])
        n = len(w.acked)
        wait_until("writes after the restart", lambda: len(w.acked) >= n + 5, 30)
    wait_caught_up(c, c.members)
    check_acked(c, w.acked, c.members, "w")
    hashkv_agree(c, c.members)


def kill_leader(c):
    kill_one(c, "leader")


def kill_follower(c):
    kill_one(c, "follower")


def pause_leader(c):
    c.start_all()
    assert etcdctl(c.members[0].ep, "put", "reg", "old").returncode == 0
    wait_caught_up(c, c.members)
    old = c.leader()
    c.signal(old, signal.SIGSTOP)
    try:
        others = [m for m in c.members if m is not old]
        new = c.leader(others)
        assert etcdctl(new.ep, "put", "reg", "new").returncode == 0
    finally:
        c.signal(old, signal.SIGCONT)
    r = etcdctl(old.ep, "get", "reg", "--print-value-only", timeout=15, cmd_timeout="5s")
    assert r.stdout != "old\n", "a resumed old leader served a stale linearizable read"
    wait_until("the old leader to serve the new value",
               lambda: etcdctl(old.ep, "get", "reg", "--print-value-only").stdout == "new\n", 20, 0.2)


def partition(c):
    if not c.faults:
        return "skipped (needs swetcd's fault hook)"
    c.start_all()
    assert etcdctl(c.members[0].ep, "put", "reg", "old").returncode == 0
    wait_caught_up(c, c.members)
    old = c.leader()
    c.signal(old, signal.SIGUSR1)
    others = [m for m in c.members if m is not old]
    new = c.leader(others)
    assert new is not old
    assert etcdctl(new.ep, "put", "reg", "new").returncode == 0
    r = etcdctl(old.ep, "get", "reg", "--print-value-only", timeout=10, cmd_timeout="3s")
    assert r.returncode != 0 and r.stdout == "", "the cut-off member answered a linearizable read: %r" % r.stdout
    c.signal(old, signal.SIGUSR2)
    wait_until("the healed member to serve the new value",
               lambda: etcdctl(old.ep, "get", "reg", "--print-value-only").stdout == "new\n", 20, 0.2)
    hashkv_agree(c, c.members)


def check_register_history(ops):
    """ops: (invoke, respond or None, kind, value, ok). Writes set the register; reads return
    it. Failed writes may take effect at any time after their invocation (or never); failed
    reads are ignored. Search for an order consistent with real time (Wing & Gong)."""
    ops = [o for o in ops if o[2] == "w" or o[4]]
    INF = float("inf")
    ops = [(inv, resp if ok else INF, kind, val, ok) for inv, resp, kind, val, ok in ops]
    n = len(ops)
    sys.setrecursionlimit(10000)
    seen = set()

    def search(done, state):
        if len(done) == n or all(i in done or (ops[i][2] == "w" and not ops[i][4]) for i in range(n)):
            return True
        key = (frozenset(done), state)
        if key in seen:
            return False
        seen.add(key)
        pending = [i for i in range(n) if i not in done]
        horizon = min(ops[i][1] for i in pending)
        for i in pending:
            inv, resp, kind, val, ok = ops[i]
            if inv > horizon:
                continue
            if kind == "w":
                if search(done | {i}, val):
                    return True
            elif val == state and search(done | {i}, state):
                return True
        return False

    return search(frozenset(), None)


def linearizable(c):
    c.start_all()
    ops, lock = [], threading.Lock()
    stop = threading.Event()
    counter = [0]

    def client(t):
        rnd = random.Random(t)
        while not stop.is_set():
            running = c.running()
            if not running:
                continue
            m = rnd.choice(running)
            if rnd.random() < 0.5:
                with lock:
                    counter[0] += 1
                    v = "v%d" % counter[0]
                inv = time.monotonic()
                r = etcdctl(m.ep, "put", "reg", v, timeout=8, cmd_timeout="2s")
                resp = time.monotonic()
                with lock:
                    ops.append((inv, resp, "w", v, r.returncode == 0))
            else:
                inv = time.monotonic()
                r = etcdctl(m.ep, "get", "reg", "--print-value-only", timeout=8, cmd_timeout="2s")
                resp = time.monotonic()
                with lock:
                    ops.append((inv, resp, "r", r.stdout.rstrip("\n") or None, r.returncode == 0))

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    lead = c.leader()
    c.kill(lead)
    c.leader([m for m in c.members if m is not lead])
    time.sleep(2)
    c.start(lead)
    c.wait_healthy([lead])
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(30)
    ops.sort()
    assert len(ops) >= 10, "too few operations: %d" % len(ops)
    assert check_register_history(ops), "history not linearizable: %s" % ops
    return "%d operations" % len(ops)


def member_ops(c):
    c.start_all()
    with Writers(c.members[:3], threads=2) as w:
        wait_until("some writes", lambda: len(w.acked) >= 5, 30)
        new = Member("m4", c.root)
        r = reconfigure(c.members[0].ep, "add", "m4", "--learner", "--peer-urls=" + new.peer_url)
        new_id = r.stdout.split()[1]
        c.members.append(new)
        c.start(new, state="existing", initial=c.initial_cluster())
        def promoted():
            r = etcdctl(c.members[0].ep, "member", "promote", new_id)
            if r.returncode == 0:
                return True
            assert "can only promote a learner member which is in sync with leader" in r.stderr, r.stderr
            return False
        wait_until("the learner to be promoted", promoted, 40, 0.3)
        lead = c.leader()
        lead_id = "%x" % c.status(lead)["header"]["member_id"]
        survivor = next(m for m in c.members if m is not lead)
        reconfigure(survivor.ep, "remove", lead_id)
        wait_until("the removed member to exit", lambda: lead.proc.poll() is not None, 30)
        c.members.remove(lead)
        w.members = c.members[:]
        n = len(w.acked)
        wait_until("writes after the removal", lambda: len(w.acked) >= n + 5, 30)
    wait_caught_up(c, c.members)
    check_acked(c, w.acked, c.members, "w")
    hashkv_agree(c, c.members)
    r = etcdctl(c.members[0].ep, "member", "list", "-w", "json")
    assert len(json.loads(r.stdout)["members"]) == 3


def five(c):
    c.members = [Member("m%d" % (i + 1), c.root) for i in range(5)]
    c.start_all()
    with Writers(c.members, threads=3) as w:
        wait_until("some writes", lambda: len(w.acked) >= 10, 30)
        lead = c.leader()
        follower = next(m for m in c.members if m is not lead)
        c.kill(lead)
        c.kill(follower)
        c.leader([m for m in c.members if m not in (lead, follower)])
        n = len(w.acked)
        wait_until("writes with three of five", lambda: len(w.acked) >= n + 10, 30)
        c.start(lead)
        c.start(follower)
        c.wait_healthy([lead, follower])
    wait_caught_up(c, c.members)
    check_acked(c, w.acked, c.members, "w")
    hashkv_agree(c, c.members)


def snapshot_of(c, path):
    for i in range(20):
        etcdctl(c.members[0].ep, "put", "key%02d" % i, "val%02d" % i)
    r = etcdctl(c.members[0].ep, "snapshot", "save", path, timeout=30)
    assert r.returncode == 0, r.stderr
    c.stop_all()


def restored_dir(c, path, m, members, token):
    shutil.rmtree(m.data, ignore_errors=True)
    r = subprocess.run([ETCDCTL, "snapshot", "restore", path, "--name", m.name, "--initial-cluster", c.initial_cluster(members),
                        "--initial-cluster-token", token, "--initial-advertise-peer-urls", m.peer_url, "--data-dir", m.data],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, ETCDCTL_API="3"))
    assert r.returncode == 0, r.stderr


def keys_on(m):
    r = etcdctl(m.ep, "get", "key", "--prefix", "--keys-only")
    return [k for k in r.stdout.split("\n") if k]


def restore3(c):
    c.start_all()
    path = os.path.join(c.root, "backup.db")
    snapshot_of(c, path)
    for m in c.members:
        restored_dir(c, path, m, c.members, "restored")
    for m in c.members:
        c.start(m, token="restored")
    c.wait_healthy(c.members)
    for m in c.members:
        assert len(keys_on(m)) == 20, (m.name, keys_on(m))
    assert etcdctl(c.members[1].ep, "put", "after", "restore").returncode == 0
    hashkv_agree(c, c.members)


def addback(c):
    c.start_all()
    path = os.path.join(c.root, "backup.db")
    snapshot_of(c, path)
    first = c.members[0]
    restored_dir(c, path, first, [first], "restored")
    c.start(first, initial=c.initial_cluster([first]), token="restored")
    c.wait_healthy([first])
    joined = [first]
    for m in c.members[1:]:
        reconfigure(first.ep, "add", m.name, "--peer-urls=" + m.peer_url)
        shutil.rmtree(m.data, ignore_errors=True)
        joined.append(m)
        c.start(m, state="existing", initial=c.initial_cluster(joined), token="restored")
        c.wait_healthy([m])
    for m in c.members:
        assert len(keys_on(m)) == 20, (m.name, keys_on(m))
    hashkv_agree(c, c.members)


def defrag3(c):
    c.start_all()
    for i in range(200):
        etcdctl(c.members[i % 3].ep, "put", "big%d" % (i % 20), "x" * 2000)
    with Writers(c.members, threads=2) as w:
        lead = c.leader()
        for m in [m for m in c.members if m is not lead] + [lead]:
            r = etcdctl(m.ep, "defrag", timeout=60, cmd_timeout="50s")
            assert r.returncode == 0 and "Finished defragmenting" in r.stdout, r.stdout + r.stderr
    r = etcdctl(c.members[0].ep, "endpoint", "status", "--cluster", "-w", "table")
    rows = [l for l in r.stdout.split("\n") if l.startswith("| http")]
    assert len(rows) == 3, r.stdout
    wait_caught_up(c, c.members)
    check_acked(c, w.acked, c.members, "w")


CHECKS = [replication, kill_leader, kill_follower, pause_leader, partition, linearizable, member_ops, restore3,
          addback, five, defrag3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--only", action="append")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    faults = os.path.basename(args.server_bin) != "etcd"
    deadline = time.monotonic() + args.timeout
    failed = 0
    for check in CHECKS:
        if args.only and check.__name__ not in args.only:
            continue
        if time.monotonic() > deadline:
            print("FAIL %s: overall time bound reached" % check.__name__)
            failed += 1
            continue
        root = tempfile.mkdtemp(prefix="swetcd-cluster-")
        c = Cluster(args.server_bin, root, faults=faults)
        start = time.monotonic()
        try:
            note = check(c)
            print("ok   %s (%.1fs)%s" % (check.__name__, time.monotonic() - start, " " + note if note else ""))
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s: %s: %s (logs in %s)" % (check.__name__, type(e).__name__, str(e)[:2000], root))
            args.keep = True
        finally:
            c.stop_all()
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
    print("cluster: %d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
