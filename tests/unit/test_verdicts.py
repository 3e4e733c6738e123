"""The gates' verdict protocol: one writer, one reader, any filesystem, and no reading a broken file as a pass."""

from __future__ import annotations

import json
import uuid

import pytest

from sluice.components import artifact_io as aio, verdicts


@pytest.fixture(params=["local", "ram"])
def where(request, tmp_path):
    return str(tmp_path / "artifact") if request.param == "local" else f"ram://verdicts-{uuid.uuid4().hex[:8]}/a"


@pytest.mark.parametrize("gate", sorted(verdicts.FILES))
def test_every_gate_writes_and_reads_the_same_shape(where, gate):
    written = verdicts.write(where, gate, {"rows": 3, "failures": ["x: too far"]}, passed=False)
    assert written == {"rows": 3, "failures": ["x: too far"], "gate": gate, "passed": False}
    assert verdicts.read(where, gate) == written
    assert verdicts.read(where, "data" if gate != "data" else "parity") is None  # another gate's file: absent


def test_a_verdict_that_cannot_be_read_is_never_a_pass(where):
    aio.write_text(verdicts.path(where, "parity"), '{"passed": "yes"}')
    with pytest.raises(ValueError, match="not a sluice verdict"):
        verdicts.read(where, "parity")
    aio.write_text(verdicts.path(where, "infra"), '{"passed": tru')
    with pytest.raises(ValueError):
        verdicts.read(where, "infra")


def test_verdicts_written_before_the_protocol_keep_their_meaning(where):
    aio.write_text(verdicts.path(where, "infra"), json.dumps({"blessed": False, "failures": ["grpc: refused"]}))
    assert verdicts.read(where, "infra")["passed"] is False
