#!/usr/bin/env python3
"""swetcd interop harness.

Runs scenarios (sequences of stock `etcdctl` commands, Go test-client requests
and plain HTTP requests) against a server binary, each on a fresh server
process, normalises the outputs and compares them with recordings made
against real etcd 3.4.23.

  python3 interop/run.py --server-bin PATH            # test mode
  python3 interop/run.py --server-bin /usr/bin/etcd --record
  python3 interop/run.py --selftest                   # no server needed
  python3 interop/run.py --server-bin PATH --cluster 3 [--record]
                                                      # 3 members; interop/expected-cluster3/
  python3 interop/run.py --server-bin SWETCD --encryption aescbc|aesgcm|secretbox
                                                      # values encrypted at rest, same recordings

See interop/README.md for the scenario format and the (closed) mask list.
Standard library only.
"""

import argparse
import base64
import concurrent.futures
import difflib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO_DIR = os.path.join(HERE, "scenarios")
EXPECTED_DIR = os.path.join(HERE, "expected")
WORK_ROOT = os.path.join(HERE, ".work")
GOCLIENT_BIN = os.path.join(WORK_ROOT, "bin", "etcd-testclient")
GOCLIENT_BUILD = os.path.join(HERE, "goclient", "build.sh")
FIXTURES = os.path.join(HERE, "selftest_fixtures.json")
# Scenarios whose raw (unnormalised) etcd outputs are kept in FIXTURES when
# recording, so that --selftest can replay and perturb them without a server.
FIXTURE_SCENARIOS = ["010_put_basic", "116_get_rev", "500_endpoint_status", "501_endpoint_health",
                     "602_quota", "702_lease_formats", "920_snapshot"]

DEFAULT_ETCDCTL = os.environ.get("INTEROP_ETCDCTL", "/usr/bin/etcdctl")

START_TIMEOUT = 30.0      # seconds until the server must serve
STOP_TIMEOUT = 10.0       # seconds between SIGTERM and SIGKILL
STEP_TIMEOUT = 30.0       # default per-step timeout (scenario may override)
HEALTH_TIMEOUT = 5.0      # one `etcdctl endpoint health` probe

# --------------------------------------------------------------------------
# Scenario files
# --------------------------------------------------------------------------


class ScenarioError(Exception):
    pass


# Step kinds (the first word after "$ "):
#   etcdctl ARGS...         stock etcdctl against the server under test
#   goclient <<EOF          the Go test client (interop/goclient), requests as JSON lines
#   http METHOD PATH [BODY] an HTTP/1.1 request to the client URL
#   restart-server          stop the server and start it again on its data dir
#   db-dump                 stop it, print the real bbolt's check and dump of member/snap/db, start it
#   restore-server FILE     stop it, `etcdctl snapshot restore FILE` into a new data dir (this
#                           scenario's member: name default, http://localhost:2380), start it there
#   etcd-reads FILE         `etcdctl snapshot restore FILE` into a scratch dir, start REAL etcd
#                           on it (whatever the server under test) and print its keys and members
STEP_KINDS = ("etcdctl", "goclient", "http", "restart-server", "db-dump", "restore-server", "etcd-reads")
# Steps that stop, restart or replace the one member; a scenario using them is @single-member.
SINGLE_MEMBER_STEPS = ("restart-server", "db-dump", "restore-server", "etcd-reads")
# Steps that read the server's stored bytes without the server (db-dump: its db file; etcd-reads:
# real etcd on a restore of its snapshot); a scenario using them is @plaintext-at-rest, and
# --encryption runs skip it (the stored values are ciphertext there).
PLAINTEXT_AT_REST_STEPS = ("db-dump", "etcd-reads")


class Step:
    def __init__(self, kind, text, argv, stdin, lineno):
        self.kind = kind          # "etcdctl" | "goclient" | "http" | "restart-server" | "db-dump"
        self.text = text          # the command line as written (shown in .out)
        self.argv = argv          # words after the command word (placeholders unexpanded)
        self.stdin = stdin        # bytes or None
        self.lineno = lineno

    # --- classification used by the raft-index assertions -----------------
    def etcdctl_command(self):
        """The etcdctl sub-command words (flags removed), e.g. ['endpoint', 'status']."""
        words = []
        skip = False
        for a in self.argv:
            if skip:
                skip = False
                continue
            if a.startswith("-"):
                if a in ("-w", "--write-out", "--endpoints", "--lease", "--rev", "--limit",
                         "--order", "--sort-by", "--consistency", "--command-timeout",
                         "--dial-timeout", "--user", "--password", "--ttl"):
                    skip = True
                continue
            words.append(a)
        return words

    def write_format(self):
        fmt = "simple"
        it = iter(self.argv)
        for a in it:
            if a in ("-w", "--write-out"):
                fmt = next(it, fmt)
            elif a.startswith("--write-out="):
                fmt = a.split("=", 1)[1]
            elif a.startswith("-w="):
                fmt = a.split("=", 1)[1]
            elif a.startswith("-w") and len(a) > 2:
                fmt = a[2:]
        return fmt

    def is_write(self):
        """True if this step, when it succeeds, must append a Raft entry."""
        if self.kind in ("restart-server", "db-dump", "restore-server"):
            return True    # the new leader appends an empty entry
        if self.kind == "goclient":
            text = (self.stdin or b"").decode("utf-8", "replace")
            return bool(re.search(r'"method"\s*:\s*"(?:[\w./]*[./])?(Put|DeleteRange|Compact|LeaseGrant|LeaseRevoke)"',
                                  text)
                        or re.search(r'"request_(put|delete_range)"', text))
        if self.kind == "http":
            path = self.argv[1] if len(self.argv) > 1 else ""
            body = (self.argv[2] if len(self.argv) > 2 else (self.stdin or b"").decode("utf-8", "replace"))
            return bool(re.search(r"/kv/(put|deleterange|compaction)$|/lease/(grant|revoke)$|/kv/lease/revoke$", path)
                        or (path.endswith("/kv/txn") and re.search(r'"request_(put|delete_range)"', body)))
        if self.kind != "etcdctl":
            return False
        words = self.etcdctl_command()
        if not words:
            return False
        if words[0] in ("put", "del", "compaction", "lock"):
            return True
        if words[:2] in (["lease", "grant"], ["lease", "revoke"]):
            return True
        if words[0] == "txn":
            text = (self.stdin or b"").decode("utf-8", "replace")
            return any(re.match(r"\s*(put|del)\s", l) for l in text.splitlines())
        return False


class Scenario:
    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.server_flags = []
        self.step_timeout = STEP_TIMEOUT
        self.steps = []
        self.single_member = None   # @single-member: the reason (a string) it is left out of --cluster
        self.plaintext_at_rest = None   # @plaintext-at-rest: the reason it is left out of --encryption


HEREDOC_RE = re.compile(r"^(.*?)\s*<<([A-Za-z_][A-Za-z0-9_]*)((?:\s+(?:noeol|hex))*)\s*$")


def parse_scenario(path):
    name = os.path.splitext(os.path.basename(path))[0]
    sc = Scenario(name, path)
    with open(path, "r", encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("@"):
            word, _, rest = stripped.partition(" ")
            if word == "@server-flags":
                sc.server_flags += shlex.split(rest)
            elif word == "@timeout":
                sc.step_timeout = float(rest)
            elif word == "@single-member":
                sc.single_member = rest.strip() or "single-member scenario"
            elif word == "@plaintext-at-rest":
                sc.plaintext_at_rest = rest.strip() or "reads the stored values"
            else:
                raise ScenarioError("%s:%d: unknown directive %s" % (path, lineno, word))
            continue
        if not stripped.startswith("$ "):
            raise ScenarioError("%s:%d: expected '$ command', '@directive' or '# comment'" % (path, lineno))
        cmd = stripped[2:].strip()
        stdin = None
        m = HEREDOC_RE.match(cmd)
        if m:
            cmd, tag, mods = m.group(1), m.group(2), m.group(3).split()
            body = []
            while True:
                if i >= len(lines):
                    raise ScenarioError("%s:%d: heredoc %s not terminated" % (path, lineno, tag))
                if lines[i] == tag:
                    i += 1
                    break
                body.append(lines[i])
                i += 1
            text = "\n".join(body)
            if "hex" in mods:
                stdin = bytes.fromhex("".join(text.split()))
            else:
                if "noeol" not in mods:
                    text += "\n"
                stdin = text.encode("utf-8")
        try:
            words = shlex.split(cmd)
        except ValueError as e:
            raise ScenarioError("%s:%d: %s" % (path, lineno, e))
        if not words:
            raise ScenarioError("%s:%d: empty command" % (path, lineno))
        kind = words[0]
        if kind not in STEP_KINDS:
            raise ScenarioError("%s:%d: unknown command %r (" + ", ".join(STEP_KINDS) + ")"
                                % (path, lineno, kind))
        if kind == "goclient" and stdin is None:
            raise ScenarioError("%s:%d: goclient needs its requests on stdin (<<EOF)" % (path, lineno))
        if kind == "http" and (len(words) not in (3, 4) or (len(words) == 4 and stdin is not None)):
            raise ScenarioError("%s:%d: usage: http METHOD PATH [BODY] (or the body on stdin)" % (path, lineno))
        sc.steps.append(Step(kind, cmd, words[1:], stdin, lineno))
    if not sc.steps:
        raise ScenarioError("%s: no steps" % path)
    if sc.single_member is None:
        for st in sc.steps:
            if st.kind in SINGLE_MEMBER_STEPS:
                raise ScenarioError("%s:%d: %s works on one member only; mark the scenario @single-member"
                                    % (path, st.lineno, st.kind))
    if sc.plaintext_at_rest is None:
        for st in sc.steps:
            if st.kind in PLAINTEXT_AT_REST_STEPS:
                raise ScenarioError("%s:%d: %s reads the server's stored bytes; mark the scenario "
                                    "@plaintext-at-rest" % (path, st.lineno, st.kind))
    return sc


def list_scenarios(only=None):
    names = sorted(f for f in os.listdir(SCENARIO_DIR) if f.endswith(".txt"))
    out = []
    for f in names:
        if only and not any(o in f for o in only):
            continue
        out.append(parse_scenario(os.path.join(SCENARIO_DIR, f)))
    return out

# --------------------------------------------------------------------------
# Rendering raw bytes as text
# --------------------------------------------------------------------------


def render_bytes(data):
    """Bytes -> text. Clean UTF-8 text stays as it is; otherwise every
    undecodable byte and every control character other than \\n and \\t is
    shown as \\xNN and the text is flagged as binary (a literal backslash is
    then doubled, so that the rendering is unambiguous)."""
    try:
        text = data.decode("utf-8")
        if not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
            return text
    except UnicodeDecodeError:
        pass
    out = []
    text = data.decode("utf-8", "surrogateescape")
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\n\t":
            out.append(ch)
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    return "(binary, \\xNN escaped)\n" + "".join(out)


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _pb_parse(buf):
    fields = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError("field 0")
        if wt == 0:
            v, pos = _varint(buf, pos)
            fields.append((num, "varint", v))
        elif wt == 1:
            if pos + 8 > len(buf):
                raise ValueError("truncated fixed64")
            fields.append((num, "fixed64", int.from_bytes(buf[pos:pos + 8], "little")))
            pos += 8
        elif wt == 5:
            if pos + 4 > len(buf):
                raise ValueError("truncated fixed32")
            fields.append((num, "fixed32", int.from_bytes(buf[pos:pos + 4], "little")))
            pos += 4
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated bytes")
            fields.append((num, "bytes", buf[pos:pos + n]))
            pos += n
        else:
            raise ValueError("wire type %d" % wt)
    return fields


def _pb_render(buf, indent, out):
    for num, wt, v in _pb_parse(buf):
        pad = "  " * indent
        if wt != "bytes":
            out.append("%s%d: %d" % (pad, num, v))
            continue
        sub = None
        if v:
            try:
                _pb_parse(v)
                sub = []
                _pb_render(v, indent + 1, sub)
            except ValueError:
                sub = None
        # Printable text is shown as a string even if it happens to parse as a message.
        try:
            s = v.decode("utf-8")
            printable = not re.search(r"[\x00-\x1f\x7f]", s)
        except UnicodeDecodeError:
            printable = False
        if printable or sub is None:
            out.append("%s%d: %s" % (pad, num, json.dumps(v.decode("latin-1") if not printable else v.decode("utf-8"),
                                                            ensure_ascii=True)))
        else:
            out.append("%s%d {" % (pad, num))
            out.extend(sub)
            out.append("%s}" % pad)


def render_protobuf(data):
    """Decode an arbitrary protobuf message (etcdctl -w protobuf) to a text tree."""
    try:
        out = []
        if not data:
            return ""
        _pb_render(data, 0, out)
        return "(protobuf, decoded)\n" + "\n".join(out) + ("\n" if out else "")
    except ValueError:
        return render_bytes(data)

# --------------------------------------------------------------------------
# Normalisation: the closed mask list
# --------------------------------------------------------------------------

GO_DURATION = r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+"

# Generic regexes, applied to every output (stdout and stderr), in order.
# (Ports and lease IDs are built per run from the actual values.)
GENERIC_MASKS = [
    # durations
    (re.compile(r"(took = )" + GO_DURATION), r"\1<DURATION>"),
    (re.compile(r'("took"\s*:\s*)"' + GO_DURATION + '"'), r'\1"<DURATION>"'),
    (re.compile(r'^("Took" : )' + GO_DURATION + '$', re.M), r'\1<DURATION>'),
    # db sizes
    (re.compile(r'("(?:dbSize|dbSizeInUse|db_size|db_size_in_use)"\s*:\s*)"?[0-9]+"?'), r"\1<DBSIZE>"),
    # raft index / raft applied index
    (re.compile(r'("(?:raftIndex|raftAppliedIndex|raft_index|raft_applied_index)"\s*:\s*)"?[0-9]+"?'),
     r"\1<RAFTINDEX>"),
    # the same two in -w fields output
    (re.compile(r'^("(?:DBSize|DBSizeInUse)" : )[0-9]+$', re.M), r"\1<DBSIZE>"),
    (re.compile(r'^("(?:RaftIndex|RaftAppliedIndex)" : )[0-9]+$', re.M), r"\1<RAFTINDEX>"),
]

# Table columns (by header) and their masks.
TABLE_COLUMN_MASKS = {
    "TOOK": "<DURATION>",
    "DB SIZE": "<DBSIZE>",
    "TOTAL SIZE": "<DBSIZE>",
    "RAFT INDEX": "<RAFTINDEX>",
    "RAFT APPLIED INDEX": "<RAFTINDEX>",
    "HASH": "<SNAPSHOTHASH>",   # only in `snapshot status` tables (see below)
}

# Simple (comma separated) output of `endpoint status` and `snapshot status`:
# column index -> mask.
SIMPLE_STATUS_MASKS = {3: "<DBSIZE>", 7: "<RAFTINDEX>", 8: "<RAFTINDEX>"}
SIMPLE_SNAPSHOT_MASKS = {0: "<SNAPSHOTHASH>", 3: "<DBSIZE>"}

SNAPSHOT_JSON_MASKS = [
    (re.compile(r'("hash"\s*:\s*)[0-9]+'), r"\1<SNAPSHOTHASH>"),
    (re.compile(r'("totalSize"\s*:\s*)[0-9]+'), r"\1<DBSIZE>"),
]

CLIENT_WARNING_RE = re.compile(r"^WARNING: ")   # grpc-go's own logger
CLIENT_LOG_KEYS_MASKED = {"ts": "<TS>", "took": "<DURATION>", "size": "<DBSIZE>"}


class Context:
    """Per-scenario-run facts the normaliser needs."""

    def __init__(self, ports=()):
        self.ports = list(ports)       # [client port, peer port] (--cluster: [client port of default])
        self.member_ports = []         # --cluster: [(client port of m2, "<CPORT2>"), (.. m3, "<CPORT3>"), ...]
        self.leases = []               # lease IDs (int) in order of first sight

    def note_lease(self, lease_id):
        if lease_id and lease_id not in self.leases:
            self.leases.append(lease_id)

    def lease_token(self, lease_id):
        return "<LEASE%d>" % (self.leases.index(lease_id) + 1)


def mask_ports(text, ctx):
    for port, token in list(zip(ctx.ports, ("<CPORT>", "<PPORT>"))) + list(ctx.member_ports):
        text = re.sub(r"(?<=:)%d(?![0-9])" % port, token, text)
    return text


def mask_leases(text, ctx):
    for lid in ctx.leases:
        tok = ctx.lease_token(lid)
        text = re.sub(r"(?<![0-9A-Za-z])(?:%016x|%x)(?![0-9A-Za-z])" % (lid, lid), tok, text)
        text = re.sub(r"(?<![0-9])%d(?![0-9])" % lid, tok, text)
    return text


def normalise_client_log_line(line):
    """A zap JSON log line written by etcdctl / clientv3 on stderr.
    Warnings keep only level, msg and error (which carries the gRPC code);
    other levels keep every field, but ts, took and size are masked."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "level" not in obj or "msg" not in obj:
        return None
    if obj.get("level") == "warn":
        keep = {"level": "warn", "msg": obj.get("msg")}
        if "error" in obj:
            keep["error"] = obj["error"]
        return "<client-warning> " + json.dumps(keep, ensure_ascii=False)
    for k, tok in CLIENT_LOG_KEYS_MASKED.items():
        if k in obj:
            obj[k] = tok
    return "<client-log> " + json.dumps(obj, ensure_ascii=False)


def normalise_tables(lines, snapshot=False):
    """Tables drawn by etcdctl -w table: cells are compared without their
    padding (column widths follow from the masked cell contents); the
    columns listed in TABLE_COLUMN_MASKS are masked."""
    out = []
    header = None
    in_table = False
    for line in lines:
        if re.match(r"^\+[-+]+\+$", line):
            ncols = line.count("+") - 1
            out.append("+" + "+".join(["---"] * ncols) + "+")
            if not in_table:
                in_table, header = True, None
            continue
        if in_table and line.startswith("|") and line.endswith("|") and len(line) > 1:
            cells = [c.strip() for c in line[1:-1].split("|")]
            if header is None:
                header = cells
            else:
                for idx, name in enumerate(header):
                    tok = TABLE_COLUMN_MASKS.get(name)
                    if tok and idx < len(cells) and cells[idx] and (name != "HASH" or snapshot):
                        cells[idx] = tok
            out.append("| " + " | ".join(cells) + " |")
            continue
        in_table = False
        out.append(line)
    return out


def normalise_output(text, ctx, step, stream):
    """Normalise one rendered output stream of one step."""
    if stream == "stderr":
        # Client log lines first, while they are still valid JSON.
        new = []
        for line in text.split("\n"):
            if CLIENT_WARNING_RE.match(line):
                new.append("<client-warning>")
                continue
            if line.startswith("{"):
                n = normalise_client_log_line(line)
                if n is not None:
                    new.append(n)
                    continue
            new.append(line)
        text = "\n".join(new)
    text = mask_leases(text, ctx)
    text = mask_ports(text, ctx)
    for rx, rep in GENERIC_MASKS:
        text = rx.sub(rep, text)
    lines = text.split("\n")
    words = step.etcdctl_command() if step.kind == "etcdctl" else []
    fmt = step.write_format() if step.kind == "etcdctl" else None
    is_snapshot_status = words[:2] == ["snapshot", "status"]
    if stream == "stdout":
        if fmt == "table":
            lines = normalise_tables(lines, snapshot=is_snapshot_status)
        elif fmt == "simple" and words[:2] == ["endpoint", "status"]:
            lines = [mask_columns(l, SIMPLE_STATUS_MASKS, 10) for l in lines]
        elif fmt == "simple" and is_snapshot_status:
            lines = [mask_columns(l, SIMPLE_SNAPSHOT_MASKS, 4) for l in lines]
        elif fmt == "json" and is_snapshot_status:
            for rx, rep in SNAPSHOT_JSON_MASKS:
                lines = [rx.sub(rep, l) for l in lines]
    return "\n".join(lines)


def mask_columns(line, masks, ncols):
    if not line:
        return line
    cells = line.split(", ", ncols - 1)
    if len(cells) != ncols:
        return line
    for idx, tok in masks.items():
        cells[idx] = tok
    return ", ".join(cells)

# --------------------------------------------------------------------------
# Facts extracted from raw outputs: lease IDs, raft indices
# --------------------------------------------------------------------------


def capture_leases(step, stdout_text, ctx):
    """Remember lease IDs that appear in a step's output, so that they are
    masked consistently (<LEASE1>, <LEASE2>, ... in order of first sight)."""
    if step.kind == "etcdctl":
        words = step.etcdctl_command()
        if words[:1] == ["lease"]:
            for m in re.finditer(r"(?m)^lease ([0-9a-f]{1,16}) ", stdout_text):
                ctx.note_lease(int(m.group(1), 16))
            if words[1:2] == ["list"]:
                for m in re.finditer(r"(?m)^([0-9a-f]{1,16})$", stdout_text):
                    ctx.note_lease(int(m.group(1), 16))
            for m in re.finditer(r'"(?:ID|id)"\s*:\s*([0-9]+)', stdout_text):
                ctx.note_lease(int(m.group(1)))
        if words[:1] in (["lock"], ["elect"]):
            for m in re.finditer(r"(?m)^\S+/([0-9a-f]{1,16})$", stdout_text):
                ctx.note_lease(int(m.group(1), 16))
    elif step.kind == "goclient":
        reqs = (step.stdin or b"").decode("utf-8", "replace").splitlines()
        resps = stdout_text.splitlines()
        for req, resp in zip(reqs, resps):
            # Leases the server chose (LeaseGrant without an ID); IDs chosen
            # by the scenario are deterministic and stay visible.
            if (re.search(r'"method"\s*:\s*"[^"]*LeaseGrant"', req)
                    and not re.search(r'"ID"\s*:\s*"?[1-9]', req)):
                for m in re.finditer(r'"(?:ID|id)"\s*:\s*"?([0-9]+)"?', resp):
                    ctx.note_lease(int(m.group(1)))
    elif step.kind == "http" and "/lease/" in (step.argv[1] if len(step.argv) > 1 else ""):
        for m in re.finditer(r'"(?:ID|id)"\s*:\s*"?([0-9]+)"?', stdout_text):
            ctx.note_lease(int(m.group(1)))


def raft_indices(step, stdout_text, port=None):
    """[(raft_index, raft_applied_index)] found in a step's raw stdout. With `port`
    (--cluster), rows of `endpoint status` for other endpoints (other members' rows of
    --cluster) are left out: only the member the steps talk to is asserted on."""
    found = []

    def mine(endpoint):
        return port is None or re.search(r":%d/?$" % port, endpoint.strip()) is not None
    if step.kind == "etcdctl":
        words = step.etcdctl_command()
        if words[:2] != ["endpoint", "status"]:
            return found
        fmt = step.write_format()
        if fmt == "json":
            try:
                for ep in json.loads(stdout_text):
                    st = ep.get("Status", {})
                    if mine(str(ep.get("Endpoint", ""))):
                        found.append((st.get("raftIndex", 0), st.get("raftAppliedIndex", 0)))
            except (ValueError, AttributeError):
                pass
        elif fmt == "table":
            header = None
            for line in stdout_text.splitlines():
                if line.startswith("|"):
                    cells = [c.strip() for c in line[1:-1].split("|")]
                    if header is None:
                        header = cells
                    elif "RAFT INDEX" in header and "RAFT APPLIED INDEX" in header and len(cells) == len(header):
                        ri = cells[header.index("RAFT INDEX")]
                        ra = cells[header.index("RAFT APPLIED INDEX")]
                        if ("ENDPOINT" in header and not mine(cells[header.index("ENDPOINT")])):
                            continue
                        if ri.isdigit() and ra.isdigit():
                            found.append((int(ri), int(ra)))
        elif fmt == "simple":
            for line in stdout_text.splitlines():
                cells = line.split(", ", 9)
                if len(cells) == 10 and cells[7].isdigit() and cells[8].isdigit() and mine(cells[0]):
                    found.append((int(cells[7]), int(cells[8])))
        elif fmt == "fields":
            # One block per endpoint, ended by its "Endpoint" line.
            if port is None:
                blocks = [(stdout_text, None)]
            else:
                parts = re.split(r'(?m)^"Endpoint" : (".*")$', stdout_text)
                blocks = [(parts[i], json.loads(parts[i + 1])) for i in range(0, len(parts) - 1, 2)]
            for text, ep in blocks:
                if ep is not None and not mine(ep):
                    continue
                ri = re.findall(r'"RaftIndex" : ([0-9]+)', text)
                ra = re.findall(r'"RaftAppliedIndex" : ([0-9]+)', text)
                found.extend(zip(map(int, ri), map(int, ra)))
    elif step.kind in ("goclient", "http"):
        for line in stdout_text.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
                obj = obj["response"]
            if isinstance(obj, dict) and ("raft_index" in obj or "raft_applied_index" in obj):
                found.append((int(obj.get("raft_index", 0)), int(obj.get("raft_applied_index", 0))))
            elif isinstance(obj, dict) and ("raftIndex" in obj or "raftAppliedIndex" in obj):
                found.append((int(obj.get("raftIndex", 0)), int(obj.get("raftAppliedIndex", 0))))
    return found


class RaftIndexChecker:
    """Within each output raft_index == raft_applied_index; across the steps
    of a scenario they never fall and rise after every successful write."""

    def __init__(self, port=None):
        self.last = None
        self.write_since = False
        self.problems = []
        self.port = port          # --cluster: only rows of this client port (member default) count

    def observe(self, step_no, step, exit_code, stdout_text):
        for idx, applied in raft_indices(step, stdout_text, self.port):
            if idx != applied:
                self.problems.append("step %d (%s): raft_index %d != raft_applied_index %d"
                                     % (step_no, step.text, idx, applied))
            if self.last is not None:
                if idx < self.last:
                    self.problems.append("step %d (%s): raft_index fell from %d to %d"
                                         % (step_no, step.text, self.last, idx))
                elif self.write_since and idx <= self.last:
                    self.problems.append("step %d (%s): raft_index did not rise after a write (still %d)"
                                         % (step_no, step.text, idx))
            self.last = idx if self.last is None else max(self.last, idx)
            self.write_since = False
        if exit_code == 0 and step.is_write():
            self.write_since = True

# --------------------------------------------------------------------------
# The .out format
# --------------------------------------------------------------------------


def block(label, text):
    if text == "":
        return ["%s: (empty)" % label]
    out = ["%s:" % label]
    eol = text.endswith("\n")
    body = text[:-1] if eol else text
    for l in body.split("\n"):
        out.append("| " + l)
    if not eol:
        out.append("\\ no newline at end")
    return out


def format_step(step, exit_code, stdout, stderr):
    lines = ["$ " + step.text]
    if step.stdin is not None:
        lines += block("stdin", render_bytes(step.stdin))
    lines.append("exit: %s" % exit_code)
    lines += block("stdout", stdout)
    lines += block("stderr", stderr)
    lines.append("")
    return lines


def format_header(sc, cluster=1):
    h = ["# interop recording of scenarios/%s.txt against etcd 3.4.23 -- generated by" % sc.name,
         "# `interop/record.sh`; do not edit by hand."]
    if cluster > 1:
        h.append("# cluster: %d members (%s); the steps run against default"
                 % (cluster, ", ".join(cluster_member_names(cluster))))
    if sc.server_flags:
        h.append("# server flags: " + " ".join(sc.server_flags))
    h.append("")
    return h

# --------------------------------------------------------------------------
# Process handling
# --------------------------------------------------------------------------


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def stop_process(proc, timeout=STOP_TIMEOUT):
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def run_bounded(argv, stdin, timeout, cwd, env):
    """Run a client command with a time bound; returns (rc, stdout, stderr)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env)
    try:
        out, err = proc.communicate(stdin or b"", timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return "timeout after %gs" % timeout, out, err


def client_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_") and not k.startswith("ETCD_")}
    env["ETCDCTL_API"] = "3"
    env["HOME"] = home
    env["LC_ALL"] = "C.UTF-8"
    return env


class Server:
    def __init__(self, binary, workdir, extra_flags, etcdctl):
        self.binary = binary
        self.workdir = workdir
        self.datadir = os.path.join(workdir, "data")
        self.extra_flags = extra_flags
        self.etcdctl = etcdctl
        self.logpath = os.path.join(workdir, "server.log")
        self.proc = None
        self.cport = self.pport = None
        self.start_timeout = START_TIMEOUT
        # The member's identity. One member: name default, advertising http://localhost:2380
        # (never dialled) while it listens on a free peer port. --cluster sets these per member.
        self.name = "default"
        self.peer_url = "http://localhost:2380"
        self.initial_cluster = "default=http://localhost:2380"
        self.member_flags = []

    def argv(self):
        return [self.binary,
                "--name", self.name,
                "--data-dir", self.datadir,
                "--listen-client-urls", "http://127.0.0.1:%d" % self.cport,
                "--advertise-client-urls", "http://127.0.0.1:%d" % self.cport,
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.pport,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster] + self.member_flags + self.extra_flags

    def launch(self):
        """Start the process (no waiting)."""
        with open(self.logpath, "ab") as logf:
            logf.write(("\n==== start: %s\n" % " ".join(shlex.quote(a) for a in self.argv())).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir,
                                         start_new_session=True)

    def start(self, fresh_ports=True):
        attempts = 3 if fresh_ports else 1
        last = ""
        for _ in range(attempts):
            if fresh_ports:
                self.cport = free_port()
                self.pport = free_port()
                while self.pport == self.cport:
                    self.pport = free_port()
            self.launch()
            ok, last = self.wait_ready()
            if ok:
                return
            self.stop()
            if not fresh_ports or "address already in use" not in self.log_tail():
                break
        raise RuntimeError("server did not start serving: %s" % last)

    def wait_ready(self, deadline=None):
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        env = client_env(self.workdir)
        last = "no attempt"
        delay = 0.02
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, "server exited with code %s" % self.proc.returncode
            try:
                with socket.create_connection(("127.0.0.1", self.cport), timeout=1.0):
                    pass
            except OSError as e:
                last = "connect: %s" % e
            else:
                rc, out, err = run_bounded(
                    [self.etcdctl, "--endpoints=127.0.0.1:%d" % self.cport, "--dial-timeout=2s",
                     "--command-timeout=%ds" % int(HEALTH_TIMEOUT), "endpoint", "health"],
                    b"", HEALTH_TIMEOUT + 5, self.workdir, env)
                if rc == 0:
                    return True, ""
                last = "endpoint health: rc=%s %s" % (rc, err.decode("utf-8", "replace").strip()[-300:])
            time.sleep(delay)      # back-off between polls, not a wait for readiness
            delay = min(delay * 2, 0.25)
        return False, "not serving after %gs (%s)" % (self.start_timeout, last)

    def note(self, text):
        """A line of the harness's own in the server log."""
        try:
            with open(self.logpath, "ab") as logf:
                logf.write(("\n==== %s\n" % text).encode())
        except OSError:
            pass

    def stop(self):
        stop_process(self.proc)

    def log_tail(self, n=60):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

# --------------------------------------------------------------------------
# --cluster N: N members of the server binary, the steps against member default
# --------------------------------------------------------------------------

CLUSTER_PEER_BASE = 23800      # peer ports: base, base+1, ... (fixed: member IDs hash the peer URLs)
CLUSTER_FIRST_TERM = 2         # the first election of a fresh cluster (members boot at term 1)
CLUSTER_START_ATTEMPTS = 3
# Members other than default wait long before they campaign, so that default wins the first
# election (etcd: it advances its election ticks once its peers are connected; the others
# do not). Which member leads is visible (endpoint status) and must be the same on every run.
CLUSTER_FOLLOWER_FLAGS = ["--election-timeout", "5000", "--initial-election-tick-advance=false"]


def cluster_member_names(n):
    return ["default"] + ["m%d" % i for i in range(2, n + 1)]


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def stop_processes(procs, timeout=STOP_TIMEOUT):
    """Stop processes we started, by their PIDs: SIGTERM to all, then SIGKILL to those
    still running after `timeout`."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=timeout)


class Cluster:
    """N members (default, m2, m3, ...) of the server binary on one host. Every member
    advertises http://127.0.0.1:(peer_base + i) and listens there, so member and cluster IDs
    are the same on every run; the client ports are free ports. The scenario's server flags
    go to every member. `cport`/`pport` are member default's (the steps talk to it)."""

    def __init__(self, n, binary, workdir, extra_flags, etcdctl, peer_base, start_timeout):
        self.workdir = workdir
        self.etcdctl = etcdctl
        self.start_timeout = start_timeout
        names = cluster_member_names(n)
        self.peer_ports = [peer_base + i for i in range(n)]
        peer_urls = ["http://127.0.0.1:%d" % p for p in self.peer_ports]
        initial = ",".join("%s=%s" % (nm, u) for nm, u in zip(names, peer_urls))
        self.members = []
        for i, nm in enumerate(names):
            m = Server(binary, workdir, extra_flags, etcdctl)
            m.name = nm
            m.datadir = os.path.join(workdir, "data" if i == 0 else "data-" + nm)
            m.logpath = os.path.join(workdir, "server.log" if i == 0 else "server-%s.log" % nm)
            m.peer_url = peer_urls[i]
            m.initial_cluster = initial
            m.pport = self.peer_ports[i]
            m.member_flags = [] if i == 0 else list(CLUSTER_FOLLOWER_FLAGS)
            m.start_timeout = start_timeout
            self.members.append(m)

    @property
    def cport(self):
        return self.members[0].cport

    @property
    def pport(self):
        return self.members[0].pport

    def member_ports(self):
        """[(client port, token)] of the members other than default, for the port mask."""
        return [(m.cport, "<CPORT%d>" % (i + 2)) for i, m in enumerate(self.members[1:])]

    def start(self):
        last = ""
        for attempt in range(1, CLUSTER_START_ATTEMPTS + 1):
            for m in self.members:
                shutil.rmtree(m.datadir, ignore_errors=True)
            busy = self.wait_peer_ports_free()
            if busy:
                raise RuntimeError("peer port %d on 127.0.0.1 is in use (another --cluster run? "
                                   "see --cluster-peer-base)" % busy)
            taken = set(self.peer_ports)
            for m in self.members:
                m.cport = free_port()
                while m.cport in taken:
                    m.cport = free_port()
                taken.add(m.cport)
            for m in self.members:
                m.launch()
            ok, last = self.wait_settled()
            if ok:
                return
            for m in self.members:
                m.note("harness: cluster start attempt %d failed: %s" % (attempt, last))
            self.stop()
            if "exited with code" in last and "address already in use" not in self.log_tail():
                break      # a member that exits by itself will do so again
        raise RuntimeError("cluster did not start and settle: %s" % last)

    def wait_peer_ports_free(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            busy = [p for p in self.peer_ports if not port_free(p)]
            if not busy or time.monotonic() > deadline:
                return busy[0] if busy else None
            time.sleep(0.2)

    def wait_settled(self):
        """Every member serves (TCP, then `endpoint health`); every member reports member
        default as the leader, elected in the first election (term 2); default's member list
        shows every member with its name and client URL; every member's /version shows the
        decided cluster version. Bounded by the start timeout; polls, no fixed sleeps."""
        deadline = time.monotonic() + self.start_timeout
        for m in self.members:
            ok, last = m.wait_ready(deadline)
            if not ok:
                return False, "member %s: %s" % (m.name, last)
        env = client_env(self.workdir)
        eps = ",".join("127.0.0.1:%d" % m.cport for m in self.members)
        last = "no attempt"
        delay = 0.05
        while time.monotonic() < deadline:
            for m in self.members:
                if m.proc.poll() is not None:
                    return False, "member %s exited with code %s" % (m.name, m.proc.returncode)
            ok, last, final = self.settled(eps, env)
            if ok or final:
                return ok, last
            time.sleep(delay)      # back-off between polls, not a wait for readiness
            delay = min(delay * 2, 0.25)
        return False, "not settled after %gs (%s)" % (self.start_timeout, last)

    def settled(self, eps, env):
        """(ok, what is missing, final): final means waiting longer cannot help."""
        rc, out, err = run_bounded([self.etcdctl, "--endpoints=" + eps, "--dial-timeout=2s",
                                    "--command-timeout=%ds" % int(HEALTH_TIMEOUT), "endpoint", "status", "-w", "json"],
                                   b"", HEALTH_TIMEOUT + 5, self.workdir, env)
        if rc != 0:
            return False, "endpoint status: rc=%s %s" % (rc, err.decode("utf-8", "replace").strip()[-300:]), False
        try:
            st = {e["Endpoint"]: e["Status"] for e in json.loads(out)}
            by_member = [st["127.0.0.1:%d" % m.cport] for m in self.members]
            ids = [s["header"]["member_id"] for s in by_member]
        except (ValueError, KeyError, TypeError) as e:
            return False, "endpoint status: unexpected output (%s): %s" % (e, out[:300]), False
        for m, s in zip(self.members, by_member):
            lead, term = s.get("leader", 0), s.get("raftTerm", 0)
            if lead and lead != ids[0]:
                return False, "member %s reports leader %x, not default (%x)" % (m.name, lead, ids[0]), True
            if term > CLUSTER_FIRST_TERM:
                return False, "member %s is at term %d; the first election (term %d) did not settle it" % (
                    m.name, term, CLUSTER_FIRST_TERM), True
            if not lead or term != CLUSTER_FIRST_TERM:
                return False, "member %s: leader %x, term %d" % (m.name, lead, term), False
        rc, out, err = run_bounded([self.etcdctl, "--endpoints=127.0.0.1:%d" % self.cport, "--dial-timeout=2s",
                                    "--command-timeout=%ds" % int(HEALTH_TIMEOUT), "member", "list", "-w", "json"],
                                   b"", HEALTH_TIMEOUT + 5, self.workdir, env)
        if rc != 0:
            return False, "member list: rc=%s %s" % (rc, err.decode("utf-8", "replace").strip()[-300:]), False
        try:
            listed = {(x.get("name", ""), tuple(x.get("clientURLs", []))) for x in json.loads(out)["members"]}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return False, "member list: unexpected output (%s): %s" % (e, out[:300]), False
        want = {(m.name, ("http://127.0.0.1:%d" % m.cport,)) for m in self.members}
        if listed != want:
            return False, "member list on default: %s" % sorted(listed), False
        for m in self.members:
            conn = http.client.HTTPConnection("127.0.0.1", m.cport, timeout=HEALTH_TIMEOUT)
            try:
                conn.request("GET", "/version")
                body = conn.getresponse().read()
                cv = json.loads(body).get("etcdcluster")
            except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
                return False, "member %s: GET /version: %s" % (m.name, e), False
            finally:
                conn.close()
            if not cv or cv == "not_decided":
                return False, "member %s: cluster version not decided yet (%r)" % (m.name, cv), False
        return True, "", True

    def stop(self):
        # The members other than default first: etcd's leader, when stopped, hands its
        # leadership to a connected member and waits for that.
        stop_processes([m.proc for m in self.members[1:]])
        stop_processes([self.members[0].proc])

    def log_tail(self, n=60):
        """The tails of every member's log, member default's last."""
        per = max(10, n // len(self.members))
        out = []
        for m in reversed(self.members):
            tail = m.log_tail(per)
            if tail.strip():
                out.append("---- %s (%s)" % (os.path.basename(m.logpath), m.name))
                out.append(tail)
        return "\n".join(out)

# --------------------------------------------------------------------------
# Running one scenario
# --------------------------------------------------------------------------

_goclient_lock = threading.Lock()
_start_lock = threading.Lock()
_start_failures = [0]          # consecutive scenarios whose server did not start
MAX_START_FAILURES = 3


def ensure_goclient():
    with _goclient_lock:
        if os.path.isfile(GOCLIENT_BIN) and os.access(GOCLIENT_BIN, os.X_OK):
            # Rebuild when a source file of the client is newer than the binary.
            src_dir = os.path.dirname(GOCLIENT_BUILD)
            built = os.path.getmtime(GOCLIENT_BIN)
            try:
                newer = [f for f in os.listdir(src_dir)
                         if (f.endswith(".go") or f == "build.sh")
                         and os.path.getmtime(os.path.join(src_dir, f)) > built]
            except OSError:
                newer = []
            if not newer or not os.path.isfile(GOCLIENT_BUILD):
                return None
        if not os.path.isfile(GOCLIENT_BUILD):
            return "goclient not available: %s does not exist (and no %s)" % (GOCLIENT_BUILD, GOCLIENT_BIN)
        if shutil.which("go") is None:
            return "goclient not available: Go tooling (`go`) is not installed"
        try:
            p = subprocess.run(["bash", GOCLIENT_BUILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=900, cwd=os.path.dirname(HERE))
        except subprocess.TimeoutExpired:
            return "goclient build timed out"
        if p.returncode != 0 or not os.path.isfile(GOCLIENT_BIN):
            return "goclient build failed (rc=%s):\n%s" % (p.returncode, p.stdout.decode("utf-8", "replace")[-2000:])
        return None


FIXTURES_DIR = os.path.join(HERE, "fixtures")


def restore_snapshot(etcdctl, snap, datadir, workdir, env, timeout):
    """`etcdctl snapshot restore` for this harness's one member; its log lines are not shown."""
    rc, out, err = run_bounded([etcdctl, "snapshot", "restore", snap, "--data-dir", datadir,
                                "--name", "default", "--initial-cluster", "default=http://localhost:2380",
                                "--initial-advertise-peer-urls", "http://localhost:2380"],
                               b"", timeout, workdir, env)
    if rc == 0:
        return 0, b"", b""
    return rc, out, err


def etcd_reads(args, snap, workdir, env, timeout):
    """Real etcd booted from a restore of `snap`: its keys (get --prefix -w json) and members."""
    scratch = tempfile.mkdtemp(prefix="etcd-reads-", dir=workdir)
    rc, out, err = restore_snapshot(args.etcdctl, snap, os.path.join(scratch, "data"), workdir, env, timeout)
    if rc != 0:
        return rc, out, err
    etcd = Server(args.etcd_bin, scratch, [], args.etcdctl)
    etcd.datadir = os.path.join(scratch, "data")
    try:
        etcd.start()
        outs = []
        for words in (["get", "", "--prefix", "-w", "json"], ["member", "list", "-w", "json"]):
            rc, out, err = run_bounded([args.etcdctl, "--endpoints=127.0.0.1:%d" % etcd.cport] + words,
                                       b"", timeout, workdir, env)
            if rc != 0:
                return rc, out, err
            # Real etcd's own ports differ from the server under test's: mask them here.
            text = out.decode("utf-8", "replace").replace(":%d" % etcd.cport, ":<ETCD_CPORT>")
            outs.append(text)
        return 0, "".join(outs).encode(), b""
    finally:
        etcd.stop()


BBOLT_CHECK_BUILD = os.path.join(os.path.dirname(HERE), "Tools", "bbolt-check", "build.sh")
_bbolt_lock = threading.Lock()


def db_dump(path, workdir, timeout):
    """`db-dump`: the member's backend file, after a clean stop, as the real bbolt reads it
    (Tools/bbolt-check): tx.Check's verdict, then every bucket and key in order. Keys and
    values that are printable ASCII are shown as text (so ports in member URLs get masked),
    the rest in hex."""
    with _bbolt_lock:
        if shutil.which("go") is None:
            raise RuntimeError("db-dump needs Go (`go`) to build Tools/bbolt-check")
        p = subprocess.run(["bash", BBOLT_CHECK_BUILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
        if p.returncode != 0:
            raise RuntimeError("bbolt-check build failed: %s" % p.stderr.decode("utf-8", "replace")[-2000:])
        tool = p.stdout.decode().strip().splitlines()[-1]
    env = client_env(workdir)
    rc, check_out, check_err = run_bounded([tool, "check", path], b"", timeout, workdir, env)
    if rc != 0:
        return rc, check_out, check_err
    rc, out, err = run_bounded([tool, "dump", path], b"", timeout, workdir, env)

    def show(h):
        if h == "-":
            return '""'
        b = bytes.fromhex(h)
        if all(0x20 <= c < 0x7f for c in b):
            return json.dumps(b.decode("ascii"))
        return h
    lines = [check_out.decode().strip()]
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split(" ")
        if parts[0] == "B":
            lines.append("bucket %s %s" % ("/".join(show(x) for x in parts[1].split("/")), parts[2]))
        elif parts[0] == "K" and len(parts) == 4:
            lines.append("  %s = %s" % (show(parts[2]), show(parts[3])))
        else:
            lines.append(line)
    return rc, ("\n".join(lines) + "\n").encode(), err


def expand(s, ctx, server, workdir):
    def rep(m):
        name = m.group(1)
        if name == "ENDPOINT":
            return "127.0.0.1:%d" % server.cport
        if name == "CPORT":
            return str(server.cport)
        if name == "FIXTURES":
            return FIXTURES_DIR
        if name == "PPORT":
            return str(server.pport)
        bm = re.fullmatch(r"BYTES_([0-9]+)", name)
        if bm:
            return "x" * int(bm.group(1))
        lm = re.fullmatch(r"LEASE([0-9]*)(_DEC)?", name)
        if lm:
            n = int(lm.group(1)) if lm.group(1) else len(ctx.leases)
            if n < 1 or n > len(ctx.leases):
                raise ScenarioError("${%s}: no such lease captured yet" % name)
            lid = ctx.leases[n - 1]
            return str(lid) if lm.group(2) else "%x" % lid
        raise ScenarioError("unknown placeholder ${%s}" % name)
    return re.sub(r"\$\{([A-Z0-9_]+)\}", rep, s)


def run_http(step, stdin, server, timeout):
    method, path = step.argv[0], step.argv[1]
    body = step.argv[2].encode() if len(step.argv) > 2 else stdin
    conn = http.client.HTTPConnection("127.0.0.1", server.cport, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        out = b"HTTP %d\nContent-Type: %s\n\n" % (resp.status, ctype.encode()) + data
        return 0, out, b""
    except OSError as e:
        return 1, b"", ("http error: %s\n" % e).encode()
    finally:
        conn.close()


class Result:
    def __init__(self, sc):
        self.sc = sc
        self.text = None        # normalised .out text
        self.error = None       # harness / server problem
        self.problems = []      # raft-index assertion failures
        self.seconds = 0.0
        self.raw = []           # raw step results (for fixtures)
        self.ports = None
        self.log_tail = ""


def run_scenario(sc, args, run_dir):
    res = Result(sc)
    t0 = time.monotonic()
    workdir = os.path.join(run_dir, sc.name)
    os.makedirs(workdir, exist_ok=True)
    cluster = getattr(args, "cluster", 1)
    # The scenario's flags, then the run's (--server-arg, --encryption): every start of the
    # server under test gets them (restarts, restore-server, every --cluster member).
    flags = sc.server_flags + list(getattr(args, "harness_server_flags", []))
    if cluster > 1:
        server = Cluster(cluster, os.path.abspath(args.server_bin), workdir, flags, args.etcdctl,
                         args.cluster_peer_base, args.start_timeout)
    else:
        server = Server(os.path.abspath(args.server_bin), workdir, flags, args.etcdctl)
        server.start_timeout = args.start_timeout
    ctx = Context()
    checker = RaftIndexChecker()
    out_lines = format_header(sc, cluster)
    env = client_env(workdir)
    try:
        if cluster > 1 and any(s.kind in SINGLE_MEMBER_STEPS for s in sc.steps):
            raise ScenarioError("%s steps need one member (the scenario is @single-member)"
                                % "/".join(sorted({s.kind for s in sc.steps if s.kind in SINGLE_MEMBER_STEPS})))
        if getattr(args, "encryption", None) and any(s.kind in PLAINTEXT_AT_REST_STEPS for s in sc.steps):
            raise ScenarioError("%s steps read the stored bytes (the scenario is @plaintext-at-rest)"
                                % "/".join(sorted({s.kind for s in sc.steps if s.kind in PLAINTEXT_AT_REST_STEPS})))
        if any(s.kind == "goclient" for s in sc.steps):
            err = ensure_goclient()
            if err:
                raise RuntimeError(err)
        with _start_lock:
            if _start_failures[0] >= MAX_START_FAILURES:
                raise RuntimeError("skipped: the server failed to start in %d scenarios in a row"
                                   % MAX_START_FAILURES)
        try:
            server.start()
        except RuntimeError:
            with _start_lock:
                _start_failures[0] += 1
            raise
        with _start_lock:
            _start_failures[0] = 0
        if cluster > 1:
            # The peer ports are fixed (part of the member IDs) and are not masked.
            ctx.ports = [server.cport]
            ctx.member_ports = server.member_ports()
            checker.port = server.cport
        else:
            ctx.ports = [server.cport, server.pport]
        res.ports = list(ctx.ports)
        deadline = time.monotonic() + args.scenario_timeout
        for no, step in enumerate(sc.steps, 1):
            left = deadline - time.monotonic()
            if left <= 0:
                msg = "scenario deadline of %gs exceeded before step %d; remaining steps skipped" % (
                    args.scenario_timeout, no)
                out_lines.append("(%s)" % msg)
                checker.problems.append(msg)
                break
            step_timeout = max(1.0, min(sc.step_timeout, left))
            stdin = step.stdin
            if stdin is not None and step.kind in ("etcdctl", "goclient", "http"):
                stdin = expand(stdin.decode("utf-8", "surrogateescape"), ctx, server, workdir).encode(
                    "utf-8", "surrogateescape")
            argv = [expand(a, ctx, server, workdir) for a in step.argv]
            if step.kind == "etcdctl":
                full = [args.etcdctl]
                if not any(a.startswith("--endpoints") for a in argv):
                    full.append("--endpoints=127.0.0.1:%d" % server.cport)
                rc, out, err = run_bounded(full + argv, stdin, step_timeout, workdir, env)
            elif step.kind == "goclient":
                rc, out, err = run_bounded([GOCLIENT_BIN, "--endpoint", "127.0.0.1:%d" % server.cport],
                                           stdin, step_timeout, workdir, env)
            elif step.kind == "http":
                rc, out, err = run_http(step, stdin, server, step_timeout)
            elif step.kind == "restore-server":
                server.stop()
                restored = os.path.join(workdir, "restored-%d" % no)
                rc, out, err = restore_snapshot(args.etcdctl, argv[0], restored, workdir, env, step_timeout)
                if rc == 0:
                    server.datadir = restored
                    server.start(fresh_ports=False)
                    checker.last = None       # a restored member starts a new Raft log
            elif step.kind == "etcd-reads":
                rc, out, err = etcd_reads(args, argv[0], workdir, env, step_timeout)
            elif step.kind == "db-dump":
                server.stop()
                rc, out, err = db_dump(os.path.join(server.datadir, "member", "snap", "db"), workdir, step_timeout)
                server.start(fresh_ports=False)
            else:  # restart-server
                server.stop()
                server.start(fresh_ports=False)
                rc, out, err = 0, b"", b""
            res.raw.append({"exit": rc, "stdout": base64.b64encode(out).decode(),
                            "stderr": base64.b64encode(err).decode()})
            if step.kind == "etcdctl" and step.write_format() == "protobuf":
                stdout_text = render_protobuf(out)
            else:
                stdout_text = render_bytes(out)
            stderr_text = render_bytes(err)
            capture_leases(step, stdout_text, ctx)
            checker.observe(no, step, rc, stdout_text)
            out_lines += format_step(step, rc,
                                     normalise_output(stdout_text, ctx, step, "stdout"),
                                     normalise_output(stderr_text, ctx, step, "stderr"))
        res.text = "\n".join(out_lines)
        res.problems = checker.problems
    except (RuntimeError, ScenarioError, OSError) as e:
        res.error = str(e)
        res.text = "\n".join(out_lines)
    except Exception as e:  # a harness bug must not hide the other scenarios
        import traceback
        res.error = "harness exception: %s\n%s" % (e, traceback.format_exc())
        res.text = "\n".join(out_lines)
    finally:
        server.stop()
        res.log_tail = server.log_tail()
        res.seconds = time.monotonic() - t0
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return res

# --------------------------------------------------------------------------
# --encryption PROVIDER: swetcd's encryption at rest over every key
# --------------------------------------------------------------------------

ENCRYPTION_PROVIDERS = ("aescbc", "aesgcm", "secretbox")


def encryption_config_text(provider, secret):
    """A Kubernetes EncryptionConfiguration: `*.*` with PROVIDER (one key) first, identity second."""
    return ("apiVersion: apiserver.config.k8s.io/v1\n"
            "kind: EncryptionConfiguration\n"
            "resources:\n"
            "  - resources: [\"*.*\"]\n"
            "    providers:\n"
            "      - %s:\n"
            "          keys:\n"
            "            - name: key1\n"
            "              secret: %s\n"
            "      - identity: {}\n" % (provider, base64.b64encode(secret).decode()))


def write_encryption_config(provider, directory):
    """Writes the config (a fresh random 32-byte key) and a resource-prefixes file whose root ""
    makes `*.*` cover every key; returns the server flags that name them."""
    d = os.path.join(directory, "encryption")
    os.makedirs(d, exist_ok=True)
    config = os.path.join(d, "encryption-config.yaml")
    prefixes = os.path.join(d, "resource-prefixes.yaml")
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(encryption_config_text(provider, os.urandom(32)))
    with open(prefixes, "w", encoding="utf-8") as f:
        f.write('roots: [""]\n')
    return ["--encryption-provider-config=" + config, "--encryption-resource-prefixes=" + prefixes]


def is_swetcd(binary):
    """True if BINARY --version names swetcd (real etcd prints no swetcd line)."""
    try:
        p = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"swetcd" in p.stdout

# --------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------


def expected_dir(cluster=1):
    """expected/ for one member; expected-clusterN/ for --cluster N."""
    return EXPECTED_DIR if cluster <= 1 else os.path.join(HERE, "expected-cluster%d" % cluster)


def read_expected(name, directory=EXPECTED_DIR):
    p = os.path.join(directory, name + ".out")
    try:
        with open(p, "r", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def compare(expected, actual, name, label="expected"):
    """The comparer used by test mode: exact equality of the normalised
    texts; returns the unified diff ("" when equal)."""
    if expected == actual:
        return ""
    d = diff_text(expected, actual, name, label)
    return d or "(outputs differ only in invisible characters)\n"


def diff_text(expected, actual, name, label="expected"):
    return "".join(difflib.unified_diff(
        expected.splitlines(True), actual.splitlines(True),
        fromfile="%s/%s.out (etcd 3.4.23)" % (label, name), tofile="actual/%s.out" % name))


PENDING_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pending.txt")


def load_pending():
    """interop/pending.txt: scenarios whose feature swetcd does not have yet, each with
    the issue that builds it. Test mode skips them (and says so) unless --include-pending;
    recording always covers them, so they are ready when the feature lands."""
    pending = {}
    if os.path.exists(PENDING_FILE):
        with open(PENDING_FILE) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    name, why = line.split(None, 1)
                    pending[name] = why
    return pending


def main_run(args):
    try:
        scenarios = list_scenarios(args.only)
    except ScenarioError as e:
        print("interop: bad scenario: %s" % e, file=sys.stderr)
        return 2
    cluster = args.cluster
    exp_dir = expected_dir(cluster)
    exp_label = os.path.basename(exp_dir)
    record_hint = "interop/record.sh" + (" --cluster %d" % cluster if cluster > 1 else "")
    if cluster > 1 and args.jobs > 1:
        print("interop: --cluster runs one scenario at a time (its peer ports are fixed); drop -j",
              file=sys.stderr)
        return 2
    skipped = 0
    single_skipped = 0
    if cluster > 1:
        kept = []
        for sc in scenarios:
            if sc.single_member is not None:
                print("SKIP %s (@single-member: %s)" % (sc.name, sc.single_member))
                single_skipped += 1
                if args.record:
                    # A recording left from before the scenario became @single-member.
                    stale = os.path.join(exp_dir, sc.name + ".out")
                    if os.path.exists(stale):
                        os.remove(stale)
                        print("removed %s/%s.out" % (exp_label, sc.name))
            else:
                kept.append(sc)
        scenarios = kept
        skipped += single_skipped
    plaintext_skipped = 0
    if args.encryption:
        kept = []
        for sc in scenarios:
            if sc.plaintext_at_rest is not None:
                print("SKIP %s (@plaintext-at-rest: %s)" % (sc.name, sc.plaintext_at_rest))
                plaintext_skipped += 1
            else:
                kept.append(sc)
        scenarios = kept
        skipped += plaintext_skipped
    if not args.record and not args.include_pending:
        pending = load_pending()
        unknown = set(pending) - {f[:-4] for f in os.listdir(SCENARIO_DIR) if f.endswith(".txt")}
        if unknown:
            print("interop: pending.txt names unknown scenarios: %s" % ", ".join(sorted(unknown)), file=sys.stderr)
            return 2
        kept = []
        for sc in scenarios:
            if sc.name in pending:
                print("SKIP %s (pending: %s)" % (sc.name, pending[sc.name]))
                skipped += 1
            else:
                kept.append(sc)
        scenarios = kept
    if not scenarios:
        if plaintext_skipped:
            print("interop: nothing to run with --encryption: %d scenario(s) are @plaintext-at-rest%s"
                  % (plaintext_skipped, ", %d @single-member" % single_skipped if single_skipped else ""))
            return 0
        if single_skipped:
            print("interop: nothing to run with --cluster %d: %d scenario(s) are @single-member"
                  % (cluster, single_skipped))
            return 0
        print("interop: no scenario matches", file=sys.stderr)
        return 2
    if not os.path.isfile(args.server_bin):
        print("interop: no server binary at %s" % args.server_bin, file=sys.stderr)
        return 2
    run_dir = os.path.join(WORK_ROOT, "run-%d" % os.getpid())
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(exp_dir, exist_ok=True)
    args.harness_server_flags = list(args.server_arg or [])
    if args.encryption:
        args.harness_server_flags += write_encryption_config(args.encryption, run_dir)
        print("interop: values encrypted at rest (%s, every key), compared with the same recordings"
              % args.encryption)
    t0 = time.monotonic()
    passed = failed = 0
    fixtures = {}
    print_lock = threading.Lock()

    def report(res):
        nonlocal passed, failed
        sc = res.sc
        with print_lock:
            if args.record:
                if res.error or res.problems:
                    failed += 1
                    print("FAIL %s: not recorded: %s" % (sc.name, res.error or "; ".join(res.problems)))
                    if args.verbose:
                        print("---- server log tail\n" + res.log_tail)
                    return
                with open(os.path.join(exp_dir, sc.name + ".out"), "w", encoding="utf-8") as f:
                    f.write(res.text)
                passed += 1
                if sc.name in FIXTURE_SCENARIOS and cluster <= 1:
                    fixtures[sc.name] = {"ports": res.ports, "raw": res.raw}
                print("recorded %s (%d steps, %.1fs)" % (sc.name, len(sc.steps), res.seconds))
                return
            expected = read_expected(sc.name, exp_dir)
            problems = []
            if res.error:
                problems.append("harness: " + res.error)
            problems += res.problems
            if expected is None:
                problems.append("no recording %s/%s.out (run %s)" % (exp_label, sc.name, record_hint))
            diff = compare(expected, res.text or "", sc.name, exp_label) if expected is not None else ""
            if res.error is None and diff:
                problems.append("output differs from the etcd recording")
            if problems:
                failed += 1
                print("FAIL %s (%.1fs)" % (sc.name, res.seconds))
                for p in problems:
                    print("  " + p)
                if diff and res.error is None:
                    sys.stdout.write(diff)
                if res.error and not args.verbose and res.log_tail.strip():
                    print("---- server log tail (%s; -v shows more)\n%s"
                          % (sc.name, "\n".join(res.log_tail.splitlines()[-15:])))
                if args.verbose:
                    print("---- server log tail (%s)\n%s" % (sc.name, res.log_tail))
            else:
                passed += 1
                if args.verbose:
                    print("ok   %s (%d steps, %.1fs)" % (sc.name, len(sc.steps), res.seconds))
            sys.stdout.flush()

    try:
        if args.jobs <= 1:
            for sc in scenarios:
                report(run_scenario(sc, args, run_dir))
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
                futs = [ex.submit(run_scenario, sc, args, run_dir) for sc in scenarios]
                for fut in futs:
                    report(fut.result())
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print("interop: work dirs kept under %s" % run_dir)
    if args.record and fixtures:
        try:
            with open(FIXTURES, "r", encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        old.update(fixtures)
        fixtures = {k: v for k, v in old.items() if k in FIXTURE_SCENARIOS}
        with open(FIXTURES, "w", encoding="utf-8") as f:
            json.dump(fixtures, f, indent=1, sort_keys=True)
            f.write("\n")
    if args.verbose:
        print("interop: %.1fs" % (time.monotonic() - t0))
    if args.record:
        print("interop: %d recorded, %d failed%s" % (passed, failed,
                                                     ", %d skipped" % skipped if cluster > 1 else ""))
    else:
        print("interop: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0

# --------------------------------------------------------------------------
# Selftest: the comparer must see perturbations and ignore masked items
# --------------------------------------------------------------------------


def normalise_raw(sc, ports, raw, check=True):
    """Replays the normalisation of a recorded raw run (fixtures)."""
    ctx = Context(ports)
    checker = RaftIndexChecker()
    out = format_header(sc)
    for no, (step, r) in enumerate(zip(sc.steps, raw), 1):
        out_b = base64.b64decode(r["stdout"])
        err_b = base64.b64decode(r["stderr"])
        if step.kind == "etcdctl" and step.write_format() == "protobuf":
            so = render_protobuf(out_b)
        else:
            so = render_bytes(out_b)
        se = render_bytes(err_b)
        capture_leases(step, so, ctx)
        checker.observe(no, step, r["exit"], so)
        out += format_step(step, r["exit"], normalise_output(so, ctx, step, "stdout"),
                           normalise_output(se, ctx, step, "stderr"))
    return "\n".join(out), checker.problems


def _b64map(raw, fn, stream=("stdout", "stderr")):
    new = []
    for r in raw:
        r = dict(r)
        for s in stream:
            r[s] = base64.b64encode(fn(base64.b64decode(r[s]).decode("utf-8", "surrogateescape")).encode(
                "utf-8", "surrogateescape")).decode()
        new.append(r)
    return new


def main_selftest(args):
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print("%s %s%s" % ("ok  " if ok else "FAIL", name, (": " + detail) if detail and not ok else ""))

    # 0. Scenario directives: @single-member and @plaintext-at-rest (parsed, and demanded by the
    #    steps that need them).
    with tempfile.TemporaryDirectory() as td:
        def parse_text(text):
            path = os.path.join(td, "999_directive.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                return parse_scenario(path), ""
            except ScenarioError as e:
                return None, str(e)
        sc0, err = parse_text("# d\n@single-member it stops the member\n"
                              "@plaintext-at-rest db-dump reads the db\n$ db-dump\n")
        check("directives: @single-member and @plaintext-at-rest parsed with their reasons",
              sc0 is not None and sc0.single_member == "it stops the member"
              and sc0.plaintext_at_rest == "db-dump reads the db", err)
        sc0, err = parse_text("# d\n$ etcdctl put a 1\n")
        check("directives: a scenario without them is neither", sc0 is not None and sc0.single_member is None
              and sc0.plaintext_at_rest is None, err)
        for kind in PLAINTEXT_AT_REST_STEPS:
            step = "$ etcd-reads x.db" if kind == "etcd-reads" else "$ " + kind
            sc0, err = parse_text("# d\n@single-member s\n%s\n" % step)
            check("directives: %s without @plaintext-at-rest is refused" % kind,
                  sc0 is None and "@plaintext-at-rest" in err, err)
        sc0, err = parse_text("# d\n@single-member s\n$ restore-server x.db\n$ restart-server\n")
        check("directives: restore-server/restart-server need no @plaintext-at-rest", sc0 is not None, err)
    marked = [sc.name for sc in list_scenarios() if sc.plaintext_at_rest is not None]
    check("directives: the committed scenarios marked @plaintext-at-rest (%s)" % ", ".join(marked), bool(marked))

    # 1. Pure unit checks of the masks.
    ctx = Context([41234, 41235])
    ctx.note_lease(0x694da218918bc51c)
    st = Step("etcdctl", "etcdctl endpoint health", ["endpoint", "health"], None, 0)
    a = normalise_output("127.0.0.1:41234 is healthy: successfully committed proposal: took = 1.957739ms\n",
                         ctx, st, "stderr")
    b = normalise_output("127.0.0.1:41234 is healthy: successfully committed proposal: took = 957.739µs\n",
                         ctx, st, "stderr")
    check("duration masked (took = ...)", a == b, a + " vs " + b)
    c = normalise_output("127.0.0.1:41234 is unhealthy: failed to commit proposal: took = 1ms\n", ctx, st, "stderr")
    check("health word not masked", a != c)
    d = normalise_output("127.0.0.1:41236 is healthy: successfully committed proposal: took = 1ms\n",
                         ctx, st, "stderr")
    check("foreign port not masked", a != d)
    sl = Step("etcdctl", "etcdctl lease grant 100", ["lease", "grant", "100"], None, 0)
    e1 = normalise_output("lease 694da218918bc51c granted with TTL(100s)\n", ctx, sl, "stdout")
    check("lease id masked", e1 == "lease <LEASE1> granted with TTL(100s)\n", e1)
    e2 = normalise_output("lease 694da218918bc51c granted with TTL(101s)\n", ctx, sl, "stdout")
    check("TTL not masked", e1 != e2)
    w1 = normalise_output('{"level":"warn","ts":"2026-11-26T15:57:15.897Z","caller":"clientv3/retry_interceptor.go:62",'
                          '"msg":"retrying of unary invoker failed","target":"endpoint://client-7d30/127.0.0.1:41234",'
                          '"attempt":0,"error":"rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision '
                          'has been compacted"}\nError: etcdserver: mvcc: required revision has been compacted\n',
                          ctx, st, "stderr")
    w2 = normalise_output('{"level":"warn","ts":"2027-01-01T00:00:00.000Z","caller":"clientv3/retry_interceptor.go:62",'
                          '"msg":"retrying of unary invoker failed","target":"endpoint://client-ffff/127.0.0.1:41234",'
                          '"attempt":0,"error":"rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision '
                          'has been compacted"}\nError: etcdserver: mvcc: required revision has been compacted\n',
                          ctx, st, "stderr")
    check("client warning line: ts/target masked", w1 == w2, w1 + " vs " + w2)
    w3 = w2.replace("OutOfRange", "Unknown")
    check("client warning line: gRPC code kept", w1 != w3)
    g1 = normalise_output("WARNING: 2026/11/26 15:57:15 grpc: addrConn.createTransport failed\n", ctx, st, "stderr")
    check("grpc-go WARNING line masked", g1 == "<client-warning>\n", g1)
    # --cluster: the other members' client ports; the fixed peer ports stay visible.
    cctx = Context([41234])
    cctx.member_ports = [(41300, "<CPORT2>"), (41301, "<CPORT3>")]
    sm = Step("etcdctl", "etcdctl member list", ["member", "list"], None, 0)
    m1 = normalise_output("1, started, m2, http://127.0.0.1:23801, http://127.0.0.1:41300, false\n"
                          "2, started, m3, http://127.0.0.1:23802, http://127.0.0.1:41301, false\n", cctx, sm, "stdout")
    check("cluster: other members' client ports masked, peer ports kept",
          m1 == "1, started, m2, http://127.0.0.1:23801, http://127.0.0.1:<CPORT2>, false\n"
                "2, started, m3, http://127.0.0.1:23802, http://127.0.0.1:<CPORT3>, false\n", m1)
    m2 = normalise_output("http://127.0.0.1:41302\n", cctx, sm, "stdout")
    check("cluster: a foreign port is not masked", "41302" in m2, m2)
    # --cluster: only the steps' member's row of `endpoint status --cluster` is asserted on.
    rows = [("127.0.0.1:41300", 7, 6), ("127.0.0.1:41234", 9, 9), ("127.0.0.1:41301", 5, 5)]
    for fmt, text in [
        ("json", json.dumps([{"Endpoint": "http://" + e, "Status": {"raftIndex": i, "raftAppliedIndex": a}}
                             for e, i, a in rows])),
        ("simple", "".join("http://%s, 1, 3.4.23, 20 kB, false, false, 2, %d, %d, \n" % r for r in rows)),
        ("table", "+--+\n| ENDPOINT | RAFT INDEX | RAFT APPLIED INDEX |\n+--+\n"
                  + "".join("| http://%s | %d | %d |\n" % r for r in rows) + "+--+\n"),
        ("fields", "".join('"RaftIndex" : %d\n"RaftAppliedIndex" : %d\n"Endpoint" : "http://%s"\n\n'
                           % (i, a, e) for e, i, a in rows)),
    ]:
        se = Step("etcdctl", "etcdctl endpoint status --cluster -w " + fmt,
                  ["endpoint", "status", "--cluster", "-w", fmt], None, 0)
        got = raft_indices(se, text, 41234)
        check("cluster: endpoint status -w %s: only the steps' member's row is asserted" % fmt,
              got == [(9, 9)], repr(got))
        check("one member: endpoint status -w %s: every row is asserted" % fmt,
              len(raft_indices(se, text)) == 3)

    # 2. Recorded raw outputs of real etcd (selftest_fixtures.json).
    try:
        with open(FIXTURES, "r", encoding="utf-8") as f:
            fixtures = json.load(f)
    except (OSError, ValueError) as e:
        check("load %s" % os.path.basename(FIXTURES), False, str(e))
        fixtures = {}
    perturbations = [
        # (description, regex on raw text, replacement function) -- must be DETECTED
        ("revision", r'"revision":([0-9]+)', lambda m: '"revision":%d' % (int(m.group(1)) + 1)),
        ("mod_revision", r'"mod_revision":([0-9]+)', lambda m: '"mod_revision":%d' % (int(m.group(1)) + 1)),
        ("raft_term", r'"raft_term":([0-9]+)', lambda m: '"raft_term":%d' % (int(m.group(1)) + 1)),
        ("cluster_id", r'"cluster_id":([0-9]+)', lambda m: '"cluster_id":%d' % (int(m.group(1)) + 1)),
        ("member_id", r'"member_id":([0-9]+)', lambda m: '"member_id":%d' % (int(m.group(1)) - 1)),
        ("member id hex", r"\b8e9e05c52164694d\b", lambda m: "8e9e05c52164694e"),
        ("error word", r"compacted", lambda m: "compacte"),
        ("error text", r"Error: ([a-z])", lambda m: "Error: X"),
        ("OK word", r"(?m)^OK$", lambda m: "Ok"),
        ("version", r"3\.4\.23", lambda m: "3.4.22"),
        ("count", r'"count":([0-9]+)', lambda m: '"count":%d' % (int(m.group(1)) + 1)),
        ("key", r"\bfoo\b", lambda m: "fop"),
        ("SUCCESS", r"SUCCESS", lambda m: "FAILURE"),
        ("simple revision in fields", r'"Revision" : ([0-9]+)', lambda m: '"Revision" : %d' % (int(m.group(1)) + 1)),
        ("raft term in table", r"\|\s+2 \|\s+([0-9]+) \|\s+([0-9]+) \|",
         lambda m: m.group(0).replace(" 2 |", " 3 |", 1)),
        ("health word", r"is healthy", lambda m: "is unhealthy"),
        ("health json", r'"health":true', lambda m: '"health":false'),
        ("lease TTL", r'"TTL":([0-9]+)', lambda m: '"TTL":%d' % (int(m.group(1)) + 1)),
        ("snapshot revision", r'"revision":([0-9]+),"totalKey"', lambda m: '"revision":%d,"totalKey"'
         % (int(m.group(1)) + 1)),
        ("snapshot total keys", r'"totalKey":([0-9]+)', lambda m: '"totalKey":%d' % (int(m.group(1)) + 1)),
        ("alarm", r"alarm:NOSPACE", lambda m: "alarm:CORRUPT"),
        ("gRPC code in warning", r"code = ([A-Za-z]+)", lambda m: "code = Unknown"),
    ]
    masked_perturbations = [
        # must NOT be detected
        ("took duration", r"took = " + GO_DURATION, lambda m: "took = 98.7654321s"),
        ("json took", r'"took":"' + GO_DURATION + '"', lambda m: '"took":"3.2µs"'),
        ("dbSize", r'"dbSize":([0-9]+)', lambda m: '"dbSize":%d' % (int(m.group(1)) * 3)),
        ("dbSizeInUse", r'"dbSizeInUse":([0-9]+)', lambda m: '"dbSizeInUse":%d' % (int(m.group(1)) + 5)),
        ("table db size", r"\b20 kB\b", lambda m: "1.2 MB"),
        ("warning ts", r'"ts":"[^"]*"', lambda m: '"ts":"1999-01-01T00:00:00.000Z"'),
        ("numeric log ts", r'"ts":[0-9.]+', lambda m: '"ts":1.5'),
        ("log took (seconds)", r'"took":[0-9.]+', lambda m: '"took":9.75'),
        ("log size", r'"size":"[^"]*"', lambda m: '"size":"99 MB"'),
        ("table took", r"(?<=\| )( *)[0-9.]+(?:ns|µs|ms|s)(?= \|)", lambda m: "123.456789ms"),
        ("fields took", r'"Took" : ' + GO_DURATION, lambda m: '"Took" : 2.5s'),
        ("fields db size", r'"DBSize" : [0-9]+', lambda m: '"DBSize" : 1'),
        ("fields raft index (both)", r'"RaftIndex" : ([0-9]+)\n"RaftTerm" : ([0-9]+)\n"RaftAppliedIndex" : ([0-9]+)',
         lambda m: '"RaftIndex" : %d\n"RaftTerm" : %s\n"RaftAppliedIndex" : %d'
         % (int(m.group(1)) + 50, m.group(2), int(m.group(3)) + 50)),
        ("simple status db size", r"(?m)^(127\.0\.0\.1:[0-9]+, [0-9a-f]+, [0-9.]+, )[^,]+,",
         lambda m: m.group(1) + "7.7 MB,"),
        ("snapshot simple hash", r"(?m)^[0-9a-f]{8}(?=, [0-9]+, [0-9]+, )", lambda m: "deadbeef"),
        ("snapshot table hash", r"(?m)^\| [0-9a-f]{8} \|", lambda m: "| 0badf00d |"),
        ("warning target", r'"target":"[^"]*"', lambda m: '"target":"endpoint://client-x/127.0.0.1:1"'),
        ("snapshot hash", r'"hash":([0-9]+)', lambda m: '"hash":%d' % (int(m.group(1)) ^ 0x5555)),
        ("raft index (both, consistently)", r'"raftIndex":([0-9]+),"raftTerm":([0-9]+),"raftAppliedIndex":([0-9]+)',
         lambda m: '"raftIndex":%d,"raftTerm":%s,"raftAppliedIndex":%d'
         % (int(m.group(1)) + 1000, m.group(2), int(m.group(3)) + 1000)),
    ]
    for name in sorted(fixtures):
        path = os.path.join(SCENARIO_DIR, name + ".txt")
        if not os.path.isfile(path):
            check("fixture %s has a scenario" % name, False)
            continue
        sc = parse_scenario(path)
        fx = fixtures[name]
        base, probs = normalise_raw(sc, fx["ports"], fx["raw"])
        check("%s: raft-index assertions hold on etcd's raw output" % name, not probs, "; ".join(probs))
        exp = read_expected(name)
        if exp is not None:
            check("%s: replayed normalisation equals the recording" % name, exp == base,
                  diff_text(exp, base, name)[:2000])
        # Ports: move both ports, everything must still normalise the same.
        newports = [fx["ports"][0] + 7, fx["ports"][1] + 7]

        def move_ports(t, old=fx["ports"], new=newports):
            for o, n in zip(old, new):
                t = re.sub(r"(?<=:)%d(?![0-9])" % o, str(n), t)
            return t
        moved, _ = normalise_raw(sc, newports, _b64map(fx["raw"], move_ports))
        check("%s: other free ports are masked" % name, moved == base, diff_text(base, moved, name)[:1500])
        # Lease IDs: remap consistently.
        ctx = Context(fx["ports"])
        for step, r in zip(sc.steps, fx["raw"]):
            capture_leases(step, render_bytes(base64.b64decode(r["stdout"])), ctx)
        if ctx.leases:
            def remap(t, leases=list(ctx.leases)):
                for lid in leases:
                    nid = lid ^ 0x0000123400005678
                    t = re.sub(r"(?<![0-9a-z])%016x(?![0-9a-z])" % lid, "%016x" % nid, t)
                    t = re.sub(r"(?<![0-9a-z])%x(?![0-9a-z])" % lid, "%x" % nid, t)
                    t = re.sub(r"(?<![0-9])%d(?![0-9])" % lid, "%d" % nid, t)
                return t
            remapped, _ = normalise_raw(sc, fx["ports"], _b64map(fx["raw"], remap))
            check("%s: other lease IDs are masked" % name, remapped == base, diff_text(base, remapped, name)[:1500])
        for desc, rx, fn in masked_perturbations:
            raw2 = _b64map(fx["raw"], lambda t: re.sub(rx, fn, t))
            if raw2 == fx["raw"]:
                continue
            alt, _ = normalise_raw(sc, fx["ports"], raw2)
            check("%s: masked item '%s' changed -> no difference" % (name, desc), alt == base,
                  diff_text(base, alt, name)[:1500])
        for desc, rx, fn in perturbations:
            # perturb only the first occurrence
            raw2 = _b64map(fx["raw"], lambda t: re.sub(rx, fn, t, count=1))
            if raw2 == fx["raw"]:
                continue
            # change only one step: find the first differing step and keep others
            for i, (r1, r2) in enumerate(zip(fx["raw"], raw2)):
                if r1 != r2:
                    one = list(fx["raw"])
                    one[i] = r2
                    break
            alt, _ = normalise_raw(sc, fx["ports"], one)
            d = diff_text(base, alt, name)
            check("%s: perturbed %s -> reported as a difference" % (name, desc), alt != base and bool(d))
        # Exit code of the last step.
        raw2 = [dict(r) for r in fx["raw"]]
        raw2[-1]["exit"] = 1 if raw2[-1]["exit"] == 0 else 0
        alt, _ = normalise_raw(sc, fx["ports"], raw2)
        check("%s: perturbed exit code -> reported as a difference" % name, alt != base)
        # Raft index assertions: unequal index/applied, and a non-rising index.
        for desc, rx, fn in [
            ("raft_applied_index != raft_index", r'"raftAppliedIndex":([0-9]+)',
             lambda m: '"raftAppliedIndex":%d' % (int(m.group(1)) + 1)),
            ("raft index not rising", r'"raftIndex":([0-9]+),"raftTerm":([0-9]+),"raftAppliedIndex":([0-9]+)',
             lambda m: '"raftIndex":1,"raftTerm":%s,"raftAppliedIndex":1' % m.group(2)),
        ]:
            found = [i for i, r in enumerate(fx["raw"])
                     if re.search(rx, base64.b64decode(r["stdout"]).decode("utf-8", "replace"))]
            if len(found) < 2:
                continue
            one = list(fx["raw"])
            last = found[-1]
            one[last] = _b64map([fx["raw"][last]], lambda t: re.sub(rx, fn, t))[0]
            _, probs = normalise_raw(sc, fx["ports"], one)
            check("%s: %s -> assertion fails" % (name, desc), bool(probs))
    # 3. Every recording: one perturbed token (a revision, an exit code, an
    #    error word, a member ID) must make the comparer report a difference.
    token_perturbations = [
        ("revision", r'"revision":([0-9]+)', lambda m: '"revision":%d' % (int(m.group(1)) + 1)),
        ("exit code", r"(?m)^exit: ([0-9]+)$", lambda m: "exit: %d" % (int(m.group(1)) ^ 1)),
        ("error word", r"(?m)^\| Error: (\S+)", lambda m: "| Error: " + m.group(1).upper() + "x"),
        ("member id", r"10276657743932975437", lambda m: "10276657743932975438"),
        ("raft term", r'"raft_term":([0-9]+)', lambda m: '"raft_term":%d' % (int(m.group(1)) + 1)),
    ]
    counts = {}
    for name in sorted(f[:-4] for f in os.listdir(EXPECTED_DIR) if f.endswith(".out")):
        exp = read_expected(name)
        for desc, rx, fn in token_perturbations:
            alt = re.sub(rx, fn, exp, count=1)
            if alt == exp:
                continue
            d = compare(exp, alt, name)
            ok = bool(d) and compare(exp, exp, name) == ""
            counts[desc] = counts.get(desc, 0) + 1
            if not ok:
                check("%s: perturbed %s -> difference" % (name, desc), False)
    for desc, _, _ in token_perturbations:
        check("every recording with a %s: perturbing it is reported (%d recordings)"
              % (desc, counts.get(desc, 0)), counts.get(desc, 0) > 0)
    # The same for the --cluster recordings that exist (member default's ID differs there).
    for cdir in sorted(d for d in os.listdir(HERE) if re.fullmatch(r"expected-cluster[0-9]+", d)):
        counts = {}
        perts = [(d, r, f) for d, r, f in token_perturbations if d != "member id"] + [
            ("member id", r'"member_id":([0-9]+)', lambda m: '"member_id":%d' % (int(m.group(1)) ^ 1))]
        for f in sorted(os.listdir(os.path.join(HERE, cdir))):
            if not f.endswith(".out"):
                continue
            exp = read_expected(f[:-4], os.path.join(HERE, cdir))
            for desc, rx, fn in perts:
                alt = re.sub(rx, fn, exp, count=1)
                if alt == exp:
                    continue
                counts[desc] = counts.get(desc, 0) + 1
                if not (compare(exp, alt, f[:-4], cdir) and compare(exp, exp, f[:-4], cdir) == ""):
                    check("%s/%s: perturbed %s -> difference" % (cdir, f, desc), False)
        for desc, _, _ in perts:
            check("%s: every recording with a %s: perturbing it is reported (%d recordings)"
                  % (cdir, desc, counts.get(desc, 0)), counts.get(desc, 0) > 0)
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print("selftest: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description="swetcd interop harness (see interop/README.md)")
    ap.add_argument("--server-bin", help="server binary (swetcd, or /usr/bin/etcd)")
    ap.add_argument("--record", action="store_true", help="(re)record interop/expected/ from this server")
    ap.add_argument("--selftest", action="store_true", help="check the comparer itself; needs no server")
    ap.add_argument("--only", action="append", metavar="SUBSTR",
                    help="run only scenarios whose file name contains SUBSTR (repeatable)")
    ap.add_argument("--include-pending", action="store_true",
                    help="also run the scenarios listed in interop/pending.txt")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and server logs under interop/.work/")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every scenario; show server logs on failure")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="scenarios run in parallel (default 1)")
    ap.add_argument("--start-timeout", type=float, default=START_TIMEOUT,
                    help="seconds a fresh server has to start serving (default %g)" % START_TIMEOUT)
    ap.add_argument("--scenario-timeout", type=float, default=120.0,
                    help="seconds a scenario's steps may take in all (default 120)")
    ap.add_argument("--etcdctl", default=DEFAULT_ETCDCTL, help="etcdctl binary (default /usr/bin/etcdctl)")
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd",
                    help="real etcd, for the etcd-reads step (default: etcd on PATH)")
    ap.add_argument("--cluster", type=int, default=1, metavar="N",
                    help="run every scenario (but @single-member ones) against N members; recordings in "
                         "interop/expected-clusterN/ (default 1: one member, interop/expected/)")
    ap.add_argument("--cluster-peer-base", type=int, default=CLUSTER_PEER_BASE, metavar="PORT",
                    help="--cluster: the members' fixed peer ports are PORT, PORT+1, ... (default %d; "
                         "the recordings were made with it, another changes the member IDs)" % CLUSTER_PEER_BASE)
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for every start of the server under test (repeatable; "
                         "e.g. --server-arg=--snapshot-count=100)")
    ap.add_argument("--encryption", choices=ENCRYPTION_PROVIDERS, metavar="PROVIDER",
                    help="swetcd only: encrypt every value at rest with PROVIDER (%s; a fresh random key, "
                         "identity second); @plaintext-at-rest scenarios are skipped, the rest are compared "
                         "with the same recordings" % " | ".join(ENCRYPTION_PROVIDERS))
    args = ap.parse_args()
    if args.cluster < 1:
        ap.error("--cluster N needs N >= 1")
    if args.selftest:
        return main_selftest(args)
    if not args.server_bin:
        ap.error("--server-bin is required (or --selftest)")
    if args.encryption:
        if args.record:
            ap.error("--encryption cannot be used with --record: recordings come from real etcd, "
                     "which has no encryption at rest")
        if os.path.isfile(args.server_bin) and not is_swetcd(args.server_bin):
            ap.error("--encryption needs swetcd: %s is not swetcd (its --version names no swetcd; "
                     "real etcd has no --encryption-provider-config)" % args.server_bin)
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
