"""One protocol for the four gates' verdicts: DataGate, the Evaluator's blessing, TFLite parity, InfraCheck.

Each gate writes one JSON file into its output artifact with the same two fields on top of its own —
``gate`` (which gate) and ``passed`` (bool) — plus ``failures`` (one line each, or records with ``slice`` /
``metric`` for the Evaluator). The file names stay what users and TF Serving bundles already know
(``parity.json`` ships beside every TFLite model). ``write`` and ``read`` are the only code that touches
these files; the run summary, reports and the Pusher read through ``read``. Any filesystem (``fileio``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from sluice.components import artifact_io as aio

FILES = {
    "data": "verdict.json",
    "evaluation": "sluice_gate.json",
    "parity": "parity.json",
    "infra": "infra_check.json",
}


def path(artifact_uri: str, gate: str) -> str:
    return aio.join(artifact_uri, FILES[gate])


def write(artifact_uri: str, gate: str, verdict: Mapping[str, Any], passed: bool) -> Dict[str, Any]:
    """Write ``verdict`` (with ``gate`` and ``passed``) into the artifact; returns what was written."""
    body = {**verdict, "gate": gate, "passed": bool(passed)}
    body.setdefault("failures", [])
    aio.write_text(path(artifact_uri, gate), json.dumps(body, indent=1))
    return body


def read(artifact_uri: str, gate: str) -> Optional[Dict[str, Any]]:
    """The gate's verdict in the artifact, or None when it wrote none (a failed execution, another
    executor). An unreadable file raises: a verdict that exists but cannot be read is not a pass."""
    from tfx.dsl.io import fileio

    where = path(artifact_uri, gate)
    if not fileio.exists(where):
        return None
    body = aio.read_json(where)
    if isinstance(body, dict) and "passed" not in body and isinstance(body.get("blessed"), bool):
        body["passed"] = body["blessed"]  # written before this protocol (Evaluator, InfraCheck): same meaning
    if not isinstance(body, dict) or not isinstance(body.get("passed"), bool):
        raise ValueError(f"{where}: not a sluice verdict (no boolean 'passed')")
    return body
