"""Artifact I/O for every filesystem TFX supports: local disk, ``gs://``, ``s3://``, ``hdfs://``, ``ram://``.

On Kubeflow/Vertex every artifact URI is remote, so custom executors never use builtin ``open``/``os``/
``shutil``/``glob`` on a URI: they go through ``tfx.dsl.io.fileio`` (TensorFlow's filesystems underneath).
Work that needs real local files (a subprocess, a server, a converter) runs on a local copy in a temp dir and
uploads what it produced (``copy_file`` / ``copy_tree`` / ``keep_logs``). The tests run the executors on ``ram://``, TF's
in-memory filesystem, which goes through exactly these calls and is invisible to every other process.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any, List, Sequence

from absl import logging

from tfx.dsl.io import fileio
from tfx.utils import io_utils


def is_local(uri: str) -> bool:
    """A plain path (no ``scheme://``): a directory rename there is atomic (POSIX ``rename``)."""
    return "://" not in uri


def join(uri: str, *parts: str) -> str:
    """``posixpath.join`` for URIs (``os.path.join`` would use ``\\`` on Windows hosts)."""
    return posixpath.join(uri, *parts)


def read_text(uri: str) -> str:
    with fileio.open(uri, "r") as f:
        return f.read()


def read_bytes(uri: str) -> bytes:
    with fileio.open(uri, "rb") as f:
        return f.read()


def read_json(uri: str) -> Any:
    return json.loads(read_text(uri))


def write_text(uri: str, text: str) -> None:
    """Write ``text`` to ``uri`` (replacing it), creating its directory.

    An existing file is removed first: not every filesystem truncates a file opened for writing (TF's ram://
    keeps the old tail), and a replaced object is what gs:// gives anyway."""
    if fileio.exists(uri):
        fileio.remove(uri)
    io_utils.write_string_file(uri, text)


def write_json(uri: str, value: Any) -> None:
    write_text(uri, json.dumps(value, indent=1, sort_keys=True))


def copy_file(source: str, target: str) -> None:
    """Copy one file across filesystems (either side may be local or remote), creating the target's folder."""
    if not fileio.exists(source):  # TF's NotFoundError carries no message on some filesystems
        raise FileNotFoundError(f"{source} does not exist")
    fileio.makedirs(posixpath.dirname(target))
    if fileio.exists(target):  # see write_text
        fileio.remove(target)
    fileio.copy(source, target)


def files_under(root: str) -> List[str]:
    """Every file below ``root`` as a path relative to it (``/``-separated), sorted."""
    root = root.rstrip("/")
    out: List[str] = []
    for directory, _, files in fileio.walk(root):
        directory = directory.decode() if isinstance(directory, bytes) else directory
        rel = directory[len(root):].strip("/")
        for name in files:
            name = name.decode() if isinstance(name, bytes) else name
            path = posixpath.join(rel, name) if rel else name
            # ram:// lists "assets/.extra" beside "assets.extra/…" (prefix matching): keep what really exists.
            if fileio.exists(join(root, path)):
                out.append(path)
    return sorted(out)


def copy_tree(source: str, target: str, last: Sequence[str] = ()) -> List[str]:
    """Copy the tree ``source`` into ``target``; the files named in ``last`` (relative paths) are copied
    after all others, in that order. Returns the relative paths copied.

    The order is the completion protocol on filesystems without an atomic directory rename: a reader that
    sees the last file knows everything before it is complete (see ``pusher.publish``)."""
    files = files_under(source)
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    for rel in ordered:
        copy_file(join(source, rel), join(target, rel))
    return ordered


def keep_logs(local_dir: str, uri_dir: str) -> None:
    """Copy the ``*.log`` files of a local work dir into an artifact folder (any filesystem).

    Called from ``finally`` blocks: a failed upload is logged, never raised, so it cannot hide the error that
    the logs are kept for."""
    for name in sorted(os.listdir(local_dir)):
        if name.endswith(".log"):
            try:
                copy_file(os.path.join(local_dir, name), join(uri_dir, name))
            except Exception as e:  # noqa: BLE001 - see the docstring
                logging.warning("could not keep %s in %s: %s", name, uri_dir, e)
