"""components/artifact_io.py on ram:// (TF's in-memory filesystem, which builtin I/O cannot see), and a guard
that builtin file calls in components/ stay on local scratch paths."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from sluice.components import artifact_io as aio
from tests.helpers import ROOT


@pytest.fixture()
def ram() -> str:
    return f"ram://aio-{uuid.uuid4().hex[:8]}"


def test_write_text_replaces_a_longer_file(ram):
    """ram:// keeps the old tail of a file opened for writing; a replaced file must hold exactly the new text."""
    aio.write_text(f"{ram}/f.json", '{"a": 1, "long": "xxxxxxxxxxxxxxxx"}')
    aio.write_text(f"{ram}/f.json", '{"a": 2}')
    assert aio.read_json(f"{ram}/f.json") == {"a": 2}


def test_copy_tree_copies_every_file_and_the_named_ones_last(ram, tmp_path):
    src = tmp_path / "model"
    for rel in ("saved_model.pb", "variables/variables.index", "assets/vocab", "assets.extra/warmup", "z.json"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    order = aio.copy_tree(str(src), f"{ram}/v", last=("saved_model.pb", "z.json"))
    assert order[-2:] == ["saved_model.pb", "z.json"] and sorted(order) == aio.files_under(f"{ram}/v")
    # "assets" beside "assets.extra": ram:// lists a phantom "assets/.extra"; only real files are reported.
    assert aio.files_under(f"{ram}/v") == sorted(
        ["saved_model.pb", "variables/variables.index", "assets/vocab", "assets.extra/warmup", "z.json"])
    assert aio.read_text(f"{ram}/v/assets.extra/warmup") == "assets.extra/warmup"


def test_keep_logs_uploads_logs_and_never_raises(ram, tmp_path, monkeypatch):
    (tmp_path / "a.log").write_text("a")
    (tmp_path / "model.tflite").write_bytes(b"x")
    aio.keep_logs(str(tmp_path), f"{ram}/logs")
    assert aio.files_under(f"{ram}/logs") == ["a.log"]

    def broken(source, target):
        raise OSError("bucket unreachable")

    monkeypatch.setattr(aio, "copy_file", broken)
    aio.keep_logs(str(tmp_path), f"{ram}/other")  # called from finally: must not replace the real error


def test_copy_file_names_a_missing_source(ram):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        aio.copy_file(f"{ram}/nothing-here", f"{ram}/target")


# Builtin file calls allowed in components/, by function: each works on a local scratch path that its
# caller created with tempfile (or a subprocess's own job file), never on an artifact URI.
LOCAL_SCRATCH = {
    ("artifact_io.py", "keep_logs"): "lists the caller's local work dir; uploads with fileio",
    ("export/tflite.py", "convert"): "writes the converter output into the local work dir",
    ("export/tflite.py", "main"): "the conversion subprocess reads its local job file",
    ("export/tflite.py", "run_job"): "the conversion subprocess writes into the caller's local work dir",
    ("export/tflite.py", "archive_done"): "the archive step's marker in the local work dir",
    ("export/tflite.py", "run_step"): "job file and log in the caller's local work dir",
    ("export/component.py", "export_variants"): "the local work dir of the converter subprocesses",
    ("infra_check.py", "start_server"): "the server log in the local work dir",
    ("infra_check.py", "check"): "the local model tree the server process serves",
    ("trainer/launcher.py", "run_workers"): "worker job file and logs (local: launch passes a local dir)",
    ("trainer/train.py", "train"): "a non-chief worker's scratch model dir from tempfile.mkdtemp",
    ("trainer/worker.py", "main"): "the worker process reads its local job file",
    ("step_process.py", "start"): "a child process's log in the caller's local work dir",
    ("step_process.py", "log_lines"): "reads that local log back",
}
_BUILTIN_IO = {"open", "os.makedirs", "os.listdir", "os.remove", "os.rename", "os.replace", "os.path.exists",
               "os.path.isdir", "os.path.isfile", "os.path.getsize", "os.path.abspath", "os.path.realpath", "os.stat",
               "os.symlink", "os.walk", "glob.glob", "shutil.copy", "shutil.copy2", "shutil.copyfile",
               "shutil.copytree", "shutil.rmtree", "shutil.move"}


_PATH_METHODS = (".read_text", ".write_text", ".read_bytes", ".write_bytes", ".open", ".mkdir", ".iterdir",
                 ".unlink", ".rglob", ".glob", ".exists", ".is_file", ".is_dir", ".stat", ".rename", ".resolve")
_FILESYSTEM_API = ("aio.", "artifact_io.", "fileio.", "tf.io.gfile.", "io_utils.", "gfile.")


def _calls(tree: ast.AST):
    """(enclosing function, dotted call name) for every builtin-I/O-looking call in a module: the builtins
    above, and pathlib-style methods on anything that is not a filesystem API module."""
    def name(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{name(node.value)}.{node.attr}"
        if isinstance(node, ast.Call):
            return name(node.func) + "()"
        return "?"

    def walk(node: ast.AST, function: str):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                called = name(child.func)
                if called in _BUILTIN_IO or (called.endswith(_PATH_METHODS) and not called.startswith(_FILESYSTEM_API)):
                    yield function, called
            yield from walk(child, inner)

    yield from walk(tree, "<module>")


def test_builtin_file_calls_in_components_stay_on_local_scratch():
    found = {}
    for path in sorted((ROOT / "components").rglob("*.py")):
        rel = path.relative_to(ROOT / "components").as_posix()
        for function, call in _calls(ast.parse(path.read_text())):
            found.setdefault((rel, function), set()).add(call)
    unexpected = {k: sorted(v) for k, v in found.items() if k not in LOCAL_SCRATCH}
    assert not unexpected, ("builtin file I/O outside the local-scratch functions (artifact URIs may be gs://: use "
                            f"components/artifact_io.py): {unexpected}")
    assert set(LOCAL_SCRATCH) >= set(found)  # and the list names nothing that no longer needs it:
    assert not set(LOCAL_SCRATCH) - set(found), set(LOCAL_SCRATCH) - set(found)


def test_training_workers_of_a_remote_run_work_locally_and_their_logs_reach_the_artifact(ram, monkeypatch):
    """On Vertex the Trainer's model_run dir is gs://: worker processes get a local work dir, and their logs
    are uploaded even when training fails (the failure itself still propagates)."""
    import yaml

    from sluice.components.settings import TrainingConfig
    from sluice.components.trainer import launcher
    from sluice.pipeline.config import parse_config
    from tests.helpers import CONFIGS

    seen = {}

    def failing_workers(job, workdir, timeout_s=None):
        seen["workdir"] = workdir
        Path(workdir, "worker-0.log").write_text("worker 0 diverged")
        raise launcher.WorkerFailed("training worker 0 exited with status 3")

    class Job:  # only what launch() reads
        contract = parse_config(yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text()),
                                base_dir=str(CONFIGS)).trainer_contract()
        contract = contract.model_copy(update={"training": TrainingConfig(strategy="multi_worker", loop="custom")})

    monkeypatch.setattr(launcher, "run_workers", failing_workers)
    with pytest.raises(launcher.WorkerFailed, match="status 3"):
        launcher.launch(Job(), f"{ram}/model_run/workers")
    assert aio.is_local(seen["workdir"]) and not Path(seen["workdir"]).exists()  # a temp dir, removed after
    assert aio.read_text(f"{ram}/model_run/workers/worker-0.log") == "worker 0 diverged"
