"""An OpenSSH server on 127.0.0.1:<free port> as a builder host, and ssh clients set up for it, for the e2e tests.

`start(docker_host)` runs this machine's sshd (Debian's openssh-server) as the current user with everything in a
temp directory: its own host key, authorized_keys holding one generated client key, its config (public keys only,
no PAM, no forwarding; StrictModes off because the files lie under /tmp, which is world-writable). `SetEnv
DOCKER_HOST=<engine>` gives every session the engine `docker system dial-stdio` reaches: a builder's own engine.

The client side is an `ssh` first on PATH that runs the real ssh with `-F <temp config>` (the key, a temp
known_hosts, no agent, no global known_hosts): ssh reads ~/.ssh from the password database, not $HOME, so this is
how the tests point the preflight, the docker CLI and the Docker SDK (all of which run `ssh` from PATH) at a test
key without touching the user's ~/.ssh. `client(...)` makes one such PATH directory, trusting the host or not.
"""
from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import stop_process

SSHD = "/usr/sbin/sshd"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "acr-publish-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SshServer:
    root: Path
    process: subprocess.Popen
    port: int
    user: str

    @property
    def host(self) -> str:
        """What acr-publish:builders takes: ssh://user@127.0.0.1:port."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, directory: Path, *, trust_host: bool = True, key: Path | None = None) -> Path:
        """A directory to put first on PATH: its `ssh` uses `key` (default: the authorized one) and a known_hosts
        holding this server's host key (`trust_host`) or nothing."""
        directory.mkdir(parents=True, exist_ok=True)
        known = directory / "known_hosts"
        host_key = (self.root / "host_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_key)}\n" if trust_host else "")
        config = directory / "ssh_config"
        config.write_text(
            "Host *\n"
            f"  IdentityFile {key or self.root / 'client_key'}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
            f"  UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
            "  UpdateHostKeys no\n  LogLevel ERROR\n")
        wrapper = directory / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {config} "$@"\n')
        wrapper.chmod(0o755)
        return directory

    def stop(self) -> None:
        stop_process(self.process, STOP_TIMEOUT_S)
        shutil.rmtree(self.root, ignore_errors=True)


def start(docker_host: str) -> SshServer:
    """sshd on 127.0.0.1:<free port>, logging in the current user with a generated key; sessions reach
    `docker_host`. Raises RuntimeError (with sshd's log) when it does not listen within START_TIMEOUT_S."""
    root = Path(tempfile.mkdtemp(prefix="acr-ssh-", dir="/tmp"))
    keygen(root / "host_key")
    (root / "authorized_keys").write_text((keygen(root / "client_key").with_suffix(".pub")).read_text())
    user, port = getpass.getuser(), _free_port()
    (root / "sshd_config").write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"AllowUsers {user}", "AuthenticationMethods publickey",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "PermitRootLogin prohibit-password", "AllowTcpForwarding no", "X11Forwarding no", "PermitTTY no",
        "PrintMotd no", "LoginGraceTime 20", f"SetEnv DOCKER_HOST={docker_host}", ""]))
    # sshd's privilege separation directory; Debian's service creates it at start, which never ran here.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen([SSHD, "-D", "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    server = SshServer(root, process, port, user)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                if probe.recv(64).startswith(b"SSH-"):
                    return server
        except OSError:
            time.sleep(0.2)
    log = server.log[-3000:]
    server.stop()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:g}s:\n{log}")
