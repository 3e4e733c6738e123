"""Installed versions of the packages that compute a result (the push record, the no-op re-run key).

Standard library only: the CLI's no-op check reads it before TensorFlow is imported.
"""

from __future__ import annotations

from importlib import metadata
from typing import Dict, Iterable


def package_versions(names: Iterable[str]) -> Dict[str, str]:
    """``name -> version`` of each installed package; packages that are not installed are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
