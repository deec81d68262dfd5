#!/usr/bin/env python3
"""Copy etcd 3.4's .proto files from Debian's golang-etcd-server-dev into Protos/,
dropping the gogoproto and google.api annotations (they change only Go code
generation, never the wire format) and rewriting imports to Protos/-relative paths.

Usage: Scripts/import-protos.py [ETCD_SRC]   (default /usr/share/gocode/src/go.etcd.io/etcd)
Run Scripts/generate-protos.sh afterwards.
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/gocode/src/go.etcd.io/etcd"
DST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protos")

FILES = {
    "mvcc/mvccpb/kv.proto": "mvccpb/kv.proto",
    "auth/authpb/auth.proto": "authpb/auth.proto",
    "etcdserver/etcdserverpb/rpc.proto": "etcdserverpb/rpc.proto",
    "etcdserver/etcdserverpb/etcdserver.proto": "etcdserverpb/etcdserver.proto",
    "etcdserver/etcdserverpb/raft_internal.proto": "etcdserverpb/raft_internal.proto",
    "raft/raftpb/raft.proto": "raftpb/raft.proto",
    "wal/walpb/record.proto": "walpb/record.proto",
    "etcdserver/api/snap/snappb/snap.proto": "snappb/snap.proto",
    "lease/leasepb/lease.proto": "leasepb/lease.proto",
    "etcdserver/api/v3lock/v3lockpb/v3lock.proto": "v3lockpb/v3lock.proto",
    "etcdserver/api/v3election/v3electionpb/v3election.proto": "v3electionpb/v3election.proto",
}

IMPORTS = {
    "etcd/mvcc/mvccpb/kv.proto": "mvccpb/kv.proto",
    "etcd/auth/authpb/auth.proto": "authpb/auth.proto",
    "etcd/etcdserver/etcdserverpb/rpc.proto": "etcdserverpb/rpc.proto",
    "etcdserver.proto": "etcdserverpb/etcdserver.proto",
    "rpc.proto": "etcdserverpb/rpc.proto",
}


def strip(text: str) -> str:
    # rpc bodies holding only a google.api.http option (with nested braces) become "{}".
    while True:
        m = re.search(r"\{\s*option\s*\(google\.api\.http\)\s*=\s*\{", text)
        if not m:
            break
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        end = re.compile(r"\s*;\s*\}").match(text, i)
        text = text[:m.start()] + "{}" + text[end.end():]
    out = []
    for line in text.splitlines():
        if re.match(r'\s*import\s+"(gogoproto/gogo\.proto|google/api/annotations\.proto)"\s*;', line):
            continue
        if re.match(r"\s*option\s+\(gogoproto\.[^)]*\)\s*=.*;", line):
            continue
        m = re.match(r'(\s*import\s+")([^"]+)(".*)', line)
        if m and m.group(2) in IMPORTS:
            line = m.group(1) + IMPORTS[m.group(2)] + m.group(3)
        # field options: drop gogoproto entries, and the brackets if nothing remains.
        def fix(m):
            opts = [o.strip() for o in m.group(1).split(",")]
            keep = [o for o in opts if not o.startswith("(gogoproto.")]
            return " [" + ", ".join(keep) + "]" if keep else ""
        line = re.sub(r"\s*\[([^\]]*gogoproto[^\]]*)\]", fix, line)
        out.append(line)
    return "\n".join(out) + "\n"


for src, dst in FILES.items():
    with open(os.path.join(SRC, src)) as f:
        text = f.read()
    path = os.path.join(DST, dst)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("// Imported from etcd 3.4.23 (" + src + ") by Scripts/import-protos.py;\n"
                "// gogoproto and google.api annotations removed, wire format unchanged.\n")
        f.write(strip(text))
    print("wrote", os.path.relpath(path))
