"""registryclient/references.py is the one grammar of an image reference: it matches Docker's (distribution/reference,
written out below as its regexp.go spells it), and the policy pack's copy of the tag grammar is the same pattern."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from registryclient import references

# distribution/reference regexp.go, in Go's RE2 syntax where Python's agrees (\w is ASCII there).
DOCKER_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
DOCKER_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
DOCKER_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}")
# The OCI image spec's sha256 encoding: what a registry here produces and the program follows.
OCI_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")

ALPHABET = "abcXYZ019_.-:@/+"


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=140))
def test_the_tag_grammar_is_dockers(value: str) -> None:
    assert bool(references.TAG.fullmatch(value)) == bool(DOCKER_TAG.fullmatch(value))


@settings(max_examples=400, deadline=None)
@given(st.text("abz09._-", max_size=20))
def test_the_path_component_grammar_is_dockers(value: str) -> None:
    assert bool(references.PATH_COMPONENT.fullmatch(value)) == bool(DOCKER_PATH_COMPONENT.fullmatch(value))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text("0123456789abcdefA:", min_size=60, max_size=70).map(lambda h: "sha256:" + h),
                 st.text(ALPHABET + "0123456789abcdef", max_size=80)))
def test_a_digest_is_a_docker_digest_in_the_sha256_encoding(value: str) -> None:
    assert bool(references.DIGEST.fullmatch(value)) == bool(DOCKER_DIGEST.fullmatch(value)
                                                             and OCI_SHA256.fullmatch(value))


def test_the_policy_packs_copy_of_the_tag_grammar_is_the_same() -> None:
    from policies import rules

    assert rules._TAG_RE.pattern == references.TAG.pattern
