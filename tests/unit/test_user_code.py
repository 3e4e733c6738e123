"""`code:` in the config: import paths validated up front, resolved with a one-screen refusal, and part of the
components' cache keys (editing your module re-runs the components that use it)."""

from __future__ import annotations

import copy

import pytest
import yaml

from sluice.components import user_code
from sluice.components.refusal import Refused
from sluice.pipeline.code_version import user_code_version
from sluice.pipeline.config import parse_config
from sluice.pipeline.errors import ConfigError
from tests.helpers import CONFIGS


def _raw(code):
    raw = copy.deepcopy(yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text()))
    raw["code"] = code
    return raw


def test_code_reaches_only_the_contracts_that_use_it():
    config = parse_config(_raw({"preprocessing_fn": "pkg.prep.fn", "model_fn": "pkg.models.build",
                                "custom_objects": ["pkg.layers.Gate"]}))
    assert config.transform_contract().preprocessing_fn == "pkg.prep.fn"
    assert config.trainer_contract().code.model_fn == "pkg.models.build"
    # Precise caching: another preprocessing_fn changes Transform's contract, not the Trainer's (its input
    # changes instead: a new transform graph).
    assert "preprocessing_fn" not in config.trainer_contract().to_json()
    export = config.export_contract()
    assert export.custom_preprocessing and export.code.custom_objects == ["pkg.layers.Gate"]
    plain = parse_config(_raw({}))
    assert plain.transform_contract().preprocessing_fn is None and not plain.export_contract().custom_preprocessing


@pytest.mark.parametrize("code", [{"model_fn": "build"}, {"preprocessing_fn": "a b.c", "model_fn": "a.b"},
                                  {"custom_objects": ["x"]}, {"module_file": "x.py"},
                                  {"preprocessing_fn": "pkg.prep.fn"}])  # sluice's model cannot read its outputs
def test_bad_code_settings_are_config_errors(code):
    with pytest.raises(ConfigError):
        parse_config(_raw(code))


def test_load_resolves_and_refuses_with_the_setting():
    assert user_code.load("tests.usercode.custom.model_fn", "code.model_fn").__name__ == "model_fn"
    with pytest.raises(Refused) as exc:
        user_code.load("tests.usercode.nowhere.fn", "code.model_fn")
    assert exc.value.where == "code.model_fn" and "cannot import 'tests.usercode.nowhere'" in exc.value.problem
    with pytest.raises(Refused, match="has no 'missing'"):
        user_code.load("tests.usercode.custom.missing", "code.preprocessing_fn")
    assert set(user_code.custom_objects(["tests.usercode.custom.Interaction"])) == {"Interaction"}


def test_your_package_is_in_the_fingerprint_without_being_imported(tmp_path, monkeypatch):
    package = tmp_path / "teamcode"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")  # hashing must not run it
    (package / "model.py").write_text("from teamcode.layers import Gate\ndef build(spec, contract):\n    return None\n")
    (package / "layers.py").write_text("class Gate:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = user_code_version(["teamcode.model.build"])
    assert user_code_version(["teamcode.model.build", None]) == first
    (package / "layers.py").write_text("class Gate:\n    factor = 2\n")  # a module yours imports changed
    second = user_code_version(["teamcode.model.build"])
    assert second != first
    assert user_code_version(["nosuchteam.model.build"]) not in (first, second)  # missing: hashed as such


def test_a_module_that_fails_while_importing_is_refused(tmp_path, monkeypatch):
    (tmp_path / "brokenteam.py").write_text("def build(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Refused) as exc:
        user_code.load("brokenteam.build", "code.model_fn")
    assert "importing 'brokenteam' failed: SyntaxError" in exc.value.problem
