"""The Pulumi engine's side of a Python dynamic provider, for the e2e tests (no Pulumi CLI can be installed here).

`DynamicProviderProcess` starts the provider the way the engine does: the engine runs the language host's
`pulumi-resource-pulumi-python` script, which runs `<virtualenv>/bin/python -u -m pulumi.dynamic <engine address>`
in the program's directory with the CLI's environment; the process prints its gRPC port on stdout and serves
`pulumirpc.ResourceProvider` there. This class runs exactly that command (this project's venv, the project root
as working directory, no PYTHONPATH: the provider must import `components` from its working directory as the
real one does), drains its stdout and stderr into memory (as the engine reads a plugin's output: a pipe left
unread would block the provider once full) so a test can check that it printed no secret
(`assert_printed_no_secret`), then makes the engine's calls over gRPC: Configure (the provider answers acceptSecrets=false, so
the engine sends plain values, as here), Check, Diff, Create, Read, Delete.

`DynamicEngine` drives one stack's dynamic resources the way `pulumi up` does, as a `StackMocks` promotion hook:
a resource with no state is created; one with state is diffed against its previous outputs and replaced (a new
create; the old one's delete) when the provider says so, else keeps its outputs. State lives in this object, per
stack and resource name, with the `__provider` string as registered (the serialized provider, from the SDK's own
serializer in `pulumi.dynamic.Resource`). What it does not reproduce: the engine's persistence of state to a
backend and its secret encryption (tests/program/test_promotion.py checks what the program marks secret).
"""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

# What the engine sends a provider that answered acceptSecrets=false: secret markers removed, values kept; the same
# unwrapping the mocks harness applies to what it records.
from tests.harness import _unwrap as strip_secrets

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 600.0
OUTPUT_MAX = 16 << 20
"""Bytes kept of each of the provider's output streams; past it a test fails rather than checking part of it."""


def secret_forms(secret: str) -> list[bytes]:
    """How a secret can show in printed bytes: raw, URL-encoded, and base64 (standard and URL-safe) at each of the
    three alignments it can have inside a longer encoded string (only the characters its own bytes decide)."""
    raw = secret.encode()
    forms = {raw, urllib.parse.quote(secret, safe="").encode(), urllib.parse.quote_plus(secret).encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + raw)
            core = encoded[4 if offset else 0:4 * ((offset + len(raw)) // 3)]
            if len(core) >= 8:
                forms.add(core)
    return sorted(forms)


class _Drain(threading.Thread):
    """Reads one of the provider's pipes to its end, keeping up to OUTPUT_MAX bytes."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.data, self.overflow = stream, bytearray(), False

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            if len(self.data) + len(chunk) > OUTPUT_MAX:
                self.overflow = True
            else:
                self.data += chunk


def _struct(values: dict[str, Any]):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(values, {}))
    finally:
        loop.close()


def _plain(struct) -> dict[str, Any]:
    return rpc.deserialize_properties(struct) if struct is not None else {}


class DynamicProviderError(Exception):
    """The provider process failed a call; the text is the gRPC status text the engine shows under the resource."""


@dataclass
class DynamicProviderProcess:
    project_root: Path
    python: str = sys.executable
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    port: int = 0

    def start(self) -> "DynamicProviderProcess":
        env = dict(self.env if self.env is not None else os.environ)
        env.pop("PYTHONPATH", None)
        env["PULUMI_PROJECT"] = "acr-publish"
        self.process = subprocess.Popen(
            [self.python, "-u", "-m", "pulumi.dynamic", "127.0.0.1:1"], cwd=self.project_root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        line = self.process.stdout.readline().decode().strip()  # the provider prints its port first
        if not line.isdigit():
            self.stop()
            raise DynamicProviderError(f"the dynamic provider did not print its port: {line!r}")
        self.port = int(line)
        self.drains = [_Drain(self.process.stdout), _Drain(self.process.stderr)]
        for drain in self.drains:
            drain.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT_S)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        response = self.stub.Configure(provider_pb2.ConfigureRequest(args=_struct({})), timeout=CALL_TIMEOUT_S)
        self.accepts_secrets = response.acceptSecrets
        return self

    def stop(self) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def printed(self) -> bytes:
        """What the provider printed after its port (stdout, then stderr); call after stop()."""
        for drain in getattr(self, "drains", []):
            drain.join(timeout=10)
            assert not drain.is_alive(), "the provider's output did not end after it stopped"
            assert not drain.overflow, f"the provider printed more than {OUTPUT_MAX} bytes"
        return b"".join(bytes(d.data) for d in getattr(self, "drains", []))

    def assert_printed_no_secret(self, secrets: list[str]) -> None:
        """Fail if any secret shows in what the provider printed, raw, URL-encoded or base64-encoded."""
        printed = self.printed()
        for secret in secrets:
            found = [form for form in secret_forms(secret) if form in printed]
            # The message never repeats the secret, only which of its forms showed.
            assert not found, f"the provider printed a secret ({len(found)} form(s) of a {len(secret)}-char secret)"

    def __enter__(self) -> "DynamicProviderProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            raise DynamicProviderError(err.details() or str(err)) from None

    def check(self, urn: str, olds: dict, news: dict) -> dict:
        response = self._call("Check", provider_pb2.CheckRequest(urn=urn, olds=_struct(olds), news=_struct(news)))
        if response.failures:
            raise DynamicProviderError("; ".join(f"{f.property}: {f.reason}" for f in response.failures))
        return _plain(response.inputs)

    def diff(self, urn: str, id_: str, olds: dict, news: dict) -> tuple[bool, list[str]]:
        response = self._call("Diff", provider_pb2.DiffRequest(id=id_, urn=urn, olds=_struct(olds),
                                                               news=_struct(news)))
        return response.changes == provider_pb2.DiffResponse.DIFF_SOME, list(response.replaces)

    def create(self, urn: str, inputs: dict) -> tuple[str, dict]:
        response = self._call("Create", provider_pb2.CreateRequest(urn=urn, properties=_struct(inputs)))
        return response.id, _plain(response.properties)

    def read(self, urn: str, id_: str, outputs: dict, inputs: dict) -> tuple[str, dict]:
        response = self._call("Read", provider_pb2.ReadRequest(id=id_, urn=urn, properties=_struct(outputs),
                                                               inputs=_struct(inputs)))
        return response.id, _plain(response.properties)

    def delete(self, urn: str, id_: str, outputs: dict) -> None:
        self._call("Delete", provider_pb2.DeleteRequest(id=id_, urn=urn, properties=_struct(outputs)))


@dataclass
class Operation:
    stack: str
    name: str
    op: str
    """create | same | replace"""


@dataclass
class DynamicEngine:
    """`pulumi up`'s handling of dynamic resources, for StackMocks(promotion_hook=engine)."""

    provider: DynamicProviderProcess
    stack: str = "stack"
    state: dict[tuple[str, str], tuple[str, dict, dict]] = field(default_factory=dict)
    """(stack, name) -> (id, inputs, outputs) after the last successful operation."""
    operations: list[Operation] = field(default_factory=list)

    def urn(self, name: str) -> str:
        return f"urn:pulumi:{self.stack}::acr-publish::pulumi-python:dynamic/acr-publish:Promotion::{name}"

    def __call__(self, args) -> dict:
        key = (self.stack, args.name)
        urn = self.urn(args.name)
        assert not self.provider.accepts_secrets, "the SDK's dynamic provider answers acceptSecrets=false"
        news = strip_secrets(dict(args.inputs))
        old = self.state.get(key)
        inputs = self.provider.check(urn, old[1] if old else {}, news)
        if old is not None:
            changes, _replaces = self.provider.diff(urn, old[0], old[2], inputs)
            if not changes:
                self.operations.append(Operation(self.stack, args.name, "same"))
                return old[2]
        id_, outputs = self.provider.create(urn, inputs)
        if old is not None:
            self.provider.delete(urn, old[0], old[2])
        self.state[key] = (id_, inputs, outputs)
        self.operations.append(Operation(self.stack, args.name, "replace" if old else "create"))
        return outputs

    def refresh(self) -> None:
        """`pulumi refresh`: Read each resource; one whose id comes back empty leaves the state."""
        for key, (id_, inputs, outputs) in list(self.state.items()):
            new_id, new_outputs = self.provider.read(self.urn(key[1]), id_, outputs, inputs)
            if not new_id:
                del self.state[key]
            else:
                self.state[key] = (new_id, inputs, new_outputs)
