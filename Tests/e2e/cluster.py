#!/usr/bin/env python3
"""Multi-member clusters of a server binary (swetcd, or real etcd for comparison), driven by
stock etcdctl. Every member binds 127.0.0.1 on free client and peer ports and is started with
etcd's flags (--name mN --data-dir ... --initial-cluster m1=...,m2=... --initial-cluster-token
--initial-cluster-state, plus --heartbeat-interval 50 --election-timeout 500 to keep it fast).
`Cluster` starts N members, waits (bounded polling) until each answers `endpoint health`,
finds the leader with `endpoint status -w json` (leader == member_id, agreed on by the others),
and kill()s (SIGKILL), stop()s (SIGTERM, then SIGKILL), pause()s/resume()s (SIGSTOP/SIGCONT)
and restart()s members on their data dirs, by PID. Every etcdctl call and every wait is time
bounded, and so is the whole run (--timeout; SIGTERM unwinds too): members are stopped in a
finally block, and the temporary data dirs removed (kept with --keep, or when a check fails).
Each check uses a fresh cluster (3 members unless said) and prints `ok   NAME` or `FAIL NAME: ...`:

  replication   a put on m1 is read on every member, linearizable then serializable;
                `endpoint status --cluster -w json` shows 3 members, one leader, equal
                revisions; `member list -w json` has 3 members; `endpoint hashkv --cluster`
                agrees; `endpoint health --cluster` reports 3 healthy.
  kill_leader   writer threads put w<t>-<n> (each through the members in turn), the leader is
                SIGKILLed mid-way: the others elect a leader and take writes (puts may fail
                meanwhile); the killed member is restarted on its data dir; every acknowledged
                put is read back (linearizable) with its value on every member; hashkv agrees.
  kill_follower the same with a follower.
  pause_leader  SIGSTOP the leader, the others elect one, a new value is written through it;
                a linearizable and a serializable get are sent to the stopped old leader (they
                wait in its socket) and it gets SIGCONT: the linearizable read returns the new
                value or fails, never the old one (the serializable one may be stale: the note
                says whether it was, i.e. whether the window was hit); a get after the resume
                likewise, and the old leader serves the new value soon.
  partition     (swetcd's fault hook, SWETCD_TEST_PEER_FAULTS; skipped for etcd) the leader's
                peer traffic is cut: the others elect a leader and take writes; the old leader
                refuses linearizable reads; after healing it serves the new value.
  linearizable  3 clients put (unique values) and get (linearizable) one register on random
                members for ~5 s while the leader is SIGKILLed and restarted; the history
                (time.monotonic() at invocation and response, results) is checked for
                linearizability (Wing & Gong search; a failed put may take effect any time
                after its invocation, or never; failed gets are ignored). The checker first
                checks itself on small histories it must accept and reject.
  linearizable_follower_kill, linearizable_pause, linearizable_partition
                the same history check across the other faults: a follower SIGKILLed and
                restarted; the leader SIGSTOPped until the others elect one, then SIGCONT;
                the leader's peer traffic cut until the others elect one, then healed
                (swetcd's fault hook only).
  member_ops    under a background writer: `member add m4 --learner`, m4 started with
                --initial-cluster-state existing; the learner reports isLearner, serves
                serializable reads and refuses a put ("rpc not supported for learner");
                `member promote` is retried until etcd stops saying "can only promote a learner
                member which is in sync with leader"; then the leader is removed (it exits);
                the other three's hashkv agree, every acknowledged put is on them.
                `member add/remove` is retried while etcd says "unhealthy cluster" (it refuses
                reconfiguration until every member has been connected for 5 s).
  member_errors one member: the membership requests etcd refuses, with its exact texts and gRPC
                codes (MEMBER_ERRORS): promote of a voter, promote/remove/update of an unknown
                or removed ID, add of an existing peer URL, promote of a learner that never
                started, a second learner, and (after adding a voter that is not started) a
                third voter ("not enough started members") or a learner ("unhealthy cluster").
  restore3      the runbook: 20 keys, `snapshot save`, stop all, `snapshot restore` per member
                (--name, --initial-cluster, a new --initial-cluster-token, --initial-advertise-
                peer-urls, --data-dir), start the three: they form a 3-member cluster, each
                serves the snapshot's keys and values, takes a write, hashkv agrees.
  addback       restore one member from a snapshot, then add the others back one by one
                (member add + --initial-cluster-state existing); they catch up by snapshot.
  five          5 members: the leader and a follower SIGKILLed together under writes; the
                other three go on; both restart and catch up; nothing acknowledged is lost.
  defrag3       `defrag` of each follower then the leader while a writer runs; `endpoint status
                --cluster -w table` has 3 rows; nothing acknowledged is lost.

Usage: cluster.py --server-bin PATH [--only NAME ...] [--keep] [--timeout 900]
Against real etcd 3.4 (/usr/bin/etcd) on 2 cores the whole run takes about 80 s.
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


DEADLINE = [float("inf")]  # the whole script's time bound (--timeout); every wait stops there


def wait_until(what, pred, timeout=30, step=0.05):
    deadline = min(time.monotonic() + timeout, DEADLINE[0])
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    if time.monotonic() >= DEADLINE[0]:
        raise AssertionError("overall time bound reached waiting for " + what)
    raise AssertionError("timed out waiting for " + what)


def error_line(r):
    """etcdctl's last stderr line ("Error: etcdserver: ...") and the gRPC code its client
    logged for the failed call ("FailedPrecondition", ...; None if not logged)."""
    lines = r.stderr.strip().split("\n")
    code = None
    for l in lines:
        i = l.find("rpc error: code = ")
        if i >= 0:
            code = l[i + len("rpc error: code = "):].split(" ")[0]
    return lines[-1], code


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

    def member(self, m):
        """A member given as itself or as its 0-based index."""
        return self.members[m] if isinstance(m, int) else m

    def initial_cluster(self, members=None):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in (members or self.members))

    def start(self, m, state="new", initial=None, token=None):
        m = self.member(m)
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

    def member_id(self, m):
        """The member's ID as etcdctl's member commands take it (hex)."""
        st = wait_until("status of " + self.member(m).name, lambda: self.status(self.member(m)), 20, 0.1)
        return "%x" % st["header"]["member_id"]

    def leader(self, among=None, timeout=30):
        """The member (of `among`, default: the running ones) that says it is the leader
        (`endpoint status`: leader == member_id) and that every other member of `among`
        that answers names as leader too."""
        def find():
            sts = [(m, self.status(m)) for m in among or self.running()]
            sts = [(m, st) for m, st in sts if st]
            leads = {st.get("leader") for m, st in sts}
            if len(leads) != 1:
                return None
            return next((m for m, st in sts if st.get("leader") == st["header"]["member_id"]), None)
        return wait_until("a leader", find, timeout)

    def running(self):
        return [m for m in self.members if m.proc and m.proc.poll() is None]

    def signal(self, m, sig):
        self.member(m).proc.send_signal(sig)

    def pause(self, m):
        self.signal(m, signal.SIGSTOP)

    def resume(self, m):
        self.signal(m, signal.SIGCONT)

    def kill(self, m):
        m = self.member(m)
        m.proc.kill()
        m.proc.wait(10)

    def restart(self, m):
        """Start a stopped member again on its data dir, and wait until it is healthy."""
        m = self.member(m)
        self.start(m)
        self.wait_healthy([m])

    def stop(self, m):
        m = self.member(m)
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
        r = etcdctl(m.ep, "get", "foo", "--print-value-only", "--consistency=l")
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
    c.pause(old)
    try:
        others = [m for m in c.members if m is not old]
        new = c.leader(others)
        assert new is not old
        assert etcdctl(new.ep, "put", "reg", "new").returncode == 0
        # Reads sent while the old leader is stopped wait in its socket and are the first
        # thing it handles when resumed, before it hears of the new term.
        env = dict(os.environ, ETCDCTL_API="3")
        pending = {cons: subprocess.Popen([ETCDCTL, "--endpoints=" + old.ep, "--dial-timeout=5s", "--command-timeout=5s",
                                           "get", "reg", "--print-value-only", "--consistency=" + cons],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                   for cons in ("l", "s")}
        time.sleep(0.5)
    finally:
        c.resume(old)
    got = {}
    for cons, p in pending.items():
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        got[cons] = out if p.returncode == 0 else None
    assert got["l"] in ("new\n", None), "the resumed old leader served a stale linearizable read: %r" % got["l"]
    r = etcdctl(old.ep, "get", "reg", "--print-value-only", "--consistency=l", timeout=15, cmd_timeout="5s")
    assert r.returncode != 0 or r.stdout == "new\n", "the resumed old leader served a stale linearizable read: %r" % r.stdout
    wait_until("the old leader to serve the new value",
               lambda: etcdctl(old.ep, "get", "reg", "--print-value-only").stdout == "new\n", 20, 0.2)
    # A serializable read may be stale; saying whether it was shows the window was hit.
    return "serializable read at resume: %s" % {"old\n": "stale", "new\n": "new", None: "failed"}.get(got["s"], repr(got["s"]))


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


def check_register_history(ops, limit=2000000):
    """ops: (invoke, respond, kind, value, ok). Writes set the register (values are unique);
    reads return it (None: no key). Failed writes may take effect at any time after their
    invocation (or never); failed reads are ignored. Search for an order consistent with real
    time (Wing & Gong, memoized on (linearized set, register value)). A failed write whose
    value no read returned is dropped: never taking effect is always a valid choice for it."""
    seen_values = {o[3] for o in ops if o[2] == "r" and o[4]}
    ops = [o for o in ops if (o[2] == "w" and (o[4] or o[3] in seen_values)) or (o[2] == "r" and o[4])]
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
        if len(seen) > limit:
            raise AssertionError("history check gave up after %d states (%d operations)" % (limit, n))
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


def checker_self_test():
    """The checker accepts and rejects what it should (times: invoke, respond)."""
    w = lambda i, r, v, ok=True: (i, r, "w", v, ok)  # noqa: E731
    rd = lambda i, r, v: (i, r, "r", v, True)  # noqa: E731
    good = [
        [w(0, 1, "a"), rd(2, 3, "a")],
        [w(0, 3, "a"), rd(1, 2, None), rd(1.5, 2.5, "a")],        # a read concurrent with the write sees either
        [w(0, 1, "a"), w(2, 3, "b", False), rd(4, 5, "a"), rd(6, 7, "b")],  # a failed write takes effect late
        [w(0, 1, "a"), w(2, 3, "b", False), rd(4, 5, "a")],        # ... or never
    ]
    bad = [
        [w(0, 1, "a"), rd(2, 3, None)],                          # stale read after an acknowledged write
        [w(0, 1, "a"), w(2, 3, "b"), rd(4, 5, "a")],               # stale read after an overwrite
        [w(0, 3, "a"), rd(1, 2, "a"), rd(2.5, 2.8, None)],          # a read goes back in time
        [w(0, 1, "a"), w(2, 3, "b", False), rd(4, 5, "b"), rd(6, 7, "a")],  # a failed write undone
        [rd(0, 1, "x")],                                         # a value never written
    ]
    for h in good:
        assert check_register_history(h), "checker rejected a linearizable history: %s" % h
    for h in bad:
        assert not check_register_history(h), "checker accepted a non-linearizable history: %s" % h


def fault_kill_leader(c):
    lead = c.leader()
    c.kill(lead)
    c.leader([m for m in c.members if m is not lead])
    time.sleep(2)
    c.restart(lead)


def fault_kill_follower(c):
    lead = c.leader()
    victim = next(m for m in c.members if m is not lead)
    c.kill(victim)
    time.sleep(2)
    c.restart(victim)


def _leader_cut_off(c, cut, heal, hold):
    """Cuts the leader off with signal `cut` until the others elected a new leader and
    `hold` seconds more, then `heal`s it."""
    lead = c.leader()
    c.signal(lead, cut)
    try:
        c.leader([m for m in c.members if m is not lead])
        time.sleep(hold)
    finally:
        c.signal(lead, heal)


def fault_pause_leader(c):
    _leader_cut_off(c, signal.SIGSTOP, signal.SIGCONT, 1)


def fault_partition(c):
    _leader_cut_off(c, signal.SIGUSR1, signal.SIGUSR2, 1.5)


def linearizable(c, fault=fault_kill_leader):
    """A register history across `fault` (default: the leader SIGKILLed and restarted)."""
    checker_self_test()
    c.start_all()
    ops, lock = [], threading.Lock()
    stop = threading.Event()
    counter = [0]

    def client(t):
        rnd = random.Random(t)
        while not stop.is_set():
            running = c.running()
            if not running:
                time.sleep(0.05)
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
                r = etcdctl(m.ep, "get", "reg", "--print-value-only", "--consistency=l", timeout=8, cmd_timeout="2s")
                resp = time.monotonic()
                with lock:
                    ops.append((inv, resp, "r", r.stdout.rstrip("\n") or None, r.returncode == 0))

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        fault(c)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    ops.sort()
    assert len(ops) >= 10, "too few operations: %d" % len(ops)
    if not check_register_history(ops):
        path = os.path.join(c.root, "history.json")
        with open(path, "w") as f:
            json.dump([{"invoke": o[0], "respond": o[1], "op": o[2], "value": o[3], "ok": o[4]} for o in ops], f, indent=1)
        raise AssertionError("history of %d operations not linearizable (written to %s)" % (len(ops), path))
    return "%d operations (%d failed)" % (len(ops), sum(1 for o in ops if not o[4]))


def linearizable_follower_kill(c):
    return linearizable(c, fault_kill_follower)


def linearizable_pause(c):
    return linearizable(c, fault_pause_leader)


def linearizable_partition(c):
    if not c.faults:
        return "skipped (needs swetcd's fault hook)"
    return linearizable(c, fault_partition)


def member_ops(c):
    c.start_all()
    with Writers(c.members[:3], threads=2) as w:
        wait_until("some writes", lambda: len(w.acked) >= 5, 30)
        new = Member("m4", c.root)
        r = reconfigure(c.members[0].ep, "add", "m4", "--learner", "--peer-urls=" + new.peer_url)
        new_id = r.stdout.split()[1]
        c.members.append(new)
        c.start(new, state="existing", initial=c.initial_cluster())
        # A learner answers status (isLearner) and serializable reads, and refuses the rest.
        st = wait_until("the learner's status", lambda: c.status(new), 30, 0.1)
        assert st.get("isLearner") is True, st
        r = etcdctl(new.ep, "get", "w", "--prefix", "--limit=1", "--consistency=s")
        assert r.returncode == 0, r.stderr
        r = etcdctl(new.ep, "put", "learner", "x")
        assert r.returncode != 0 and error_line(r) == ("Error: etcdserver: rpc not supported for learner", "Unavailable"), \
            "put on a learner: %s" % r.stderr[-500:]
        def promoted():
            r = etcdctl(c.members[0].ep, "member", "promote", new_id)
            if r.returncode == 0:
                return True
            assert error_line(r) == ("Error: etcdserver: can only promote a learner member which is in sync with leader",
                                     "FailedPrecondition"), r.stderr
            return False
        wait_until("the learner to be promoted", promoted, 40, 0.3)
        # (etcd's JSON leaves isLearner out when false)
        wait_until("the promoted member to say it is a voter",
                   lambda: not (c.status(new) or {"isLearner": True}).get("isLearner", False), 20, 0.1)
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


MEMBER_ERRORS = {
    # what etcdctl 3.4 prints last on stderr, and the gRPC code its client logs
    "not_learner": ("Error: etcdserver: can only promote a learner member", "FailedPrecondition"),
    "not_found": ("Error: etcdserver: member not found", "NotFound"),
    "peer_url_exists": ("Error: etcdserver: Peer URLs already exists", "FailedPrecondition"),
    "not_in_sync": ("Error: etcdserver: can only promote a learner member which is in sync with leader",
                    "FailedPrecondition"),
    "too_many_learners": ("Error: etcdserver: too many learner members in cluster", "FailedPrecondition"),
    "not_enough_started": ("Error: etcdserver: re-configuration failed due to not enough started members", "Unknown"),
    "unhealthy": ("Error: etcdserver: unhealthy cluster", "Unavailable"),
}


def member_errors(c):
    """Membership requests etcd refuses, on one member (no peers: no 5-second wait), with
    etcd's exact error texts and codes."""
    c.members = c.members[:1]
    c.start_all()
    m1 = c.members[0]
    my_id = c.member_id(m1)
    unused = lambda: "http://127.0.0.1:%d" % free_port()  # noqa: E731

    def refused(what, expect, *args):
        r = etcdctl(m1.ep, "member", *args)
        assert r.returncode != 0, "%s: accepted: %s" % (what, r.stdout)
        assert error_line(r) == MEMBER_ERRORS[expect], "%s: expected %s, got %s" % (what, MEMBER_ERRORS[expect], r.stderr[-600:])

    refused("promote of a voting member", "not_learner", "promote", my_id)
    refused("promote of an unknown ID", "not_found", "promote", "1234abcd")
    refused("remove of an unknown ID", "not_found", "remove", "1234abcd")
    refused("update of an unknown ID", "not_found", "update", "1234abcd", "--peer-urls=" + unused())
    refused("add of an existing peer URL", "peer_url_exists", "add", "mX", "--peer-urls=" + m1.peer_url)
    r = etcdctl(m1.ep, "member", "add", "m2", "--learner", "--peer-urls=" + unused())
    assert r.returncode == 0 and r.stdout.startswith("Member "), r.stderr
    learner = r.stdout.split()[1]
    assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in r.stdout, r.stdout
    refused("promote of a learner that never started", "not_in_sync", "promote", learner)
    refused("a second learner", "too_many_learners", "add", "m3", "--learner", "--peer-urls=" + unused())
    r = etcdctl(m1.ep, "member", "remove", learner)
    # (etcdctl prints IDs as %16x: space-padded when shorter)
    assert r.returncode == 0 and r.stdout.split()[:4] == ["Member", learner, "removed", "from"], r.stdout + r.stderr
    refused("remove of a removed ID", "not_found", "remove", learner)
    # 1 voter + 1 unstarted voter: quorum 2 of 2 is not met by the started ones after one more.
    r = etcdctl(m1.ep, "member", "add", "m2", "--peer-urls=" + unused())
    assert r.returncode == 0, r.stderr
    r = etcdctl(m1.ep, "member", "list", "-w", "json")
    members = json.loads(r.stdout)["members"]
    assert len(members) == 2 and sum(1 for m in members if not m.get("name")) == 1, r.stdout
    refused("a voter while an added voter has not started", "not_enough_started", "add", "m3", "--peer-urls=" + unused())
    refused("a learner while an added voter has not started", "unhealthy", "add", "m3", "--learner",
            "--peer-urls=" + unused())


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


def snapshot_keys_on(m):
    """Whether m serves (linearizable get) exactly the 20 keys snapshot_of wrote."""
    r = etcdctl(m.ep, "get", "key", "--prefix", "--consistency=l")
    return r.returncode == 0 and r.stdout.split("\n")[:-1] == [x for i in range(20) for x in ("key%02d" % i, "val%02d" % i)]


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
        assert snapshot_keys_on(m), (m.name, keys_on(m))
    r = etcdctl(c.members[0].ep, "member", "list", "-w", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["members"]) == 3, r.stdout + r.stderr
    c.leader()
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


CHECKS = [replication, kill_leader, kill_follower, pause_leader, partition, linearizable, linearizable_follower_kill,
          linearizable_pause, linearizable_partition, member_ops, member_errors, restore3, addback, five, defrag3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--only", action="append")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    unknown = set(args.only or ()) - {c.__name__ for c in CHECKS}
    if unknown:
        ap.error("unknown check(s) %s; checks: %s" % (", ".join(sorted(unknown)), " ".join(c.__name__ for c in CHECKS)))
    faults = os.path.basename(args.server_bin) != "etcd"
    deadline = time.monotonic() + args.timeout
    DEADLINE[0] = deadline

    def terminated(signum, frame):
        # SIGTERM (e.g. from `timeout`): unwind, so the finally below stops the members.
        raise SystemExit("cluster: terminated by signal %d" % signum)
    signal.signal(signal.SIGTERM, terminated)
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
        keep = args.keep
        try:
            note = check(c)
            print("ok   %s (%.1fs)%s" % (check.__name__, time.monotonic() - start, " " + note if note else ""))
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s: %s: %s (logs in %s)" % (check.__name__, type(e).__name__, str(e)[:2000], root))
            keep = True
        finally:
            c.stop_all()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
    print("cluster: %d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
