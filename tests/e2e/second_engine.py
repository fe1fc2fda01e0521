"""A second Docker engine on this machine, as a stack's `acr-publish:builders` entry: its own dockerd on its own unix
socket, data root, exec root and pid file, with no network bridge and no iptables rules, inside a network namespace
that holds only loopback, so nothing it does (a build for another platform included) can reach beyond this machine.

Registries the engine must push to are reached through a relay: inside the namespace a listener on 127.0.0.1:<port>
forwards each connection to a unix socket, where a thread of the test process connects it to 127.0.0.1:<port> of
the host's loopback. That is the only way out of the namespace, and it ends on this machine's loopback.

With `tls` (tests/e2e/engine_tls.py) dockerd also listens on 127.0.0.1:2376 of its namespace with --tlsverify,
reached at `tcp_host` (a free port of the host's loopback) through a relay the other way, bytes only, so TLS runs
end to end; `plain_tcp_host()` serves the engine's API without TLS, as `dockerd -H tcp://` without --tlsverify.

`python -m tests.e2e.second_engine --inside ...` is the part that runs inside the namespace (started through
`unshare --net`): it brings up loopback, starts the relays and runs dockerd until it is terminated.
"""
from __future__ import annotations

import argparse
import os
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

from tests.e2e.engine_tls import EngineTLS
from tests.e2e.processes import stop_process

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TLS_PORT = 2376
"""The engine's TLS port inside its namespace (which holds nothing else); the host sees another, free one."""


def pump(source: socket.socket, target: socket.socket, before_send=None) -> None:
    """Copy `source` to `target` until either ends (`before_send(chunk)` runs before each chunk is sent), then shut
    both down."""
    try:
        while chunk := source.recv(65536):
            if before_send is not None:
                before_send(chunk)
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
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def _unix_connector(path: str):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock
    return connect


def _tcp_connector(port: int):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=30)


def _tcp_listener(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    return listener


def _unix_listener(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    return listener


def inside(root: Path, relays: list[tuple[int, str]], tls: list[str] | None = None) -> int:
    """In the new network namespace: loopback up, relay listeners, then dockerd in the foreground; with `tls`
    ([ca, cert, key] files) dockerd also listens on 127.0.0.1:TLS_PORT with --tlsverify, reached from the host
    through the unix socket `tls.sock`."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    for port, path in relays:
        threading.Thread(target=_relay, args=(_tcp_listener(port), _unix_connector(path)), daemon=True).start()
    listen = ["--host", f"unix://{root / 'docker.sock'}"]
    if tls:
        ca, cert, key = tls
        listen += ["--host", f"tcp://127.0.0.1:{TLS_PORT}", "--tlsverify", "--tlscacert", ca, "--tlscert", cert,
                   "--tlskey", key]
        threading.Thread(target=_relay, args=(_unix_listener(str(root / "tls.sock")), _tcp_connector(TLS_PORT)),
                         daemon=True).start()
    (root / "daemon.json").write_text("{}")  # never the host's /etc/docker/daemon.json (mirrors, proxies)
    daemon = subprocess.Popen([
        "dockerd", *listen, "--data-root", str(root / "data"),
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
    tls: EngineTLS | None = None
    tcp_port: int | None = None
    """The host-side port of the engine's TLS listener (with `tls`)."""

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_host(self) -> str:
        """tcp://127.0.0.1:<port>: the engine over TLS (client certificates: `tls.client`)."""
        assert self.tcp_port is not None, "start(..., tls=...) opens the TLS listener"
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def plain_tcp_host(self) -> str:
        """A new tcp://127.0.0.1:<port> serving the engine's API without TLS, closed by stop()."""
        listener = _tcp_listener(0)
        self.listeners.append(listener)
        threading.Thread(target=_relay, args=(listener, _unix_connector(str(self.socket_path))), daemon=True).start()
        return f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/bin/docker", "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout)

    def tls_docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """The docker CLI at `tcp_host` with the client certificates, as DOCKER_TLS_VERIFY/DOCKER_CERT_PATH say."""
        env = {**os.environ, "DOCKER_HOST": self.tcp_host, "DOCKER_TLS_VERIFY": "1",
               "DOCKER_CERT_PATH": str(self.tls.client)}
        return subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, timeout=timeout, env=env)

    def network_links(self) -> list[str]:
        """The network interfaces the engine's namespace holds (names)."""
        proc = subprocess.run(["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "ip", "-o", "link"],
                              capture_output=True, text=True, timeout=30, check=True)
        return [line.split(":")[1].strip().split("@")[0] for line in proc.stdout.splitlines()]

    def stop(self) -> None:
        for listener in self.listeners:
            listener.close()
        stop_process(self.process, STOP_TIMEOUT_S)
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def start(registry_ports: list[int], project_root: Path, tls: EngineTLS | None = None) -> SecondEngine:
    """Start the engine in its own network namespace, relaying `registry_ports` of loopback to the host's; with
    `tls` it also answers at `tcp_host` with --tlsverify."""
    # A short path: a unix socket path is at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="acr-arm-", dir="/tmp"))
    listeners, arguments = [], []
    for port in registry_ports:
        path = str(root / f"relay-{port}.sock")
        listener = _unix_listener(path)
        threading.Thread(target=_relay, args=(listener, _tcp_connector(port)), daemon=True).start()
        listeners.append(listener)
        arguments += ["--relay", f"{port}:{path}"]
    tcp_port = None
    if tls is not None:
        listener = _tcp_listener(0)
        threading.Thread(target=_relay, args=(listener, _unix_connector(str(root / "tls.sock"))), daemon=True).start()
        listeners.append(listener)
        tcp_port = listener.getsockname()[1]
        arguments += ["--tls", str(tls.ca), "--tls", str(tls.server_cert), "--tls", str(tls.server_key)]
    process = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, "-m", "tests.e2e.second_engine", "--inside", "--root", str(root),
         *arguments], cwd=project_root, stdin=subprocess.DEVNULL, start_new_session=True)
    engine = SecondEngine(root, process, listeners, tls, tcp_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if engine.socket_path.exists() and engine.docker("version", "--format", "{{.Server.Arch}}",
                                                         timeout=10).returncode == 0 \
                and (tls is None or engine.tls_docker("version", timeout=10).returncode == 0):
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
    parser.add_argument("--tls", action="append", default=[], help="ca, cert, key of the TLS listener, in order")
    options = parser.parse_args(argv)
    relays = [(int(port), path) for port, path in (r.split(":", 1) for r in options.relay)]
    return inside(options.root, relays, options.tls or None)


if __name__ == "__main__":
    sys.exit(main())
