"""docs/DEPLOY.md's submit snippets work with the pinned clients (kfp 2.5.0, google-cloud-aiplatform): each runs
verbatim on a pipeline compiled by `compile_kubeflow`, through the client's own code, up to the request it
would send (no server, no credentials)."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import types

import pytest

from tests.helpers import CONFIGS, ROOT

IMAGE = "europe-docker.pkg.dev/PROJECT/sluice/pipeline:1.0"
PIPELINE_ROOT = "gs://BUCKET/sluice/taxi-fare"  # the doc's root, so the Vertex snippet's override agrees


def _submit_snippets() -> dict:
    """The python code blocks of the "Submit" section, by client ("vertex", "kfp"). Found by heading text,
    not number, so a section added before it does not break the test."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    section = re.search(r"^## (?:\d+\. )?Submit\b.*?(?=^## |\Z)", text, re.M | re.S)
    assert section, "docs/DEPLOY.md has no Submit section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(0), re.M | re.S)
    snippets = {}
    for block in blocks:
        key = "vertex" if "aiplatform" in block else "kfp" if "kfp.Client" in block else None
        if key:
            snippets[key] = block
    assert set(snippets) == {"vertex", "kfp"}, f"expected a Vertex and a KFP snippet, found {sorted(snippets)}"
    return snippets


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """taxi_fare.json as section 3's `sluice compile` writes it (a PipelineJob wrapping the PipelineSpec)."""
    from sluice.pipeline.config import load_config
    from sluice.pipeline.kubeflow import compile_kubeflow

    out = tmp_path_factory.mktemp("compiled") / "taxi_fare.json"
    compile_kubeflow(load_config(CONFIGS / "taxi_fare.yaml"), IMAGE, PIPELINE_ROOT, out,
                     data="gs://bucket/data/{SPAN}/*.csv")  # spans: the gate compiles uncached
    return out


@pytest.fixture
def workdir(compiled, tmp_path, monkeypatch):
    """A fresh directory holding taxi_fare.json, the snippets' working directory."""
    shutil.copy(compiled, tmp_path / "taxi_fare.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(snippet: str) -> dict:
    namespace = {"__name__": "deploy_md_snippet"}
    exec(compile(snippet, "docs/DEPLOY.md", "exec"), namespace)
    return namespace


def test_kfp_2_5_refuses_the_compiled_file_as_it_is(workdir):
    """Why the KFP snippet unwraps: kfp 2.5.0's loader takes no .json, and the PipelineJob wrapper is not a
    PipelineSpec. If a kfp upgrade accepts either, the doc's explanation (and maybe its snippet) is stale."""
    from google.protobuf import json_format
    from kfp.client.client import _extract_pipeline_yaml

    with pytest.raises(ValueError, match=r"\.yaml"):
        _extract_pipeline_yaml("taxi_fare.json")
    shutil.copy("taxi_fare.json", "renamed.yaml")
    with pytest.raises(json_format.ParseError, match="displayName"):
        _extract_pipeline_yaml("renamed.yaml")


def test_kfp_snippet_sends_the_compiled_pipeline_with_its_root(workdir, monkeypatch):
    """The snippet runs against kfp.Client's own create_run_from_pipeline_package, run_pipeline and
    _create_job_config (which loads the package with _extract_pipeline_yaml); only the HTTP calls are
    replaced, and the run body they would send is checked."""
    import kfp

    sent = {}

    class _RunApi:
        def create_run(self, body):
            sent["run"] = body
            return types.SimpleNamespace(run_id="run-1")

    class OfflineClient(kfp.Client):
        def __init__(self, host=None, **kwargs):  # the real one connects to host
            inspect.signature(kfp.Client.__init__).bind(self, host, **kwargs)
            self._run_api = _RunApi()

        def create_experiment(self, name, description=None, namespace=None):
            return types.SimpleNamespace(experiment_id="experiment-1")

        def _get_url_prefix(self):
            return "https://kfp.invalid"

    monkeypatch.setattr(kfp, "Client", OfflineClient)
    _run(_submit_snippets()["kfp"])

    run = sent["run"]
    compiled = json.loads((workdir / "taxi_fare.json").read_text())
    spec = compiled["pipelineSpec"]
    assert run.pipeline_spec["pipelineInfo"]["name"] == spec["pipelineInfo"]["name"] == "taxi-fare"
    assert set(run.pipeline_spec["root"]["dag"]["tasks"]) == set(spec["root"]["dag"]["tasks"])
    assert run.pipeline_spec["deploymentSpec"] == spec["deploymentSpec"]
    # The compiled root travels with the run, or the Pusher's gs:// target and the artifacts part ways.
    assert run.runtime_config.pipeline_root == PIPELINE_ROOT
    assert run.service_account


def test_vertex_snippet_builds_the_pipeline_job_from_the_compiled_file(workdir, monkeypatch):
    """The snippet runs against aiplatform's own init and PipelineJob (which reads the file with its
    yaml_utils.load_yaml); credentials are anonymous and submit() only checks its arguments against the
    real signature, so nothing is sent."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), "PROJECT"))
    submitted = {}
    real_submit = aiplatform.PipelineJob.submit

    def offline_submit(self, *args, **kwargs):
        bound = inspect.signature(real_submit).bind(self, *args, **kwargs)
        submitted.update(bound.arguments)

    monkeypatch.setattr(aiplatform.PipelineJob, "submit", offline_submit)
    saved = dict(vars(initializer.global_config))  # aiplatform.init() sets process-wide defaults
    try:
        _run(_submit_snippets()["vertex"])
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)

    job = submitted["self"]
    assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == "taxi-fare"
    tasks = job._gca_resource.pipeline_spec["root"]["dag"]["tasks"]
    # the span ledger's gate stays uncached (enable_caching= in the snippet would turn every task's cache on)
    assert tasks["DataGate"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["Transform"]["cachingOptions"]["enableCache"] is True
    assert job._gca_resource.runtime_config.gcs_output_directory == PIPELINE_ROOT
    assert submitted["service_account"].endswith(".iam.gserviceaccount.com")
