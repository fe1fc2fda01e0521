"""Run the real `__main__.py` for a stack file under recording Pulumi mocks.

`run_stack("dev")` reads stacks/Pulumi.dev.yaml exactly as the engine would hand it to the program (structured
values as JSON strings, `secure:` values as secrets), runs the program in a fresh event loop with a fresh monitor,
and returns every registered resource with its inputs and resource options, plus the resolved stack exports and
whether each is secret. The monitor subclass records what `Mocks.new_resource` cannot see (parent, protect,
retainOnDelete, dependencies, which inputs arrived as secrets).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import runpy
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What the program imports or reads when the engine runs it from a project copy: add a new top-level module here.
PROGRAM_FILES = ("__main__.py", "Pulumi.yaml", "requirements.txt", "errors.py", "boundedjson.py", "components", "buildcontext", "imageaudit",
                 "registryclient",
                 "cli", "app")
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (PROJECT_ROOT / "stacks").glob("Pulumi.*.yaml"))
TEST_SECRET = "s3cr3t-test-password-9f2c"
"""Plaintext the harness substitutes for `secure:` config values; tests grep outputs and logs for it."""
TEST_TOKEN = "temp-token-7d41e0"
"""The mocked Enterprise authorization token."""
ENTERPRISE_HOST = "{name}-registry.{region}.cr.aliyuncs.com"

IMAGE = "docker:index/image:Image"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
PROMOTION = "pulumi-python:dynamic/acr-publish:Promotion"
IMAGE_INDEX = "pulumi-python:dynamic/acr-publish:ImageIndex"
DOCKER_PROVIDER = "pulumi:providers:docker"
ORGANIZATION = "organization"
"""The organization a DIY (file, OSS) backend reports; the harness hands it to the program."""
NO_PREFLIGHT = {"acr-publish:preflight": "false"}
"""Config overrides that turn the registry preflight off (`run_stack(stack, NO_PREFLIGHT)`)."""

ENTERPRISE_INVOKE = "alicloud:cs/getRegistryEnterpriseInstances:getRegistryEnterpriseInstances"


@dataclass
class Recorded:
    """One resource registration as the engine would see it."""

    type: str
    name: str
    urn: str
    inputs: dict
    parent: str | None
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str | None
    secret_inputs: set[str] = field(default_factory=set)
    additional_secret_outputs: list[str] = field(default_factory=list)


@dataclass
class StackRun:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    invokes: list[tuple[str, dict]]
    warnings: list[str]
    infos: list[str] = field(default_factory=list)
    reads: list[Recorded] = field(default_factory=list)
    """Resources read, not registered (StackReference)."""

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def by_name(self, name: str) -> Recorded:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, got {[r.urn for r in found]}"
        return found[0]

    def urn_of(self, name: str) -> str:
        return self.by_name(name).urn


def _secret_paths(value: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the values that arrive as secrets in a serialized property struct."""
    found: set[str] = set()
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            found.add(prefix)
            found |= _secret_paths(value.get("value"), prefix)
            return found
        for k, v in value.items():
            found |= _secret_paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= _secret_paths(v, f"{prefix}[{i}]")
    return found


class StackMocks(pulumi.runtime.Mocks):
    """Provider stand-ins returning the provider's camelCase outputs."""

    def __init__(self, instances: list[dict] | None = None, image_hook: Callable[[Any], dict] | None = None,
                 stacks: dict[str, dict] | None = None, promotion_hook: Callable[[Any], dict] | None = None,
                 index_hook: Callable[[Any], dict] | None = None):
        self.instances = instances
        self.image_hook = image_hook
        self.stacks = stacks or {}
        """Exports of the stacks a StackReference reads, as their last deployment left them: by qualified name
        (`organization/acr-publish/<stack>`) or by stack name alone. A stack in neither has never been deployed (no
        outputs). The names listed under an exports dict's `__secret_names__` key are reported as secret exports."""
        self.promotion_hook = promotion_hook
        self.index_hook = index_hook
        """Carries out the ImageIndex resources (tests/e2e: the real provider); None: the index's digest is the
        sha256 of its children's digests, as a registry would report a digest."""
        self.invokes: list[tuple[str, dict]] = []
        self.stack_references: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        resource_id = f"{args.name}-id"
        if args.typ == STACK_REFERENCE:
            name = args.inputs.get("name") or args.resource_id
            self.stack_references.append(name)
            outputs = self.stacks.get(name, self.stacks.get(name.split("/")[-1], {}))
            return name, {"name": name, "outputs": outputs,
                          "secretOutputNames": sorted(outputs.get("__secret_names__", []))}
        if args.typ == PROMOTION:
            if self.promotion_hook is not None:
                return f"{args.name}-id", self.promotion_hook(args)
            # What the provider's create returns for a copy: the source digest, pinned in the target repository.
            digest = args.inputs["sourceDigest"]
            state.update({"digest": digest, "copied": True,
                          "ref": f"{args.inputs['targetServer']}/{args.inputs['targetRepository']}@{digest}"})
            return f"{args.name}-id", state
        if args.typ == IMAGE_INDEX:
            if self.index_hook is not None:
                return f"{args.name}-id", self.index_hook(args)
            children = json.dumps(args.inputs["children"], sort_keys=True)
            digest = "sha256:" + hashlib.sha256(children.encode()).hexdigest()
            state.update({"digest": digest, "written": True,
                          "ref": f"{args.inputs['server']}/{args.inputs['repository']}@{digest}"})
            return f"{args.name}-id", state
        if args.typ == DOCKER_PROVIDER and hasattr(self.image_hook, "register_provider"):
            # The image hook builds on the engine each provider names (tests/e2e/docker_harness.py).
            return self.image_hook.register_provider(args), state
        if args.typ == IMAGE:
            if self.image_hook is not None:
                # The hook answers like a provider: (id, outputs), or the outputs alone.
                answer = self.image_hook(args)
                resource_id, outputs = answer if isinstance(answer, tuple) else (resource_id, answer)
                state.update(outputs)
            else:
                name = args.inputs["imageName"]
                repo = name.rsplit(":", 1)[0]
                digest = hashlib.sha256(name.encode()).hexdigest()
                state.update({"repoDigest": f"{repo}@sha256:{digest}", "baseImageName": name,
                              "registryServer": args.inputs.get("registry", {}).get("server")})
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.invokes.append((args.token, dict(args.args)))
        if args.token == ENTERPRISE_INVOKE:
            instances = self.instances
            if instances is None:
                instances = [_enterprise_instance(i) for i in args.args.get("ids", [])]
            return {"ids": [i["id"] for i in instances], "instances": instances}
        return {}


def _enterprise_instance(instance_id: str, region: str = "cn-hangzhou") -> dict:
    # The shipped stacks' placeholder ids differ in their first digit only: each instance gets its own host.
    name = f"acme-{instance_id.split('-', 1)[1][:1]}{instance_id[-4:]}"
    return {
        "id": instance_id, "name": name, "region": region, "specification": "Basic",
        "namespaceQuota": "3", "namespaceUsage": "1", "repoQuota": "300", "repoUsage": "2", "tags": {},
        "publicEndpoints": [ENTERPRISE_HOST.format(name=name, region=region)],
        "vpcEndpoints": [ENTERPRISE_HOST.format(name=f"{name}", region=region).replace("-registry.", "-registry-vpc.")],
        "tempUsername": "cr_temp_user", "authorizationToken": TEST_TOKEN,
    }


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: StackMocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []
        self.reads: list[Recorded] = []

    def ReadResource(self, request):
        response = super().ReadResource(request)
        self.reads.append(Recorded(
            type=request.type, name=request.name, urn=response.urn, inputs=_unwrap(rpc.deserialize_properties(
                request.properties)), parent=request.parent or None, protect=False, retain_on_delete=False,
            dependencies=list(request.dependencies), provider=request.provider or None,
        ))
        return response

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            plain = rpc.deserialize_properties(request.object)
            self.recorded.append(Recorded(
                type=request.type, name=request.name, urn=response.urn, inputs=_unwrap(plain),
                parent=request.parent or None, protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete), dependencies=list(request.dependencies),
                provider=request.provider or None, secret_inputs=_secret_paths(_raw_struct(request.object)),
                additional_secret_outputs=list(request.additionalSecretOutputs),
            ))
        return response


def _raw_struct(struct) -> Any:
    """The struct as plain JSON-like data, secret markers kept."""
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _forget_components() -> dict:
    """Drop cached project modules so a copy of the project elsewhere imports its own; return what was dropped."""
    dropped = {m: mod for m, mod in sys.modules.items()
               if m.split(".")[0] in ("components", "buildcontext", "registryclient")}
    for name in dropped:
        del sys.modules[name]
    return dropped


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> tuple[dict[str, str], list[str]]:
    """The config map and secret keys the engine would hand the program for stacks/Pulumi.<stack>.yaml."""
    doc = yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    raw = dict(doc.get("config") or {})
    registry = raw.get("acr-publish:registry")
    if isinstance(registry, dict) and registry.get("edition") == "personal":
        # The shipped classic-edition stack leaves the password for its user to set with --secret; the harness sets
        # it the way that command would (a secret), so the run sees what a configured stack sees.
        raw.setdefault("acr-publish:registryPassword", {"secure": "set-by-the-user"})
    for key, value in (overrides or {}).items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = TEST_SECRET
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    return config, secret_keys


SEAMS = ("resolve_platforms", "fetch_checksum", "log_in")
"""components/remote_inputs.py's network calls, which RemoteRecorder stands in for (a host's login: none)."""


class RemoteRecorder:
    """Stands in for components/remote_inputs.py's network calls (`setattr` installs it: monkeypatch.setattr).

    Records (reference, platform, stack login) in `.references`, each manifest request (reference, the platforms
    it was asked for) in `.requests`, and URLs in `.urls`. A reference is answered from `.digests` ({(reference,
    platform) or reference: digest}), else with a digest derived from its name and platform; `.fail` ({reference
    or URL: ResolveFailure}) makes one fail. URLs are answered from `.checksums` or a digest of the URL."""

    def __init__(self, setattr_: Callable[[Any, str, Any], None]) -> None:
        from components import remote_inputs

        self.references: list[tuple[str, str, Any]] = []
        self.requests: list[tuple[str, tuple[str, ...]]] = []
        self.urls: list[str] = []
        self.digests: dict[Any, str] = {}
        self.checksums: dict[str, str] = {}
        self.fail: dict[str, Exception] = {}
        self.saved = {name: getattr(remote_inputs, name) for name in SEAMS}
        setattr_(remote_inputs, "resolve_platforms", self.resolve_platforms)
        setattr_(remote_inputs, "fetch_checksum", self.fetch_checksum)
        setattr_(remote_inputs, "log_in", lambda client, creds: None)

    def resolve_platforms(self, reference: str, platforms: Any, stack: Any, deadline: float,
                          client: Any = None) -> dict[str, Any]:
        self.requests.append((reference, tuple(platforms)))
        self.references += [(reference, platform, stack) for platform in platforms]
        if reference in self.fail:
            return dict.fromkeys(platforms, self.fail[reference])
        return {platform: self.digests.get((reference, platform)) or self.digests.get(reference)
                or "sha256:" + hashlib.sha256(f"{reference}|{platform}".encode()).hexdigest()
                for platform in platforms}

    def fetch_checksum(self, url: str, deadline: float) -> str:
        self.urls.append(url)
        if url in self.fail:
            raise self.fail[url]
        return self.checksums.get(url) or "sha256:" + hashlib.sha256(url.encode()).hexdigest()

    def restore(self) -> None:
        from components import remote_inputs

        for name, value in self.saved.items():
            setattr(remote_inputs, name, value)


def source_exports(stack: str) -> dict[str, dict]:
    """For a promoting stack file, the exports of its source stack (and that stack's sources), each from its own
    stack file run under these mocks; {} for a stack that builds."""
    doc = yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    source = (doc.get("config") or {}).get("acr-publish:promoteFrom")
    if not source:
        return {}
    name = source.split("/")[-1]
    # Without its registry checks: the source's exports are what is needed, and the caller's preflight recorder
    # (tests/conftest.py) must see only the promoting stack's own checks.
    recorder = RemoteRecorder(setattr)  # also called at import time, outside any fixture
    try:
        return {name: run_stack(name, {"acr-publish:preflight": "false"}).outputs}
    finally:
        recorder.restore()


def reported_error(err: BaseException) -> BaseException | None:
    """The AcrPublishError the program reported as `err`: a plain `pulumi.RunError` of the same message, raised
    from it without a traceback of it (`raise pulumi.RunError(str(err)) from None`); None for anything else. By
    class name, so that a project copy's own classes count too."""
    original = err.__context__
    if (type(err) is pulumi.RunError and err.__suppress_context__ and original is not None
            and any(cls.__name__ == "AcrPublishError" for cls in type(original).__mro__)
            and str(err) == str(original)):
        return original
    return None


def run_stack(
    stack: str,
    config_overrides: dict[str, Any] | None = None,
    *,
    preview: bool = False,
    mocks: StackMocks | None = None,
    project_root: Path = PROJECT_ROOT,
    stack_name: str | None = None,
    records: list[Recorded] | None = None,
    warnings: list[str] | None = None,
    organization: str | None = ORGANIZATION,
    as_engine: bool = False,
) -> StackRun:
    """Run the real __main__.py for stacks/Pulumi.<stack>.yaml (as stack `stack_name`, default `stack`).

    `config_overrides` maps full config keys (e.g. "acr-publish:registry") to replacement values; None removes a key.
    Exceptions raised by the program (configuration errors, preflight failures) propagate; pass `records` and
    `warnings` lists to see what was registered and warned before the failure. `organization` is what
    `pulumi.get_organization()` returns (a DIY backend's is "organization"). The program hands an AcrPublishError
    to the engine as a `pulumi.RunError` of the same message (`__main__.py`); run_stack raises the program's own
    error instead (its class, `kind` and attributes), unless `as_engine` asks for what the engine gets.
    """
    mocks = mocks or StackMocks(stacks=source_exports(stack))
    monitor = RecordingMonitor(mocks)
    config, secret_keys = stack_config(stack, config_overrides)
    warnings = warnings if warnings is not None else []

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    old_cwd = os.getcwd()
    original_warn, original_info = pulumi.log.warn, pulumi.log.info
    infos: list[str] = []
    sys.path.insert(0, str(project_root))
    foreign = project_root.resolve() != PROJECT_ROOT
    saved = _forget_components() if foreign else {}
    if foreign and "components.remote_inputs" in saved:
        # The copy imports its own modules: the test doubles of tests/conftest.py (remote_calls) go with it.
        import importlib
        copied = importlib.import_module("components.remote_inputs")
        for name in SEAMS:
            setattr(copied, name, getattr(saved["components.remote_inputs"], name))
    try:
        os.chdir(project_root)
        runtime_settings.reset_options(project="acr-publish", stack=stack_name or stack, preview=preview,
                                       organization=organization)
        pulumi.runtime.set_mocks(mocks, project="acr-publish", stack=stack_name or stack, preview=preview,
                                 monitor=monitor, organization=organization)
        runtime_config.set_all_config(config, secret_keys)

        def warn(msg: str, resource=None, stream_id=None, ephemeral=None):
            warnings.append(msg)
            return original_warn(msg, resource, stream_id, ephemeral)

        def info(msg: str, resource=None, stream_id=None, ephemeral=None):
            infos.append(msg)
            return original_info(msg, resource, stream_id, ephemeral)

        pulumi.log.warn, pulumi.log.info = warn, info
        sigint = signal.getsignal(signal.SIGINT)  # the program takes SIGINT over once it has declared everything
        try:
            runpy.run_path(str(project_root / "__main__.py"), run_name="__main__")
        except BaseException as err:
            # The runtime waits for every registration the program started before it reports the failure
            # (pulumi/runtime/stack.py run_pulumi_func), so whatever a failing program declared reaches the engine:
            # the monitor must see it too, or "a failing check declares nothing" could not fail.
            loop.run_until_complete(pulumi.runtime.stack.wait_for_rpcs())
            reported = reported_error(err)
            if reported is not None and not as_engine:
                raise reported from None
            raise
        finally:
            signal.signal(signal.SIGINT, sigint)
        root = runtime_settings.get_root_resource()

        async def collect() -> tuple[dict, set]:
            values: dict[str, Any] = {}
            secrets: set[str] = set()
            for key, value in root.outputs.items():
                out = pulumi.Output.from_input(value)
                values[key] = await out.future(with_unknowns=True)
                if await out.is_secret():
                    secrets.add(key)
            await pulumi.runtime.stack.wait_for_rpcs()
            return values, secrets

        outputs, secret_outputs = loop.run_until_complete(collect())
    finally:
        pulumi.log.warn, pulumi.log.info = original_warn, original_info
        if records is not None:
            records.extend(monitor.recorded)
        os.chdir(old_cwd)
        sys.path.remove(str(project_root))
        if foreign:
            _forget_components()
            sys.modules.update(saved)
        runtime_settings.reset_options()
        runtime_config.set_all_config({}, [])
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        # Output futures that carried the program's exception may be collected after the loop closed; the exception
        # was already raised to the caller, so asyncio's "never retrieved" report about them is noise.
        loop.set_exception_handler(
            lambda lp, ctx: None if "never retrieved" in ctx.get("message", "") else lp.default_exception_handler(ctx)
        )
        asyncio.set_event_loop(None)
        loop.close()
    return StackRun(stack=stack_name or stack, resources=monitor.recorded, outputs=outputs,
                    secret_outputs=secret_outputs, invokes=mocks.invokes, warnings=warnings, infos=infos,
                    reads=monitor.reads)
