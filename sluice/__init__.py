"""sluice: CSV in; a validated, evaluated model out, as a TFX 1.16 pipeline.

The code lives in ``pipeline/``, ``components/`` and ``serving/`` (installed as ``sluice.pipeline``, …; see
pyproject's ``package-dir``). This top-level module exists for one reason: on Kubeflow/Vertex, TFX's container
entrypoint finds a custom artifact type's class by importing its type name, which must be ``<namespace>.<Class>``
(``tfx.orchestration.kubeflow.v2.container.kubeflow_v2_entrypoint_utils._retrieve_class_path``). sluice's
artifact types are named ``sluice.DataVerdict`` and ``sluice.ExportedModel``, so they must be attributes of
this module. They are loaded on first access (PEP 562), so ``import sluice`` stays free of TensorFlow.
"""

from __future__ import annotations

from typing import Any

_ARTIFACT_TYPES = {
    "DataVerdict": "sluice.components.data_gate",
    "ExportedModel": "sluice.components.export.component",
}


def __getattr__(name: str) -> Any:
    if name in _ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'sluice' has no attribute {name!r}")
