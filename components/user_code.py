"""Your code, by import path: ``code.preprocessing_fn``, ``code.model_fn`` and ``code.custom_objects``.

TFX's own way is a module file that it copies and fingerprints; sluice references code by import path (no
user-module wheel, the same path in the Kubeflow image), so your code is imported the same way — installed,
or on ``PYTHONPATH`` — and its source is part of the components' cache keys (``pipeline/code_version.py``).
A path that does not import stops the stage with a ``Refused`` naming the setting, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable

from sluice.components.refusal import Refused


def load(path: str, setting: str) -> Any:
    """The object at ``package.module.name``."""
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise Refused(setting, f"cannot import {module_name!r} ({e})",
                      "install the package that holds it, or add its folder to PYTHONPATH") from e
    except Exception as e:  # the module itself fails while importing (SyntaxError, NameError, …)
        raise Refused(setting, f"importing {module_name!r} failed: {type(e).__name__}: {e}",
                      "fix that module (import it in Python to see the traceback)") from e
    if not hasattr(module, attribute):
        raise Refused(setting, f"{module_name!r} has no {attribute!r}", f"check the name in {path!r}")
    return getattr(module, attribute)


def custom_objects(paths: Iterable[str]) -> Dict[str, Any]:
    """``{name: object}`` for ``keras.models.load_model``, importing each path (and so its registrations)."""
    return {path.rpartition(".")[2]: load(path, "code.custom_objects") for path in paths}
