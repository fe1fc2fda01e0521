"""A second Docker engine on this machine, as a stack's `acr-publish:builders` entry: its own dockerd on its own unix
socket, data root, exec root and pid file, with no network bridge and no iptables rules, inside a network namespace
that holds only loopback, so nothing it does (a build for another platform included) can reach beyond this machine.

Registries the engine must push to are reached through a relay: inside the namespace a listener on 127.0.0.1:<port>
forwards each connection to a unix socket, where a thread of the test process connects it to 127.0.0.1:<port> of
the host's loopback. That is the only way out of the namespace, and it ends on this machine's loopback.

`python -m tests.e2e.second_engine --inside ...` is the part that runs inside the namespace (started through
`unshare --net`): it brings up loopback, starts the relay listeners and runs dockerd until it is terminated.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(listener: socket.socket, connect) -> None:
    """Accept on `listener` forever; each connection is joined to a fresh `connect()` socket in both directions."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _unix_connector(path: str):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock
    return connect


def _tcp_connector(port: int):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=30)


def inside(root: Path, relays: list[tuple[int, str]]) -> int:
    """In the new network namespace: loopback up, relay listeners, then dockerd in the foreground."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    for port, path in relays:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        threading.Thread(target=_relay, args=(listener, _unix_connector(path)), daemon=True).start()
    (root / "daemon.json").write_text("{}")  # never the host's /etc/docker/daemon.json (mirrors, proxies)
    daemon = subprocess.Popen([
        "dockerd", "--host", f"unix://{root / 'docker.sock'}", "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"), "--pidfile", str(root / "docker.pid"),
        "--config-file", str(root / "daemon.json"), "--bridge=none", "--iptables=false", "--ip6tables=false",
    ], stdout=open(root / "dockerd.log", "ab"), stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM, lambda *_: daemon.terminate())
    return daemon.wait()


@dataclass
class SecondEngine:
    """The running second engine; `host` is what acr-publish:builders takes."""

    root: Path
    process: subprocess.Popen
    listeners: list[socket.socket] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/bin/docker", "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout)

    def network_links(self) -> list[str]:
        """The network interfaces the engine's namespace holds (names)."""
        proc = subprocess.run(["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "ip", "-o", "link"],
                              capture_output=True, text=True, timeout=30, check=True)
        return [line.split(":")[1].strip().split("@")[0] for line in proc.stdout.splitlines()]

    def stop(self) -> None:
        for listener in self.listeners:
            listener.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def start(registry_ports: list[int], project_root: Path) -> SecondEngine:
    """Start the engine in its own network namespace, relaying `registry_ports` of loopback to the host's."""
    # A short path: a unix socket path is at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="acr-arm-", dir="/tmp"))
    listeners, relays = [], []
    for port in registry_ports:
        path = str(root / f"relay-{port}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        threading.Thread(target=_relay, args=(listener, _tcp_connector(port)), daemon=True).start()
        listeners.append(listener)
        relays += ["--relay", f"{port}:{path}"]
    process = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, "-m", "tests.e2e.second_engine", "--inside", "--root", str(root),
         *relays], cwd=project_root, stdin=subprocess.DEVNULL, start_new_session=True)
    engine = SecondEngine(root, process, listeners)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if engine.socket_path.exists() and engine.docker("version", "--format", "{{.Server.Arch}}",
                                                         timeout=10).returncode == 0:
            return engine
        time.sleep(0.5)
    log = (root / "dockerd.log").read_text(errors="replace")[-3000:] if (root / "dockerd.log").exists() else ""
    engine.stop()
    raise RuntimeError(f"the second Docker engine did not start within {START_TIMEOUT_S:g}s:\n{log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inside", action="store_true", required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--relay", action="append", default=[])
    options = parser.parse_args(argv)
    relays = [(int(port), path) for port, path in (r.split(":", 1) for r in options.relay)]
    return inside(options.root, relays)


if __name__ == "__main__":
    sys.exit(main())
