"""The layer audit engine: what an image in a registry really ships, read layer by layer from the registry.
No Pulumi import anywhere in this package; registry traffic goes through components/registry_client.py.

  audit.py        Auditor (manifests, configs, the merged file system per layer, hidden files, wasted bytes,
                  sensitive files by the guard's rules)
  report.py       what an audit finds (ImageAudit, its summary and JSON)
  layerstream.py  one layer blob as bounded, decompressed bytes (gzip, zstd, plain tar), never held whole
  tarscan.py      the streaming tar reader with Go archive/tar's bounds
"""
from imageaudit.audit import AuditError, Auditor
from imageaudit.report import ImageAudit, PlatformAudit

__all__ = ["AuditError", "Auditor", "ImageAudit", "PlatformAudit"]
