"""The registry client: everything that talks to a container registry's HTTP API v2 goes through `RegistryClient`.

Manifests (HEAD -> digest or absent; GET -> media type, bytes, digest; PUT of bytes unchanged with their media
type: Docker v2 schema 2 manifests and manifest lists, OCI manifests and indexes), blobs (HEAD, cross-repository
mount, GET streamed in chunks, PUT streamed from an iterator, monolithic or chunked) and tag lists, over the login
(auth.py) and the transport (connection.py, transport.py). Every response body is read up to a bound
(ERROR_BODY_LIMIT for answers only reported, MANIFEST_LIMIT for manifests); blobs are never held whole.

Why no library: python-dxf reads every body whole, follows redirects with the Authorization header it set itself,
forces https on the token realm and keeps one token per client; oras reads bodies whole, retries by decorator,
loads ~/.docker/config.json on its own and returns manifests parsed (not the bytes that were digested). This uses
requests / urllib3 directly (already pinned) so the bounds and the credential rules hold by construction.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator
from urllib.parse import urlencode

import requests
import urllib3

from boundedjson import parse_json
from registryclient.auth import AuthenticatedConnection, registry_error_text
from registryclient.errors import RegistryError
from registryclient.login import RegistryLogin
from registryclient.references import DIGEST
from registryclient.scrub import excerpt_text
from registryclient.transport import CHUNK_SIZE, ERROR_BODY_LIMIT, Pace, short_reason

MANIFEST_LIMIT = 4 * 1024 * 1024
"""Bytes read of a manifest: distribution refuses manifests larger than 4 MiB, so a larger answer is not one."""
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
# All of them in Accept, or distribution answers a HEAD/GET of an index with a converted manifest and another digest.
_MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry stores it."""

    media_type: str
    content: bytes
    digest: str
    """`sha256:` of `content`, checked against the registry's Docker-Content-Digest when it sends one."""


class RegistryClient(AuthenticatedConnection):
    """One registry, one account: login through the registry's challenge, then manifests, blobs and tags. Its
    constructor's options (time limits, labels, `advice`) are `Connection`'s."""

    @classmethod
    def of(cls, login: RegistryLogin, **options: Any) -> "RegistryClient":
        """A client for `login` (server, account, plain HTTP or not); `options` are `Connection`'s."""
        return cls(login.server, login.username, login.password, allow_plain_http=login.allow_plain_http, **options)

    def __enter__(self) -> "RegistryClient":
        return self

    def _check(self, method: str, repository: str, response: requests.Response, what: str,
               ok: tuple[int, ...]) -> None:
        if response.status_code not in ok:
            raise self._refused(method, repository, response, what)

    def _refused(self, method: str, repository: str, response: requests.Response, what: str) -> RegistryError:
        if response.status_code in (401, 403):
            own = registry_error_text(response)
            reason = excerpt_text(own, self.scrub) if own else self.excerpt(response)
            return self.fail(
                f"{self.user_phrase} may not {what} in {self.endpoint.netloc}/{repository} "
                f"({response.status_code}: {reason})",
                "forbidden" if response.status_code == 403 else "auth", response.status_code,
            )
        return self.unexpected(method, f"{self.endpoint.base}/v2/{repository}/…", response)

    # -- manifests
    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest bytes the registry serves for `reference` (a tag or digest) in `repository`
        (HEAD for presence, then GET: the bytes are hashed, and a HEAD that names another digest is an error); None
        when absent.

        Absent: 404 (MANIFEST_UNKNOWN, NAME_UNKNOWN: the repository does not exist yet); a 401/403 whose error
        code is NAME_UNKNOWN; or a 401/403 while the Bearer token the registry's own token service issued grants
        no action at all on this repository (its JWT `access` claim), which is how Docker-spec token services
        answer for a repository they do not know (and for one the account may not see: an account that may
        push to the namespace but not pull this repository then builds, and the registry's own push check has
        the last word). Any other failure raises RegistryError, and so does a 401/403 with an opaque token.
        """
        response = self.request("HEAD", repository, f"manifests/{reference}", headers={"Accept": _MANIFEST_ACCEPT})
        if response.status_code == 200:
            # The digest becomes an output (a ref) or decides that nothing needs copying: it is the digest of the
            # bytes the registry serves, never only what a header claims.
            claimed = response.headers.get("Docker-Content-Digest", "")
            manifest = self.get_manifest(repository, reference)
            if claimed and claimed != manifest.digest:
                raise self.fail(f"the registry reports {repository}:{reference} at "
                                f"{excerpt_text(claimed, self.scrub)}, but its manifest bytes have digest "
                                f"{manifest.digest}; a registry (or a proxy) that misreports digests cannot be "
                                "published to safely")
            return manifest.digest
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            if "NAME_UNKNOWN" in registry_error_text(response):
                return None
            if self.challenge is not None and self.challenge[0] == "bearer":
                granted = self.token_grants((f"repository:{repository}:pull",), repository)
                if granted is not None and not granted:
                    return None
        raise self._refused("HEAD", repository, response, f"read manifest '{reference}'")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        response = self.request("GET", repository, f"manifests/{reference}", headers={"Accept": _MANIFEST_ACCEPT},
                                limit=MANIFEST_LIMIT)
        if response.status_code == 404:
            raise self.fail(f"{self.endpoint.netloc}/{repository}:{reference} does not exist", "absent", 404)
        self._check("GET", repository, response, f"read manifest '{reference}'", ok=(200,))
        if getattr(response, "truncated", False):
            raise self.fail(f"the manifest {repository}:{reference} is larger than {MANIFEST_LIMIT} bytes; "
                            "registries refuse such manifests, so this is not one")
        content = response.content
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest and DIGEST.fullmatch(reported):
            raise self.fail(f"the manifest {repository}:{reference} has digest {digest}, but the registry "
                            f"reports {reported}")
        if reference.startswith("sha256:") and reference != digest:
            raise self.fail(f"the registry answered {repository}@{reference} with manifest bytes of digest {digest}")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in MANIFEST_MEDIA_TYPES:
            try:
                media_type = parse_json(content, limit=MANIFEST_LIMIT).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        return Manifest(media_type=media_type, content=content, digest=digest)

    def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str:
        """PUT the manifest bytes unchanged under `reference`; returns their digest (checked against the
        registry's answer)."""
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        response = self.request("PUT", repository, f"manifests/{reference}", actions="pull,push",
                                headers={"Content-Type": media_type}, data=content)
        self._check("PUT", repository, response, f"push manifest '{reference}'", ok=(201, 200))
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise self.fail(f"the registry stored {repository}:{reference} as "
                            f"{excerpt_text(reported, self.scrub)}, not {digest}")
        return digest

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of `repository` (following `Link` pagination); [] when the repository does not exist."""
        tags: list[str] = []
        response = self.request("GET", repository, "tags/list", limit=MANIFEST_LIMIT)
        for _page in range(1000):
            if response.status_code == 404:
                return tags
            self._check("GET", repository, response, "list tags", ok=(200,))
            try:
                body = parse_json(response.content, limit=MANIFEST_LIMIT)
            except ValueError:
                raise self.unexpected("GET", f"/v2/{repository}/tags/list", response) from None
            tags += [t for t in (body.get("tags") or []) if isinstance(t, str)] if isinstance(body, dict) else []
            link = re.match(r"\s*<([^>]+)>", response.headers.get("Link", ""))
            if not link:
                return tags
            response = self.follow("GET", link.group(1), (f"repository:{repository}:pull",), limit=MANIFEST_LIMIT)
        raise self.fail(f"the tag list of {repository} has more than 1000 pages")

    # -- blobs
    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of blob `digest` in `repository`; None when the registry does not have it there."""
        response = self.request("HEAD", repository, f"blobs/{digest}")
        if response.status_code in (307, 302, 301, 303, 308) and response.headers.get("Location"):
            response = self.follow("HEAD", response.headers["Location"], (f"repository:{repository}:pull",))
        if response.status_code == 404:
            return None
        self._check("HEAD", repository, response, f"read blob {digest}", ok=(200,))
        try:
            return int(response.headers.get("Content-Length", ""))
        except ValueError:
            raise self.unexpected("HEAD", f"/v2/{repository}/blobs/{digest}", response) from None

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.blob_size(repository, digest) is not None

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount of `digest` from `source_repository` (same registry): True when mounted; False
        when the registry declined (it then started an upload, which is cancelled)."""
        path = "blobs/uploads/?" + urlencode({"mount": digest, "from": source_repository})
        response = self.request("POST", repository, path, actions="pull,push",
                                extra_scopes=(f"repository:{source_repository}:pull",))
        if response.status_code == 201:
            return True
        self._check("POST", repository, response, "start a blob upload", ok=(202,))
        self.cancel_upload(repository, response)
        return False

    def get_blob(self, repository: str, digest: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most `chunk_size`, never held whole; its sha256 is checked at the end
        (RegistryError when the bytes do not match `digest`). A redirect to storage on another host is followed
        without credentials."""
        scopes = (f"repository:{repository}:pull",)
        response = self.request("GET", repository, f"blobs/{digest}", stream=True)
        for _hop in range(5):
            if response.status_code not in (301, 302, 303, 307, 308) or not response.headers.get("Location"):
                break
            response.close()
            response = self.follow("GET", response.headers["Location"], scopes, stream=True)
        if response.status_code != 200:
            self._read_bounded(response, ERROR_BODY_LIMIT, "GET", "")
            if response.status_code == 404:
                raise self.fail(f"blob {digest} is not in {self.endpoint.netloc}/{repository}", "absent", 404)
            self._check("GET", repository, response, f"read blob {digest}", ok=(200,))
        return self._stream(response, digest, chunk_size)

    def _stream(self, response: requests.Response, digest: str, chunk_size: int) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        pace = Pace(self.pace_window)
        try:
            decoder = self._decoder(response, "GET", f"/blobs/{digest}")
            while True:
                problem = None
                try:
                    piece = b"" if decoder.pending else response.raw.read1(chunk_size)
                    wire = len(piece)
                    piece = self._decoded(decoder, piece, chunk_size, "GET", f"/blobs/{digest}") \
                        if piece or decoder.pending else b""
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    problem = f"reading blob {digest} failed: {self.shown(short_reason(exc))}"
                    piece, wire = b"", 0
                if self._sockets.aborted:
                    problem = self._stopped(f"reading blob {digest}")
                elif wire and not pace.keeps_up(wire):
                    problem = self._stalled(f"blob {digest}", pace)
                if problem is not None:
                    raise self.fail(problem, "unreachable")
                if not wire and not piece:  # the body ended, and nothing decoded is left
                    break
                if piece:
                    hasher.update(piece)
                    yield piece
        finally:
            response.close()
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise self.fail(f"the bytes of blob {digest} have digest sha256:{hasher.hexdigest()}")

    def start_upload(self, repository: str, *, what: str = "") -> requests.Response:
        """POST /v2/<repository>/blobs/uploads/ with push scope; the raw answer (the caller judges 202/401/403/404)."""
        return self.request("POST", repository, "blobs/uploads/", actions="pull,push", what=what)

    def cancel_upload(self, repository: str, response: requests.Response) -> None:
        """DELETE the upload a 202 started (its Location; credentials only if that is on the registry's origin).
        Best effort: an abandoned upload is garbage-collected by the registry."""
        location = response.headers.get("Location")
        if not location:
            return
        try:
            self.follow("DELETE", location, (f"repository:{repository}:pull,push",), what="cancelling the upload")
        except RegistryError:
            pass

    def put_blob(self, repository: str, digest: str, chunks: Iterable[bytes], *, chunked: bool = False) -> None:
        """Upload the blob from `chunks` (streamed, never joined): one PUT with the whole stream (monolithic), or
        with `chunked` one PATCH per chunk and a closing PUT. The registry checks `digest` and refuses on mismatch."""
        scopes = (f"repository:{repository}:pull,push",)
        response = self.start_upload(repository, what=f"uploading blob {digest}")
        self._check("POST", repository, response, "start a blob upload", ok=(202,))
        location = response.headers.get("Location", "")
        if not location:
            raise self.unexpected("POST", f"/v2/{repository}/blobs/uploads/", response)
        if chunked:
            offset = 0
            for chunk in chunks:
                if not chunk:
                    continue
                response = self.follow("PATCH", location, scopes, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                })
                self._check("PATCH", repository, response, f"upload blob {digest}", ok=(202, 204))
                offset += len(chunk)
                location = response.headers.get("Location", location)
            body: Iterable[bytes] | bytes = b""
        else:
            body = chunks
        separator = "&" if "?" in location else "?"
        response = self.follow("PUT", f"{location}{separator}{urlencode({'digest': digest})}", scopes, data=body,
                               headers={"Content-Type": "application/octet-stream"})
        self._check("PUT", repository, response, f"upload blob {digest}", ok=(201,))
