"""What the SDK's provider server (`python -m pulumi.dynamic`, run as the engine runs it) sends the engine when one of
our dynamic providers fails: an AcrPublishError as its message alone, any other exception with its traceback.

Each provider is serialized by the SDK's own serializer and fails on a registry port where nothing listens; the
engine's side of it is tests/e2e/test_engine_promote.py.
"""
from __future__ import annotations

from typing import Iterator

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.audit import ImageAuditProvider
from components.image_index import ImageIndexProvider
from components.promotion import PromotionProvider
from tests.e2e.dynamic_engine import DynamicProviderError, DynamicProviderProcess
from tests.e2e.registry import free_port
from tests.harness import PROJECT_ROOT

PASSWORD = "pw-Qx7!provider-errors"
DIGEST = "sha256:" + "ab" * 32
URN = "urn:pulumi:stack::acr-publish::pulumi-python:dynamic/acr-publish:{}::name"


@pytest.fixture(scope="module")
def provider() -> Iterator[DynamicProviderProcess]:
    process = DynamicProviderProcess(PROJECT_ROOT).start()
    yield process
    process.stop()
    process.assert_printed_no_secret([PASSWORD])


@pytest.fixture(scope="module")
def nowhere() -> str:
    """A loopback host:port where nothing listens: every registry exchange is refused at once."""
    return f"127.0.0.1:{free_port()}"


def promotion(nowhere: str) -> dict:
    auth = {"username": "promoter", "password": PASSWORD}
    return {"__provider": serialize_provider(PromotionProvider()),
            "sourceServer": nowhere, "sourceAuth": auth, "sourcePlainHttp": True, "sourceRepository": "app/web",
            "sourceDigest": DIGEST, "targetServer": nowhere, "targetAuth": auth, "targetPlainHttp": True,
            "targetRepository": "release/web", "tag": "ctx-0123456789abcdef0123"}


def failure(call) -> str:
    with pytest.raises(DynamicProviderError) as err:
        call()
    return str(err.value)


def assert_message_alone(text: str, message: str) -> None:
    assert text.startswith(message), text
    assert "Traceback" not in text and 'File "' not in text and PASSWORD not in text, text


def test_a_refused_promotion_read_is_its_message_alone(provider: DynamicProviderProcess, nowhere: str) -> None:
    props = promotion(nowhere)
    text = failure(lambda: provider.read(URN.format("Promotion"), f"{nowhere}/release/web:t", props, props))
    assert_message_alone(text, f"reading {nowhere}/release/web:ctx-0123456789abcdef0123 failed: ")
    assert "refused" in text


def test_a_refused_promotion_source_is_its_message_alone(provider: DynamicProviderProcess, nowhere: str) -> None:
    props = promotion(nowhere)  # Create audits the source first: the gate's AuditFailure
    text = failure(lambda: provider.create(URN.format("Promotion"), props))
    assert_message_alone(text, f"auditing {nowhere}/app/web@{DIGEST} failed: ")
    assert "the source stack's registry" in text


def test_a_refused_index_read_is_its_message_alone(provider: DynamicProviderProcess, nowhere: str) -> None:
    props = {"__provider": serialize_provider(ImageIndexProvider()), "server": nowhere, "repository": "app/web",
             "tag": "ctx-0123456789abcdef0123", "children": [], "plainHttp": True,
             "auth": {"username": "pusher", "password": PASSWORD}}
    text = failure(lambda: provider.read(URN.format("ImageIndex"), f"{nowhere}/app/web:t", props, props))
    assert_message_alone(text, f"reading {nowhere}/app/web:ctx-0123456789abcdef0123 failed: ")


def test_a_refused_audit_is_its_message_alone(provider: DynamicProviderProcess, nowhere: str) -> None:
    props = {"__provider": serialize_provider(ImageAuditProvider()), "server": nowhere, "repository": "app/web",
             "digest": DIGEST, "plainHttp": True, "auth": {"username": "pusher", "password": PASSWORD},
             "settings": {}}
    text = failure(lambda: provider.create(URN.format("ImageAudit"), props))
    assert_message_alone(text, f"auditing {nowhere}/app/web@{DIGEST} failed: ")


def test_an_unexpected_exception_keeps_its_traceback(provider: DynamicProviderProcess, nowhere: str) -> None:
    # Inputs the program never declares (no target server): the provider's bug path, a KeyError, not a refusal.
    props = promotion(nowhere)
    del props["targetServer"]
    text = failure(lambda: provider.read(URN.format("Promotion"), f"{nowhere}/release/web:t", props, props))
    assert text.startswith("Traceback (most recent call last):"), text
    assert "components/promotion.py" in text and text.rstrip().endswith("KeyError: 'targetServer'"), text
