"""serving/ production files parse with TF Serving's own protos (and YAML for Kubernetes), and agree with each
other and with the config: a typo fails CI, not a deployment."""

from __future__ import annotations

import re

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
    import pytest

    with pytest.raises(text_format.ParseError):  # the check can fail: a typo is an error
        text_format.Parse("max_batch_sise { value: 1 }", BatchingParameters())


def test_dockerfile_serves_the_config_files_it_copies():
    text = (SERVING / "Dockerfile").read_text()
    assert re.search(r"^FROM tensorflow/serving:2\.16\.\d+$", text, re.M)
    copies = re.findall(r"^COPY (\S+) (\S+)$", text, re.M)
    targets = {dst for _, dst in copies}
    for src, _ in copies:
        assert src.startswith("output/") or (ROOT / src).exists(), src
    for flag, path in re.findall(r"--(model_config_file|batching_parameters_file)=(\S+?)\"", text):
        assert path in targets, (flag, path)
    assert "--port=8500" in text and "--rest_api_port=8501" in text and "--enable_model_warmup=true" in text
    assert "EXPOSE 8500 8501" in text


def test_kubernetes_manifests_probe_the_model_status_endpoint():
    deployment = yaml.safe_load((SERVING / "k8s" / "deployment.yaml").read_text())
    service = yaml.safe_load((SERVING / "k8s" / "service.yaml").read_text())
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"] == service["spec"]["selector"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/v1/models/taxi_fare" and probe["port"] in ports
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
