"""JSON the program did not write goes through one bounded parser (boundedjson.parse_json): nesting past its
depth or a document past its caller's size bound is a ValueError there, and each reader of a server's answer, a
file or a tool's output turns that into its own one-line refusal, never RecursionError."""
from __future__ import annotations

import hashlib
import socket
import threading

import pytest

from boundedjson import MAX_DEPTH, parse_json
from buildcontext import history, memo
from components.builders import BuilderError, engine_platform
from components.config.schema import BuilderSettings


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_is_bounded_and_brackets_inside_strings_do_not_count():
    assert parse_json(nested(MAX_DEPTH), limit=1 << 20) is not None
    assert parse_json('{"a": "' + "[{" * 5000 + '\\"]"}', limit=1 << 20) == {"a": "[{" * 5000 + '"]'}
    for deep in (nested(MAX_DEPTH + 1), nested(100_000), b'{"a":' * 100_000, nested(100_000).decode()):
        with pytest.raises(ValueError, match="nested deeper than"):
            parse_json(deep, limit=1 << 20)


def test_a_document_past_its_callers_bound_is_refused_before_it_is_parsed():
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        parse_json(b'"' + b"x" * 10 + b'"', limit=10)
    with pytest.raises(ValueError):
        parse_json(b"\xff\xfe{", limit=10)  # not UTF-8: a ValueError too


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_history_file_nested_deep_is_reported_as_of_the_wrong_shape(cache_dir, tmp_path):
    key = history.HistoryKey(str(tmp_path), "dev", "web")
    body = b'{"last":' + nested(100_000) + b"}"
    key.path().parent.mkdir(parents=True)
    key.path().write_bytes(b"acr-publish-history %s x %s\n" % (history.LAYOUT_VERSION.encode(),
                                                               hashlib.sha256(body).hexdigest().encode()) + body)
    with pytest.raises(history.HistoryError, match="is of the wrong shape; delete it"):
        history.load(key)


def test_a_stat_cache_nested_deep_is_ignored_with_its_reason(cache_dir, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    path = memo.cache_file_for(context, context / "Dockerfile")
    body = nested(100_000) + b"\n{}"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"acr-publish-memo %s %s\n" % (memo.versions(), hashlib.sha256(body).hexdigest().encode())
                     + body)
    loaded = memo.StatCache.load(context, context / "Dockerfile")
    assert loaded.problem is not None and loaded.summary is None, loaded.problem


def test_a_builder_answering_deep_json_is_not_a_docker_engine(tmp_path):
    path = str(tmp_path / "engine.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + nested(30_000))

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(BuilderError, match="answered, but not as a Docker engine"):
            engine_platform(BuilderSettings("linux/arm64", f"unix://{path}"), timeout=10)
    finally:
        listener.close()


@pytest.mark.parametrize("tail", [b"", b"\\"], ids=["unterminated", "lone-backslash-last"])
def test_strings_a_server_arranged_against_the_stripper_are_judged_in_linear_time(tail: bytes) -> None:
    """An unterminated string of escaped quotes (each `\\"` a place a string could start) made the string-stripping
    pattern retry from every quote: 160 KB took 53 s. The bound only turns such a hang into a failure."""
    import time

    payload = b"[" * 70 + b'"' + b'\\"' * 200_000 + tail
    started = time.monotonic()
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(payload, limit=4 * 1024 * 1024)
    assert time.monotonic() - started < 20
