"""Helpers shared by the end-to-end scripts: free ports, stock etcdctl, and starting a
server binary (swetcd or real etcd) on 127.0.0.1 with etcd's single-member defaults,
waiting until it answers `endpoint health`."""
import os, random, shutil, socket, subprocess, time

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

_given_ports = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A port free on 127.0.0.1 now, not handed out before by this process, and outside the
    kernel's ephemeral range: outgoing connections (every etcdctl call, peer streams) take
    their source ports from that range, so a port of a server that is down for a while (killed,
    to be restarted on the same ports) could otherwise be taken meanwhile."""
    lo, hi = _ephemeral_range()
    ranges = [r for r in ((10000, lo - 1), (hi + 1, 65535)) if r[1] - r[0] >= 1000]
    for _ in range(200):
        if not ranges:
            break
        a, b = random.choice(ranges)
        port = random.randint(a, b)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctl(port, *args, timeout=10):
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run([ETCDCTL, "--endpoints=127.0.0.1:%d" % port, "--command-timeout=3s", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def start(server_bin, data_dir, port, log, extra=()):
    peer = free_port()
    args = [server_bin, "--name", "default", "--data-dir", data_dir,
            "--listen-client-urls", "http://127.0.0.1:%d" % port,
            "--advertise-client-urls", "http://127.0.0.1:%d" % port,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-advertise-peer-urls", "http://localhost:2380",
            "--initial-cluster", "default=http://localhost:2380", *extra]
    p = subprocess.Popen(args, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("%s exited with %s" % (server_bin, p.returncode))
        try:
            if ctl(port, "endpoint", "health", timeout=5).returncode == 0:
                return p
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise RuntimeError("%s did not become healthy" % server_bin)


def stop(p, timeout=20):
    """SIGTERM, then SIGKILL after `timeout` seconds; by PID."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
