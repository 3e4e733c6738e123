"""serving/ production files parse with TF Serving's own protos (and YAML for Kubernetes), and agree with each
other and with the config: a typo fails CI, not a deployment. The images build from a clean checkout (the
build context that .dockerignore leaves holds everything they copy) and the pods turn ready only when the
model can answer."""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath
from typing import List, Tuple

import pytest
import yaml
from google.protobuf import text_format

from tests.helpers import ROOT

SERVING = ROOT / "serving"


def test_models_config_is_a_model_server_config_for_the_shipped_model():
    from tensorflow_serving.config import model_server_config_pb2

    from sluice.pipeline.config import load_config
    from sluice.serving.repository import read_model_config

    config = text_format.Parse((SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    entries = config.model_config_list.config
    assert [e.name for e in entries] == [load_config(ROOT / "configs" / "taxi_fare.yaml").model_name]
    assert entries[0].base_path == "/models/taxi_fare" and entries[0].model_platform == "tensorflow"
    assert entries[0].model_version_policy.latest.num_versions == 2
    parsed = read_model_config(SERVING / "models.config", ROOT / "output" / "serving")
    assert parsed[0].policy == "latest" and parsed[0].num_versions == 2


def _batching_parameters_class():
    """``tensorflow.serving.BatchingParameters`` (session_bundle_config.proto). The tensorflow-serving-api wheel
    ships the API and config protos but not this one, so its published fields are declared here and the
    message class is built by protobuf itself; text_format then rejects any unknown or mistyped field."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    fields = [("max_batch_size", 1, ".google.protobuf.Int64Value"),
              ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
              ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
              ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
              ("thread_pool_name", 5, ".google.protobuf.StringValue"),
              ("allowed_batch_sizes", 6, None), ("pad_variable_length_inputs", 7, None)]
    file = descriptor_pb2.FileDescriptorProto(name="sluice_test/batching.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    for name, number, type_name in fields:
        field = message.field.add(name=name, number=number)
        if type_name:
            field.type, field.type_name, field.label = F.TYPE_MESSAGE, type_name, F.LABEL_OPTIONAL
        elif name == "allowed_batch_sizes":
            field.type, field.label = F.TYPE_INT64, F.LABEL_REPEATED
        else:
            field.type, field.label = F.TYPE_BOOL, F.LABEL_OPTIONAL
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_config_is_batching_parameters():
    BatchingParameters = _batching_parameters_class()
    params = text_format.Parse((SERVING / "batching.config").read_text(), BatchingParameters())
    assert params.max_batch_size.value == 256 and params.batch_timeout_micros.value > 0
    assert params.num_batch_threads.value >= 1
    with pytest.raises(text_format.ParseError):  # the check can fail: a typo is an error
        text_format.Parse("max_batch_sise { value: 1 }", BatchingParameters())


def _instructions(dockerfile: Path) -> List[Tuple[str, List[str]]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, backslash continuations joined, comments dropped."""
    logical, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending)
        pending = ""
    return [(words[0].upper(), words[1:]) for words in (shlex.split(text, posix=False) for text in logical)]


def _copy_sources(dockerfile: Path) -> List[Tuple[str, str]]:
    """(source, destination) of every COPY/ADD from the build context (not ``--from=`` another stage)."""
    pairs = []
    for instruction, args in _instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        flags = [a for a in args if a.startswith("--")]
        paths = [a for a in args if not a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        pairs += [(src, paths[-1]) for src in paths[:-1]]
    return pairs


def _checkout_files(path: str) -> List[str]:
    """Files under ``path`` that a clean checkout has: tracked, or new and not ignored by .gitignore (so a
    file that is about to be committed counts, a build output such as output/ never does)."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
                                 "-z", "--", path.rstrip("/") or "."], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs git and a git checkout to know what a clean checkout holds")
    return [f for f in listed.stdout.split("\0") if f]


def _dockerignore_patterns() -> List[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _dockerignored(path: str, patterns: List[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides (``!`` keeps).
    fnmatch's ``*`` also crosses ``/``, so this over-reports ignored paths, never under-reports them."""
    parts = PurePosixPath(path.rstrip("/")).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        pattern = posixpath.normpath(pattern.lstrip("!").strip("/"))
        variants = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            ignored = not keep
    return ignored


def test_dockerfile_builds_from_a_clean_checkout_and_serves_the_config_it_copies():
    dockerfile = SERVING / "Dockerfile"
    text = dockerfile.read_text()
    assert re.search(r"^FROM tensorflow/serving:2\.16\.\d+$", text, re.M)
    copies = _copy_sources(dockerfile)
    assert copies, "serving/Dockerfile copies its configuration in"
    for src, _ in copies:  # models come from the base path at run time, never from a local run's output/
        assert not src.startswith("output"), src
        assert _checkout_files(src), f"{src} is not in a clean checkout"
    targets = {dst for _, dst in copies}
    for flag, path in re.findall(r"--(model_config_file|batching_parameters_file)=(\S+?)\"", text):
        assert path in targets, (flag, path)
    assert "--port=8500" in text and "--rest_api_port=8501" in text and "--enable_model_warmup=true" in text
    assert "EXPOSE 8500 8501" in text


def _serving_user() -> Tuple[int, int]:
    """The uid:gid the serving image runs as (its last USER), which must be numeric for runAsNonRoot."""
    users = [args[0] for instruction, args in _instructions(SERVING / "Dockerfile") if instruction == "USER"]
    assert users, "serving/Dockerfile must not run as the base image's root"
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"USER {users[-1]}: numeric uid:gid, so Kubernetes can verify runAsNonRoot"
    return int(match.group(1)), int(match.group(2))


def test_serving_image_and_pods_run_as_a_non_root_user():
    uid, gid = _serving_user()
    assert uid != 0 and gid != 0
    kinds = [instruction for instruction, _ in _instructions(SERVING / "Dockerfile")]
    assert max(i for i, k in enumerate(kinds) if k == "USER") < kinds.index("ENTRYPOINT")
    pod = yaml.safe_load((SERVING / "k8s" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and (security["runAsUser"], security["runAsGroup"]) == (uid, gid)


def test_dockerignore_keeps_out_local_state_and_nothing_either_dockerfile_copies():
    patterns = _dockerignore_patterns()
    for local in (".venv", "output/serving/taxi_fare/1/saved_model.pb", ".git", "benchmarks/work",
                  "pipeline/__pycache__/cli.cpython-310.pyc", "sluice.egg-info"):
        assert _dockerignored(local, patterns), local
    for dockerfile in (ROOT / "Dockerfile", SERVING / "Dockerfile"):
        for src, _ in _copy_sources(dockerfile):
            files = _checkout_files(src)
            assert files, f"{dockerfile.name}: COPY {src} is not in a clean checkout"
            ignored = [f for f in [src] + files if _dockerignored(f, patterns)]
            assert not ignored, f".dockerignore drops what {dockerfile.relative_to(ROOT)} copies: {ignored[:5]}"


def test_dockerignore_matching_follows_dockers_rules():  # the helper above must be able to say "ignored"
    assert _dockerignored("pipeline/cli.py", ["pipeline"])
    assert _dockerignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert _dockerignored("__pycache__/x.pyc", ["**/__pycache__"])
    assert not _dockerignored("pipeline/cli.py", ["pipeline", "!pipeline/cli.py"])
    assert not _dockerignored("pipelines.md", ["pipeline"])


MODEL_READY_PATH = "/v1/models/{model}/metadata"
"""The probe path that answers 200 only once a version is AVAILABLE (loaded and warmed up); see the comment
in serving/k8s/deployment.yaml for the TF Serving source it was verified against. ``/v1/models/{model}`` (model
status) is not it: that answers 200 while a version is LOADING, or has failed (state END)."""


def test_kubernetes_manifests_are_ready_only_when_a_version_is_available():
    from sluice.pipeline.config import load_config

    model = load_config(ROOT / "configs" / "taxi_fare.yaml").model_name
    deployment = yaml.safe_load((SERVING / "k8s" / "deployment.yaml").read_text())
    service = yaml.safe_load((SERVING / "k8s" / "service.yaml").read_text())
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"] == service["spec"]["selector"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)

    for kind in ("startupProbe", "readinessProbe"):
        probe = container[kind]["httpGet"]
        assert probe["path"] == MODEL_READY_PATH.format(model=model) and ports.get(probe["port"]) == 8501, kind
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "big models need minutes to load"
    # Liveness is the process: an unloadable new version must not restart pods that still serve the old one.
    liveness = container["livenessProbe"]
    assert "metadata" not in str(liveness) and (liveness.get("tcpSocket") or liveness.get("httpGet"))

    # The models come from models.config's base_path: a volume mounted there (or a gs:// base path).
    config = (SERVING / "models.config").read_text()
    base_path = re.search(r'base_path: "([^"]+)"', config).group(1)
    if not base_path.startswith("gs://"):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert base_path in mounts and mounts[base_path].get("readOnly") is True
        volumes = {v["name"] for v in pod["spec"]["volumes"]}
        assert mounts[base_path]["name"] in volumes
