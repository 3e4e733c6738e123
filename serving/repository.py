"""The models a local server serves: TF Serving's directory layout and ``models.config`` semantics.

``<base_path>/<version>/saved_model.pb`` with numeric versions (sluice's Pusher writes them atomically; other
writers — ``gsutil cp``, ``rsync`` — may not, so a version that fails to load is retried, never served from
half, and never displaces the one serving: ``Repository``; ``.incoming-*`` staging directories are ignored). Which
versions are loaded follows the model's version policy (``latest { num_versions }`` — TF Serving's default
of 1 —, ``specific { versions }``, ``all``); ``version_labels`` name versions (``stable``, ``canary``). A
poller reloads the tree every ``poll_seconds``: a new version is loaded *before* it replaces the old one in
the routing table, so requests never see a gap.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sluice.serving.errors import ServingError, invalid, not_found

logger = logging.getLogger(__name__)


@dataclass
class ModelEntry:
    name: str
    base_path: Path
    policy: str = "latest"
    """``latest`` | ``specific`` | ``all``."""
    num_versions: int = 1
    versions: List[int] = field(default_factory=list)
    labels: Dict[str, int] = field(default_factory=dict)


def read_model_config(path: Path, model_dir: Optional[Path] = None) -> List[ModelEntry]:
    """Parse a ``models.config`` (ModelServerConfig text format). A ``base_path`` that does not exist here
    (e.g. ``/models/taxi_fare`` inside the Docker image) is looked up as ``<model_dir>/<name>``."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())
    entries = []
    for c in config.model_config_list.config:
        base = Path(c.base_path)
        if not base.is_dir() and model_dir is not None:
            base = Path(model_dir) / c.name
        policy = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        entries.append(ModelEntry(
            name=c.name, base_path=base, policy=policy,
            num_versions=(c.model_version_policy.latest.num_versions or 1) if policy == "latest" else 1,
            versions=list(c.model_version_policy.specific.versions), labels=dict(c.version_labels)))
    return entries


def discover(model_dir: Path) -> List[ModelEntry]:
    """Every ``<model_dir>/<name>/`` holding numeric version directories (``*_tflite`` trees are not models)."""
    entries = []
    for child in sorted(Path(model_dir).iterdir()) if Path(model_dir).is_dir() else []:
        if child.is_dir() and not child.name.endswith("_tflite"):
            entries.append(ModelEntry(name=child.name, base_path=child))
    return entries


def available_versions(base: Path) -> List[int]:
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if is_version_name(p.name) and (p / "saved_model.pb").is_file())


INT64_MAX = 2**63 - 1


def is_version_name(name: str) -> bool:
    """A version directory's name: ASCII digits (``"²".isdigit()`` is true, ``int("²")`` raises), no leading
    zero (``0002`` would be loaded as ``2/``), within int64 (TF Serving's version type)."""
    return (name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0"))
            and int(name) <= INT64_MAX)


def wanted(entry: ModelEntry, available: List[int]) -> List[int]:
    """The versions the policy loads, given what is on disk."""
    if entry.policy == "all":
        return list(available)
    if entry.policy == "specific":
        return [v for v in available if v in entry.versions]
    return available[-entry.num_versions:] if available else []


@dataclass
class Signature:
    fn: Any
    inputs: Dict[str, Any]
    """Input name -> tf.TensorSpec."""
    outputs: List[str]


@dataclass
class LoadedVersion:
    name: str
    version: int
    path: Path
    signatures: Dict[str, Signature]
    signature_defs: Any
    """The MetaGraph's ``signature_def`` map (protos), for the metadata endpoints."""

    def signature(self, name: str) -> Signature:
        key = name or "serving_default"
        if key not in self.signatures:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return self.signatures[key]

    def predict(self, signature_name: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import tensorflow as tf

        sig = self.signature(signature_name)
        try:
            out = sig.fn(**{k: tf.constant(v, dtype=sig.inputs[k].dtype) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise invalid(cause(e))
        return {k: v.numpy() for k, v in out.items()}


def cause(error: BaseException) -> str:
    """The informative part of a TensorFlow error: TF 2.16 leads with "Graph execution error:" and puts the
    cause on a later line, followed by node/op decorations (``[Op:__inference_…]``, ``[[{{node …}}]]``)."""
    import re

    lines = [line.strip() for line in str(error).splitlines()]
    useful = [line for line in lines if line and line != "Graph execution error:"
              and not line.startswith(("Detected at node", "File ", "[[", "Stack trace", "="))]
    text = re.sub(r"\s*\[(?:Op:|\[\{\{node)[^\]]*\]+\s*$", "", useful[0] if useful else (lines[0] if lines else ""))
    return (text or type(error).__name__)[:500]


def load_version(name: str, version: int, path: "Path | str") -> LoadedVersion:
    """Load a version from a local path or a URI (``gs://…``: bulk scoring inside a compiled pipeline)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from tensorflow.core.function.polymorphism.function_type import sanitize_arg_name

    loaded = tf.saved_model.load(str(path))
    with tf.io.gfile.GFile(f"{str(path).rstrip('/')}/saved_model.pb", "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    defs = proto.meta_graphs[0].signature_def
    signatures = {}
    for key, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        # Requests name inputs by the SignatureDef's keys, as TF Serving does (``od280/od315``, ``1st``); the
        # loaded function lists them as tf.function cleaned them (``arg_1st``) and accepts either.
        inputs = {k: kwargs[k] if k in kwargs else kwargs[sanitize_arg_name(k)] for k in defs[key].inputs}
        signatures[key] = Signature(fn=fn, inputs=inputs, outputs=sorted(fn.structured_outputs))
    # Keep the loaded object alive with its functions.
    version_obj = LoadedVersion(name, version, path, signatures, defs)
    version_obj._module = loaded  # type: ignore[attr-defined]
    return version_obj


@dataclass
class LoadFailure:
    """A version that failed to load: retried after ``retry_at`` (exponential back-off), or at once when its
    files change (a copy still in progress completes)."""

    message: str
    attempts: int
    retry_at: float
    files: Tuple[Tuple[str, int, int], ...]


RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


def version_files(path: Path) -> Tuple[Tuple[str, int, int], ...]:
    """(relative path, size, mtime_ns) of every file of a version directory: what changes while it is copied."""
    out = []
    for p in sorted(path.rglob("*")):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(out)


class Repository:
    """Loaded versions per model, refreshed from disk; thread-safe reads.

    Availability first: a version that fails to load (a ``saved_model.pb`` still being copied, ``variables/``
    not there yet, a corrupt file) never displaces a version that serves. The policy is applied to the
    versions that can be served — for ``latest``, the newest ones that did not fail — so the old version
    keeps answering while the new one is retried (back-off from 1 s to 60 s, and at once when its files
    change); every failure and every (re)load is logged. A version that appears after start-up is first
    tried once its files are unchanged across two polls, so a copy in progress (an ``assets/`` vocabulary
    still being written after ``variables/``) is not loaded half-way; writers that publish atomically (the
    Pusher renames a complete directory) cost one poll. The poller survives anything a directory listing can
    hold (``is_version_name``), and an unexpected error in one refresh is logged and the next one runs.
    """

    def __init__(self, entries: List[ModelEntry], clock: Any = None,
                 traffic: Optional[Dict[str, float]] = None) -> None:
        import time

        self.entries = {e.name: e for e in entries}
        total = sum((traffic or {}).values())
        self.traffic = {label: weight / total for label, weight in (traffic or {}).items()} if total else {}
        """Label -> share (summing to 1): how requests that name no version or label are split (``route``)."""
        self._warned: Dict[Tuple[str, str], float] = {}
        self._loaded: Dict[str, Dict[int, LoadedVersion]] = {e.name: {} for e in entries}
        self._errors: Dict[Tuple[str, int], LoadFailure] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._clock = clock or time.monotonic
        self._started = False
        self._seen: Dict[Tuple[str, int], Tuple[Tuple[str, int, int], ...]] = {}
        """Files of versions not loaded yet, as of the previous refresh (a copy in progress changes them)."""

    def _settled(self, name: str, version: int, path: Path) -> bool:
        """True when the version's files are the same as at the previous refresh (always at start-up)."""
        files = version_files(path)
        previous, self._seen[(name, version)] = self._seen.get((name, version)), files
        return not self._started or previous == files

    def _may_try(self, name: str, version: int) -> bool:
        """Not failing, or its back-off is over, or its files changed since it failed (``_settled`` read
        them this refresh)."""
        failure = self._errors.get((name, version))
        return failure is None or self._clock() >= failure.retry_at or self._seen[(name, version)] != failure.files

    def _servable(self, entry: ModelEntry, version: int) -> bool:
        """A version not loaded yet may be tried: its files have settled and it is not waiting to retry."""
        return self._settled(entry.name, version, entry.base_path / str(version)) and self._may_try(entry.name, version)

    def _load(self, entry: ModelEntry, version: int) -> Optional[LoadedVersion]:
        path = entry.base_path / str(version)
        files = self._seen[(entry.name, version)]  # read by _settled in this refresh
        try:
            loaded = load_version(entry.name, version, path)
        except Exception as e:  # a broken version stays unavailable; the others keep serving
            previous = self._errors.get((entry.name, version))
            attempts = (previous.attempts if previous else 0) + 1
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempts - 1))
            message = f"{type(e).__name__}: {e}"[:500]
            with self._lock:
                self._errors[(entry.name, version)] = LoadFailure(message, attempts, self._clock() + delay, files)
            logger.warning("model %s version %d failed to load (attempt %d; retry in %.0f s or when its files "
                           "change): %s", entry.name, version, attempts, delay, message)
            return None
        with self._lock:
            earlier = self._errors.pop((entry.name, version), None)
        self._seen.pop((entry.name, version), None)
        if earlier is not None:
            logger.info("model %s version %d loaded after earlier failures", entry.name, version)
        else:
            logger.info("model %s version %d loaded", entry.name, version)
        return loaded

    def refresh(self) -> None:
        for entry in list(self.entries.values()):
            available = available_versions(entry.base_path)
            with self._lock:
                for gone in [k for k in self._errors if k[0] == entry.name and k[1] not in available]:
                    del self._errors[gone]
            for gone in [k for k in self._seen if k[0] == entry.name and k[1] not in available]:
                del self._seen[gone]
            have = set(self._loaded[entry.name])
            # The policy over what can serve: versions already loaded, and those not failing right now whose
            # files have settled.
            servable = [v for v in available if v in have or self._servable(entry, v)]
            for version in wanted(entry, servable):
                if version in have:
                    continue
                loaded = self._load(entry, version)
                if loaded is not None:
                    with self._lock:
                        self._loaded[entry.name] = {**self._loaded[entry.name], version: loaded}
            with self._lock:
                current = self._loaded[entry.name]
                keep = wanted(entry, [v for v in available if v in current])
                self._loaded[entry.name] = {v: m for v, m in current.items() if v in keep}

    def _poll(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die: what serves keeps serving, the next poll retries
                logger.exception("refreshing the model repository failed; retrying in %.1f s", poll_seconds)

    def start(self, poll_seconds: float = 1.0) -> None:
        self.refresh()
        self._started = True
        self._thread = threading.Thread(target=self._poll, args=(poll_seconds,), name="sluice-model-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> LoadedVersion:
        """The servable for a request: a version, a label, or the newest loaded version."""
        if name not in self.entries:
            raise not_found(f"Servable not found for request: Latest({name})")
        with self._lock:
            loaded = self._loaded[name]
        if label is not None:
            labels = self.entries[name].labels
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is not None:
            if version not in loaded:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return loaded[version]
        if not loaded:
            raise ServingError("UNAVAILABLE", f"Servable not found for request: Latest({name}): no version loaded yet")
        return loaded[max(loaded)]

    def split(self, name: str) -> bool:
        """Whether requests to ``name`` that name no version or label are split by ``traffic``."""
        entry = self.entries.get(name)
        return bool(self.traffic) and entry is not None and all(label in entry.labels for label in self.traffic)

    def unloaded_labels(self, name: str) -> Dict[str, int]:
        """The ``traffic`` labels of ``name`` whose version is not loaded now (label -> version)."""
        labels = self.entries[name].labels
        with self._lock:
            loaded = self._loaded[name]
        return {label: labels[label] for label in self.traffic if labels[label] not in loaded}

    def route(self, name: str, version: Optional[int] = None, label: Optional[str] = None,
              draw: Optional[float] = None) -> LoadedVersion:
        """``resolve`` for a predict call: a request that names no version or label, to a model that has every
        label of ``traffic``, goes to a label drawn by weight (``stable=90,canary=10``).

        When the drawn label's version is not loaded, a label of a higher weight answers instead (of an equal
        weight: the one listed first), so a canary that failed to load gives its share to stable (logged); never
        one of a lower weight: were stable's version gone (a version policy that dropped it), promoting the
        canary to all traffic unnoticed is the one thing a canary must not do, so those requests are refused as
        UNAVAILABLE, naming the label."""
        if version is not None or label is not None or not self.split(name):
            return self.resolve(name, version, label)
        import random

        ordered = list(self.traffic.items())
        point = random.random() if draw is None else draw
        chosen, cumulative = len(ordered) - 1, 0.0
        for i, (_, weight) in enumerate(ordered):
            cumulative += weight
            if point < cumulative:
                chosen = i
                break
        drawn, weight = ordered[chosen]
        labels = self.entries[name].labels
        with self._lock:
            loaded = self._loaded[name]  # replaced, never mutated, by refresh(): a consistent snapshot
        if labels[drawn] in loaded:
            return loaded[labels[drawn]]
        # Heavier labels first, ties in the order given; only those ahead of the drawn label may stand in.
        ahead = sorted(((-w, i, lab) for i, (lab, w) in enumerate(ordered) if (-w, i) < (-weight, chosen)))
        instead = next((lab for _, _, lab in ahead if labels[lab] in loaded), None)
        self._warn_once(name, drawn, labels[drawn], instead)
        if instead is not None:
            return loaded[labels[instead]]
        raise ServingError("UNAVAILABLE", f"label {drawn} of {name} points at version {labels[drawn]}, which is not "
                           "loaded, and no label of a higher weight can answer for it")

    def _warn_once(self, name: str, label: str, version: int, instead: Optional[str]) -> None:
        """Say once a minute per label that the split cannot reach it (the split is the operator's intent)."""
        now = self._clock()
        key = (name, label)
        with self._lock:
            if now - self._warned.get(key, -math.inf) < 60.0:
                return
            self._warned[key] = now
        logger.warning("traffic split: %s label %s points at version %d, which is not loaded; its share %s", name,
                       label, version, f"goes to {instead}" if instead else "is refused (UNAVAILABLE)")

    def status(self, name: str, version: Optional[int] = None) -> List[Dict[str, Any]]:
        """TF Serving's ``model_version_status`` list (newest first)."""
        if name not in self.entries:
            raise not_found(f"Could not find any versions of model {name}")
        with self._lock:
            loaded = sorted(self._loaded[name], reverse=True)
            errors = {v: f.message for (n, v), f in self._errors.items() if n == name}
        rows = [{"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in loaded]
        rows += [{"version": str(v), "state": "END", "status": {"error_code": "UNKNOWN", "error_message": m}}
                 for v, m in sorted(errors.items(), reverse=True)]
        if version is not None:
            rows = [r for r in rows if r["version"] == str(version)]
            if not rows:
                raise not_found(f"Could not find version {version} of model {name}")
        if not rows:
            raise not_found(f"Could not find any versions of model {name}")
        return rows
