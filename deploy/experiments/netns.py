"""Hosts on Linux network namespaces, with iproute2 only (shared by tests/cluster/partition_test.py
and deploy/experiments/scaling.py).

A bridge lives in a namespace of its own; every host gets a namespace with one veth into it and an
address in SUBNET (10.77.0.0/24). Addresses exist only inside these namespaces: nothing is
configured in the root namespace, and nothing there may address 10.77.x (it would route to the
real default gateway). Namespace names are `<prefix>-<owner pid>-<host>`, so a later run can tell
the namespaces of a run killed with SIGKILL (owner gone) and remove them: remove_stale_namespaces.

Agent: the other side of a small JSON-lines protocol (one command per line on the agent's stdin,
one answer per line on its stdout), for clients that must run inside a namespace while the
caller stays in the root one.

Not thread-safe; needs root (netns_unavailable() says why not).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import threading

SUBNET = "10.77.0"


def run(*argv, check=True, timeout=30):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def netns_unavailable():
    """Why this machine cannot make namespaces, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"`ip netns` is unavailable: {p.stderr.strip()}"
    return None


def namespace_names():
    p = run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def delete_namespace(ns):
    """Kills what still runs in `ns` (only processes its owner put there: the name is ours) and
    removes it; its veth ends go with it."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "del", ns, check=False)


def remove_stale_namespaces(prefix):
    """Namespaces `<prefix>-<pid>-*` of earlier runs whose process is gone."""
    for ns in namespace_names():
        m = re.fullmatch(rf"{re.escape(prefix)}-(\d+)-.*", ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            delete_namespace(ns)


def remove_own_namespaces(prefix):
    """Every namespace `<prefix>-<this pid>-*` and what runs in it: the last resort of a signal
    handler, which may interrupt a Network while it is being made."""
    own = f"{prefix}-{os.getpid()}-"
    for ns in namespace_names():
        if ns.startswith(own):
            delete_namespace(ns)


class Network:
    """A bridge namespace and one namespace per host, each with a veth into the bridge.

    host(name) -> (namespace, address). partition(name) takes the host's bridge port down;
    heal(name) brings it back. close() is idempotent and also runs when __init__ fails halfway."""

    def __init__(self, hosts, prefix):
        """hosts: [(name, last octet)]; prefix: the first part of every namespace's name."""
        self.prefix = f"{prefix}-{os.getpid()}"
        self.bridge_ns = f"{self.prefix}-sw"
        self.made = []
        self.hosts = {}
        self.ports = {}
        self.closed = False
        try:
            self._add_namespace(self.bridge_ns)
            ip = ["ip", "-n", self.bridge_ns]
            run(*ip, "link", "add", "br0", "type", "bridge")
            run(*ip, "link", "set", "br0", "up")
            run(*ip, "link", "set", "lo", "up")
            for i, (name, octet) in enumerate(hosts):
                ns = f"{self.prefix}-{name}"
                self._add_namespace(ns)
                port = f"p{i}"
                # Both ends are made directly inside their namespaces: no name in the root one.
                run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                    "netns", self.bridge_ns)
                run(*ip, "link", "set", port, "master", "br0")
                run(*ip, "link", "set", port, "up")
                run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
                run("ip", "-n", ns, "link", "set", "eth0", "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
                self.hosts[name] = (ns, f"{SUBNET}.{octet}")
                self.ports[name] = port
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, ns):
        run("ip", "netns", "add", ns)
        self.made.append(ns)

    def address(self, name):
        return self.hosts[name][1]

    def exec_argv(self, name, *argv):
        return ["ip", "netns", "exec", self.hosts[name][0], *argv]

    def partition(self, name):
        run("ip", "-n", self.bridge_ns, "link", "set", self.ports[name], "down")

    def heal(self, name):
        run("ip", "-n", self.bridge_ns, "link", "set", self.ports[name], "up")

    def drop_outgoing(self, name, daddr):
        """One-way partition: `name` can no longer send to `daddr` (nftables, in its namespace)."""
        nft = ["ip", "netns", "exec", self.hosts[name][0], "nft"]
        run(*nft, "add", "table", "inet", "knnpart")
        run(*nft, "add", "chain", "inet", "knnpart", "out",
            "{ type filter hook output priority 0; }")
        run(*nft, "add", "rule", "inet", "knnpart", "out", "ip", "daddr", daddr, "drop")

    def allow_outgoing(self, name):
        run("ip", "netns", "exec", self.hosts[name][0], "nft", "delete", "table", "inet",
            "knnpart")

    def close(self):
        """Idempotent; kills the processes left in our namespaces and removes them."""
        if self.closed:
            return
        self.closed = True
        for ns in reversed(self.made):
            delete_namespace(ns)


class Agent:
    """The caller's side of an agent process: one command at a time, each answer within
    `timeout` seconds. The agent answers {"ok": true, ...} or {"ok": false, "error": ...}."""

    def __init__(self, argv, log, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, text=True,
                                     env=env or {**os.environ, "GRPC_VERBOSITY": "ERROR"})

    def __call__(self, cmd, timeout=60, **kw):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        answer = []
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            raise AssertionError(f"the agent gave no answer to {cmd} within {timeout} s")
        out = json.loads(answer[0])
        if not out["ok"]:
            raise AssertionError(f"agent {cmd}: {out['error']}")
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=3)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()
