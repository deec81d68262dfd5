"""Helpers shared by the end-to-end scripts: free ports, stock etcdctl, and starting a
server binary (swetcd or real etcd) on 127.0.0.1 with etcd's single-member defaults,
waiting until it answers `endpoint health`."""
import os, shutil, socket, subprocess, time

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_port():
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
