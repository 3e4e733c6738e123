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


def test_local_copy_brings_a_remote_tree_to_disk_and_removes_it(ram):
    aio.write_text(f"{ram}/tree/a/b.txt", "b")
    with aio.local_copy(f"{ram}/tree") as local:
        assert Path(local, "a", "b.txt").read_text() == "b"
    assert not Path(local).exists()


def test_copy_file_names_a_missing_source(ram):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        aio.copy_file(f"{ram}/nothing-here", f"{ram}/target")


# Builtin file calls allowed in components/, by function: each works on a local scratch path that its
# caller created with tempfile (or a subprocess's own job file), never on an artifact URI.
LOCAL_SCRATCH = {
    ("export/tflite.py", "convert"): "writes the converter output into the local work dir",
    ("export/tflite.py", "main"): "the conversion subprocess reads its local job file",
    ("export/tflite.py", "run_step"): "job file and log in the caller's local work dir",
    ("export/component.py", "export_variants"): "the local work dir of the converter subprocesses",
    ("infra_check.py", "start_server"): "the server log in the local work dir",
    ("infra_check.py", "check"): "the local model tree the server process serves",
    ("trainer/launcher.py", "launch"): "worker logs in a local temp dir, uploaded with fileio",
    ("trainer/launcher.py", "run_workers"): "worker job file and logs (local: launch passes a local dir)",
    ("trainer/launcher.py", "_tail"): "a worker's local log",
    ("trainer/train.py", "train"): "a non-chief worker's scratch model dir from tempfile.mkdtemp",
    ("trainer/worker.py", "main"): "the worker process reads its local job file",
}
_BUILTIN_IO = {"open", "os.makedirs", "os.listdir", "os.remove", "os.rename", "os.path.exists", "os.path.isdir",
               "os.walk", "glob.glob", "shutil.copy", "shutil.copytree", "shutil.rmtree", "shutil.move"}


_PATH_METHODS = (".read_text", ".write_text", ".read_bytes", ".write_bytes", ".open", ".mkdir", ".iterdir",
                 ".unlink", ".rglob", ".glob")
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
