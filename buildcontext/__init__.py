"""The build-context engine: what a `docker build` of a context sends, its digest and tag, the sensitive-file
guard, the stat cache and the explain history. No Pulumi import anywhere in this package.

  context.py       ContextScan (the one entry: scan once, then digest/report/state per image) and context_digest
  dockerignore.py  the file set: Docker's .dockerignore semantics and the (iterative) walk
  hashing.py       reading and hashing files on all cores, the content scan in the same read
  digest.py        the digest encoding, the content tag, the default platform
  sensitive.py     the guard: findings and the error a person acts on
  sensitive_rules.py  the guard's rule table (patterns, names, reasons)
  stages.py        reading a Dockerfile into its plan (plan.py) for one image; stage_args.py its ARG scope and words
  memo.py          the stat cache: (path, stat key) -> content hash and guard flags
  history.py       the explain history, per (project, stack, image)
  files.py         where the engine's files live and how they are read and written
"""
from buildcontext.context import ContextReport, ContextScan, context_digest
from buildcontext.digest import DEFAULT_PLATFORM, content_tag
from buildcontext.sensitive import Finding, SensitiveFilesError

__all__ = ["ContextReport", "ContextScan", "context_digest", "content_tag", "DEFAULT_PLATFORM", "Finding",
           "SensitiveFilesError"]
