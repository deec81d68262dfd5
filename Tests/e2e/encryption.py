#!/usr/bin/env python3
"""Encryption at rest end to end, with stock etcdctl and `swetcd encryption status`:

1. values written in clear, then the member restarted with an aescbc config: the migration
   rewrites every revision of every covered value (a kill -9 in the middle of it, then it
   resumes), status says EncryptionCompleted, and no file of the data dir (WAL, .snap, db
   with its free pages) nor a saved snapshot holds any covered plaintext of any revision,
   while keys and uncovered values are there in clear; reads (also at old revisions), hashkv
   and revisions are what they were;
2. rotation: a new key added second, then moved first (reloaded on SIGHUP), migration to it
   completes, the old key removed, the member restarted: every value still reads back;
3. turning off: identity first (the file's change noticed without a signal), status says
   DecryptionCompleted, every value reads back.
"""
import argparse, base64, glob, json, os, secrets, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import ctl, free_port, start, stop

PASS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    PASS.append(what)
    print("ok  ", what, flush=True)


def config(path, providers):
    """providers: list of ("aescbc", [(name, secret)]) or ("identity", None)."""
    lines = ["apiVersion: apiserver.config.k8s.io/v1", "kind: EncryptionConfiguration", "resources:",
             "  - resources: [\"secrets\", \"configmaps\"]", "    providers:"]
    for kind, keys in providers:
        if kind == "identity":
            lines.append("      - identity: {}")
            continue
        lines += ["      - %s:" % kind, "          keys:"]
        for name, secret in keys:
            lines += ["            - name: %s" % name, "              secret: %s" % secret]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def status(server_bin, port):
    r = subprocess.run([server_bin, "encryption", "status", "--endpoints", "127.0.0.1:%d" % port, "-w", "json"],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError("encryption status failed: %s" % r.stderr)
    (s,) = json.loads(r.stdout).values()
    return {x["resource"]: x for x in s["resources"]}


def wait_for(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def files_bytes(data_dir):
    for path in glob.glob(os.path.join(data_dir, "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                yield path, f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    args = ap.parse_args()
    binary = args.server_bin
    work = tempfile.mkdtemp(prefix="swetcd-encryption-")
    data = os.path.join(work, "data")
    enc = os.path.join(work, "enc.yaml")
    port = free_port()
    log = open(os.path.join(work, "server.log"), "ab")
    key1 = base64.b64encode(secrets.token_bytes(32)).decode()
    key2 = base64.b64encode(secrets.token_bytes(32)).decode()
    flags = ["--encryption-provider-config", enc, "--encryption-provider-config-automatic-reload"]
    p = None
    try:
        # Written in clear: two revisions of each covered key, and uncovered keys.
        p = start(binary, data, port, log)
        covered = {}   # key -> [values, oldest first]
        revs = {}
        for i in range(150):
            k = "/registry/secrets/ns/s%03d" % i
            covered[k] = [secrets.token_hex(32), secrets.token_hex(32)]
            for v in covered[k]:
                r = ctl(port, "put", k, v, "-w", "json")
                check(r.returncode == 0, "put %s" % k) if i == 0 else None
                revs.setdefault(k, []).append(json.loads(r.stdout)["header"]["revision"])
        uncovered = {"/registry/pods/ns/p%d" % i: secrets.token_hex(32) for i in range(10)}
        for k, v in uncovered.items():
            ctl(port, "put", k, v)
        hashkv = json.loads(ctl(port, "endpoint", "hashkv", "-w", "json").stdout)[0]["HashKV"]["hash"]
        listing = json.loads(ctl(port, "get", "/registry/", "--prefix", "-w", "json").stdout)["kvs"]
        stop(p)

        # Turned on, with a kill -9 in the middle of the migration, then resumed.
        config(enc, [("aescbc", [("key1", key1)]), ("identity", None)])
        os.environ["SWETCD_TEST_MIGRATION_PAUSE_MS"] = "1500"
        p = start(binary, data, port, log, flags)
        del os.environ["SWETCD_TEST_MIGRATION_PAUSE_MS"]
        st = wait_for("a migration in progress", lambda: (lambda s: s if 0 < s["secrets"]["done"] < s["secrets"]["values"] else None)(status(binary, port)))
        check(st["secrets"]["state"] == "EncryptionInProgress" and st["secrets"]["values"] == 300,
              "status during the migration: EncryptionInProgress, %d of 300" % st["secrets"]["done"])
        p.kill()
        p.wait()
        p = start(binary, data, port, log, flags)
        # A watcher from the next revision on, across the rest of the migration: it must see nothing.
        watch_out = open(os.path.join(work, "watch.out"), "w+")
        watcher = subprocess.Popen(["etcdctl", "--endpoints=127.0.0.1:%d" % port, "watch", "--prefix", "/registry/", "--prev-kv"],
                                   stdout=watch_out, stderr=subprocess.STDOUT)
        st = wait_for("EncryptionCompleted", lambda: (lambda s: s if s["secrets"]["state"] == "EncryptionCompleted" else None)(status(binary, port)))
        check(st["secrets"] == {"resource": "secrets", "state": "EncryptionCompleted", "target": "aescbc:key1", "values": 300, "done": 300},
              "after a kill -9 mid-migration it resumes: EncryptionCompleted, 300 of 300 revisions")
        wait_for("the post-migration defragment", lambda: open(os.path.join(work, "server.log"), "rb").read().count(b"encryption migration completed") >= 1
                 and open(os.path.join(work, "server.log"), "rb").read().rsplit(b"encryption migration completed", 1)[1].count(b"finished defragmenting") >= 1)
        watcher.terminate()
        watcher.wait()
        watch_out.seek(0)
        check(watch_out.read() == "", "the migration produced no watch event")
        check(json.loads(ctl(port, "get", "/registry/", "--prefix", "-w", "json").stdout)["kvs"] == listing,
              "every key, value, create/mod revision and version is as before the migration")
        for k, vs in covered.items():
            r = ctl(port, "get", k, "--print-value-only")
            assert r.stdout.strip() == vs[-1], (k, r.stdout)
            r = ctl(port, "get", k, "--rev", str(revs[k][0]), "--print-value-only")
            assert r.stdout.strip() == vs[0], (k, r.stdout)
        check(True, "every covered key reads back its latest value and, at its older revision, the older one")
        h2 = json.loads(ctl(port, "endpoint", "hashkv", "-w", "json").stdout)[0]["HashKV"]["hash"]
        check(h2 == hashkv, "hashkv is the same as before encryption (computed over plaintext)")
        snap = os.path.join(work, "snap.db")
        check(ctl(port, "snapshot", "save", snap).returncode == 0, "snapshot save")
        def search(label):
            found = []
            allfiles = list(files_bytes(data)) + [(snap, open(snap, "rb").read())]
            for path, b in allfiles:
                for k, vs in covered.items():
                    for v in vs:
                        if v.encode() in b:
                            found.append((path, k))
            check(not found, "%s: no covered plaintext (either revision) in any file of the data dir or a saved snapshot (%d files)" % (label, len(allfiles)) if not found else str(found[:5]))
        search("turned on for data written before")
        db = open(os.path.join(data, "member", "snap", "db"), "rb").read()
        check(all(k.encode() in db for k in covered) and all(v.encode() in db for v in uncovered.values()),
              "keys and uncovered values are stored in clear")

        # Rotation: key2 added second (nothing to do), then first; key1 removed; restart.
        config(enc, [("aescbc", [("key1", key1), ("key2", key2)]), ("identity", None)])
        p.send_signal(signal.SIGHUP)
        config(enc, [("aescbc", [("key2", key2), ("key1", key1)]), ("identity", None)])
        p.send_signal(signal.SIGHUP)
        st = wait_for("rotation to key2", lambda: (lambda s: s if s["secrets"]["target"] == "aescbc:key2" and s["secrets"]["state"] == "EncryptionCompleted" else None)(status(binary, port)))
        check(st["secrets"]["done"] == 300, "rotation: every revision moved to key2 (EncryptionCompleted)")
        wait_for("the post-rotation defragment", lambda: open(os.path.join(work, "server.log"), "rb").read().count(b"encryption migration completed") >= 2
                 and open(os.path.join(work, "server.log"), "rb").read().rsplit(b"encryption migration completed", 1)[1].count(b"finished defragmenting") >= 1)
        os.remove(snap)
        check(ctl(port, "snapshot", "save", snap).returncode == 0, "snapshot save after the rotation")
        search("after the rotation")
        config(enc, [("aescbc", [("key2", key2)]), ("identity", None)])
        stop(p)
        p = start(binary, data, port, log, flags)
        bad = [k for k, vs in covered.items() if ctl(port, "get", k, "--print-value-only").stdout.strip() != vs[-1]]
        check(not bad, "after removing key1 and a restart every value reads back")

        # Without the key the member does not start, naming the key.
        stop(p)
        r = subprocess.run([binary, "--data-dir", data, "--listen-client-urls", "http://127.0.0.1:%d" % port,
                            "--advertise-client-urls", "http://127.0.0.1:%d" % port, "--listen-peer-urls", "http://127.0.0.1:%d" % free_port()],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and '"aescbc:key2"' in r.stderr, "without the config the member refuses to start, naming aescbc:key2")
        p = start(binary, data, port, log, flags)

        # Turning off: identity first (no SIGHUP: the changed file is noticed by itself).
        config(enc, [("identity", None), ("aescbc", [("key2", key2)])])
        st = wait_for("DecryptionCompleted", lambda: (lambda s: s if s["secrets"]["state"] == "DecryptionCompleted" else None)(status(binary, port)))
        check(st["secrets"]["done"] == 300, "turned off: DecryptionCompleted, 300 of 300")
        bad = [k for k, vs in covered.items() if ctl(port, "get", k, "--print-value-only").stdout.strip() != vs[-1]]
        check(not bad, "after decryption every value reads back")
        stop(p)
        p = None
        print("encryption: %d checks passed" % len(PASS))
    except Exception:
        print("server log:", os.path.join(work, "server.log"))
        sys.stdout.write(open(os.path.join(work, "server.log"), errors="replace").read()[-4000:])
        raise
    finally:
        if p is not None:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
