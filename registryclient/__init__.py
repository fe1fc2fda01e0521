"""The registry client: everything that talks to a container registry's HTTP API v2. No Pulumi import anywhere in
this package, and no stack setting named in its messages (the caller names its own settings through `Advice`).

  references.py  the grammar of a reference: registry host[:port], repository path, tag, digest
  scrub.py       Scrubber and excerpt_text: what a message may show of a server's text (none holding a secret)
  transport.py   sessions and trust, sockets an abort shuts down, bounded decoding, the pace floor
  endpoint.py    where a registry is (scheme, host, port) and whether a URL really goes there
  connection.py  one registry and account: deadline, one bounded request, the messages of a failed exchange
  auth.py        the login through the registry's challenge, tokens per scope
  client.py      RegistryClient: manifests, blobs and tags
"""
from registryclient.client import (
    DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_LIMIT, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST, Manifest,
    RegistryClient,
)
from registryclient.connection import Advice
from registryclient.errors import RegistryError
from registryclient.scrub import Scrubber, excerpt_text

__all__ = ["Advice", "DOCKER_LIST", "DOCKER_MANIFEST", "MANIFEST_LIMIT", "MANIFEST_MEDIA_TYPES", "Manifest",
           "OCI_INDEX", "OCI_MANIFEST", "RegistryClient", "RegistryError", "Scrubber", "excerpt_text"]
