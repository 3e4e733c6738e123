"""The fingerprint of the code a component runs: its module closure inside sluice.

Transform, the Trainer and sluice's own components are referenced by import path (so a Kubeflow image needs
no user-module wheel), which means TFX cannot see their code. Each component's contract therefore carries
``code_version``, a hash of the source files the component's entry module reaches: its imports (at any depth,
lazy ones included) and the sluice modules it names as strings — ``python -m sluice.…`` subprocesses, TFMA's
custom metric module, ``run_fn`` paths. Editing ``components/pusher.py`` changes the Pusher's fingerprint
only; editing ``components/features.py`` changes Transform's, the Trainer's and every other one that uses it.

Pure standard library (``ast``): no module is imported, so this is cheap and runs before TensorFlow loads.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
# sluice's import names -> source folders: pyproject's package-dir in a checkout (``sluice/__init__.py`` in
# its own folder); in a wheel the top package's folder is ROOT itself.
PACKAGES = {"sluice.pipeline": ROOT / "pipeline", "sluice.components": ROOT / "components",
            "sluice.serving": ROOT / "serving",
            "sluice": ROOT / "sluice" if (ROOT / "sluice" / "__init__.py").is_file() else ROOT}
_DOTTED = re.compile(r"^sluice(\.[A-Za-z_][A-Za-z0-9_]*)+$")

# Each component node's entry point(s). Everything they reach is found by ``closure``.
COMPONENT_CODE: Dict[str, Tuple[str, ...]] = {
    "DataGate": ("sluice.components.data_gate",),
    "SpanWindow": ("sluice.components.span_window_step",),
    "Transform": ("sluice.components.transform",),
    "Tuner": ("sluice.components.trainer.tuning",),
    "Trainer": ("sluice.components.trainer.run_fn",),
    "Evaluator": ("sluice.components.evaluator",),
    "ModelExport": ("sluice.components.export.component",),
    "InfraCheck": ("sluice.components.infra_check",),
    "Pusher": ("sluice.components.pusher",),
    "BulkScore": ("sluice.components.bulk_score", "sluice.serving.batch"),
}


def module_file(name: str) -> Optional[Path]:
    """The source file of a sluice module (``pkg/__init__.py`` for a package), None when there is none."""
    for prefix in sorted(PACKAGES, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            base = PACKAGES[prefix].joinpath(*name[len(prefix):].strip(".").split(".")) if name != prefix \
                else PACKAGES[prefix]
            for candidate in (base.with_suffix(".py") if name != prefix else None, base / "__init__.py"):
                if candidate is not None and candidate.is_file():
                    return candidate
            return None
    return None


def _resolve(name: str) -> Optional[str]:
    """A dotted name -> the sluice module it is or lives in (``pkg.mod.function`` -> ``pkg.mod``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if module_file(candidate) is not None:
            return candidate
        parts.pop()
    return None


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _references(name: str, path: Path) -> List[str]:
    """Sluice modules ``name`` imports or names: import statements anywhere, and dotted string constants."""
    found: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(name, path).split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import module``
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            found.append(node.value)
    modules = []
    for ref in found:
        if ref == "sluice" or ref.startswith("sluice."):
            resolved = _resolve(ref)
            # The top package is always a parent; followed, its lazy-loading names would pull in every
            # artifact module (``"sluice.DataVerdict"`` type names resolve to it).
            if resolved is not None and resolved != "sluice":
                modules.append(resolved)
    return modules


def closure(entries: Iterable[str]) -> List[str]:
    """Every sluice module the entries reach, sorted, with the packages whose ``__init__`` runs on the way.

    A package reached only as a parent is hashed but not followed: ``sluice/__init__.py`` names the artifact
    modules for lazy loading, which must not put DataGate's code into every component's closure."""
    seen, parents = set(), set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            raise ValueError(f"{name}: not a sluice module")
        seen.add(name)
        parents.update(p for p in (".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
                       if module_file(p) is not None)
        todo.extend(_references(name, path))
    return sorted(seen | parents)


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(modules: Iterable[str]) -> str:
    """Hash of the modules' source files (names and contents)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        path = module_file(name)
        assert path is not None
        h.update(name.encode() + b"\0" + _file_digest(path, path.stat().st_mtime_ns).encode() + b"\0")
    return h.hexdigest()[:12]


def component_code_version(node_id: str) -> str:
    """The ``code_version`` of a component node (see ``COMPONENT_CODE``)."""
    return fingerprint(closure(COMPONENT_CODE[node_id]))


def user_code_version(paths: Iterable[Optional[str]]) -> str:
    """Fingerprint of your code named in the config (``code:``): every ``.py`` file of each import path's
    top-level package (so an edit to a module yours imports counts too), found on ``sys.path`` without
    importing anything. A package that cannot be found hashes as missing (the component then says so)."""
    import sys

    h = hashlib.sha256()
    for top in sorted({p.split(".")[0] for p in paths if p}):
        files: List[Path] = []
        root = Path(".")
        for entry in sys.path:
            root = Path(entry or ".")
            try:
                if (root / top).is_dir():
                    files = sorted(f for f in (root / top).rglob("*.py") if "__pycache__" not in f.parts)
                elif (root / f"{top}.py").is_file():
                    files = [root / f"{top}.py"]
            except OSError:
                continue
            if files:
                break
        h.update(top.encode() + b"\0" + (b"missing" if not files else b""))
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + _file_digest(f, f.stat().st_mtime_ns).encode() + b"\0")
    return h.hexdigest()[:12]


def package_fingerprint() -> str:
    """Hash of every sluice source file (the no-op re-run check: any code change runs the pipeline)."""
    names = []
    for prefix, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            rel = f.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.append(".".join([prefix, *parts]) if parts else prefix)
    return fingerprint(n for n in names if module_file(n) is not None)
