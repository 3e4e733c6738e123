"""The no-op re-run: when nothing a run depends on changed, answer with the last run's result in a second.

TFX's cache already makes an unchanged re-run skip every component, but getting there costs the imports of
TensorFlow, TFX and Beam, building the graph and an MLMD round trip per node (about 20 s here). This module
decides *before any of that* whether the run would be a no-op: the key of a run is a hash of

- the config (everything it computes, ``PipelineConfig.fingerprint``) and the curated schema's bytes,
- the data: every input file's name and full content (not size or mtime, which a copy can keep), and
  those of the ``bulk_inference`` table, which a pushing run scores,
- sluice's code (every source file) and the versions of the packages that compute (TFX, TF, Beam, …).

After a successful run the key, the run id and its report are recorded in ``<output>/.sluice/last_run.json``;
the next ``sluice run`` with the same key prints that run's result, marked as such, and exits like it did.
``--rerun`` and ``--fresh`` always run the pipeline. Only successful runs are recorded, and the record is
used only while the version it pushed and its report still exist.

Standard library only (no TensorFlow): it must answer in well under 3 s.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from sluice.components.versions import package_versions
from sluice.pipeline.code_version import package_fingerprint, user_code_version
from sluice.pipeline.config import PipelineConfig

RECORD = Path(".sluice") / "last_run.json"
PACKAGES = ("tfx", "tfx-bsl", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis",
            "tensorflow-data-validation", "tensorflow-serving-api", "apache-beam", "keras", "keras-tuner",
            "ml-metadata", "numpy", "pyarrow", "protobuf", "ai-edge-litert")
_CHUNK = 1 << 20


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(files: Iterable[str], base: str = "") -> str:
    """Hash of the input files' names (relative to ``base``, so that span 3's ``part.csv`` differs from span
    2's) and contents, sorted by name."""
    h = hashlib.sha256()
    for f in sorted(files):
        name = os.path.relpath(f, base) if base else os.path.basename(f)
        h.update(name.encode() + b"\0" + file_digest(f).encode() + b"\0")
    return h.hexdigest()[:16]


def bulk_fingerprint(config: PipelineConfig) -> Optional[str]:
    """Hash of the ``bulk_inference`` table's files (names and contents); "" without a table or when it cannot
    be read (the pre-flight says why); None for a table at a URI, which is not read without TensorFlow (the
    shortcut then never answers, and the pipeline fingerprints it through ``tf.io.gfile``)."""
    from sluice.pipeline.config import is_uri
    from sluice.pipeline.data_source import resolve_data_source
    from sluice.pipeline.errors import SluiceError

    if config.bulk_inference is None:
        return ""
    where = config.bulk_contract().bulk.input
    if is_uri(where):
        return None
    try:
        source = resolve_data_source(Path(where))
    except (SluiceError, OSError):
        return ""
    return data_fingerprint(source.files, source.input_base)


def run_key(config: PipelineConfig, data_files: Iterable[str], data_base: str = "",
            bulk: Optional[str] = None) -> Dict[str, str]:
    """What a run's result depends on, each part hashed (kept apart so a mismatch can be explained).
    ``bulk``: the bulk table's ``bulk_fingerprint`` when the caller has it (a table is hashed once)."""
    return {
        "bulk": (bulk_fingerprint(config) if bulk is None else bulk) or "",
        "config": config.fingerprint(),
        "schema": file_digest(str(config.schema_file))[:16],
        "data": data_fingerprint(data_files, data_base),
        "code": package_fingerprint() + user_code_version(
            [config.code.preprocessing_fn, config.code.model_fn, *config.code.custom_objects]),
        "packages": hashlib.sha256(json.dumps(package_versions(PACKAGES), sort_keys=True).encode()).hexdigest()[:16],
    }


def key_of(config: PipelineConfig) -> Optional[Dict[str, str]]:
    """``run_key`` of the config's data, or None when the data or schema cannot be read (the run's
    pre-flight then reports that with its fix; the shortcut never answers for it)."""
    from sluice.pipeline.data_source import resolve_data_source, spans_at
    from sluice.pipeline.errors import SluiceError

    try:
        source = resolve_data_source(config.data_path)
        bulk = bulk_fingerprint(config)
        if bulk is None:  # a bulk table at a URI: its change cannot be seen here
            return None
        files = source.files
        if config.data.window > 1:  # the window reads older spans too: a deleted one retracts it
            files = tuple(f for span_files in spans_at(source.input_base, source.pattern).values() for f in span_files)
        return run_key(config, files, source.input_base, bulk)
    except (SluiceError, OSError):
        return None


@dataclass(frozen=True)
class Answer:
    """The recorded run that answers this one."""

    run_id: str
    summary: Dict[str, Any]


def record(output: Path, key: Dict[str, str], summary: Dict[str, Any]) -> None:
    """Remember a successful run (written atomically: a half-written record is never read)."""
    path = Path(output) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "run_id": summary["run_id"], "report_dir": summary["report_dir"]}))
    tmp.replace(path)


def forget(output: Path) -> None:
    """Drop the record (a run is starting: until it succeeds, the last answer may no longer hold)."""
    (Path(output) / RECORD).unlink(missing_ok=True)


def lookup(output: Path, key: Dict[str, str]) -> Optional[Answer]:
    """The recorded run if its key equals ``key`` and what it produced is still there, else None."""
    root = Path(output).resolve()
    try:
        saved = json.loads((root / RECORD).read_text())
        if not isinstance(saved, dict) or saved.get("key") != key:
            return None
        report = Path(saved["report_dir"]).resolve()
        summary = json.loads((report / "summary.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(summary, dict) or summary.get("run_id") != saved.get("run_id") \
            or summary.get("status") != "succeeded":
        return None
    served = summary.get("saved_model_path")
    if not isinstance(served, str) or not (Path(served) / "saved_model.pb").is_file():  # the push is gone
        return None
    if not _inside(report, root) or not _inside(Path(served).resolve(), root):  # a copied output directory
        return None
    return Answer(saved["run_id"], summary)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
