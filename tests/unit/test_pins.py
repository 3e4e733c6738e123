"""One source of truth for versions: pyproject's pins agree with constraints.txt."""

from __future__ import annotations

import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (TFX 1.16): tomli comes with the pinned set
    import tomli as tomllib

from tests.helpers import ROOT

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _pyproject_pins() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    pins = {}
    for req in reqs:
        m = _PIN.match(req)
        assert m, f"pyproject dependency {req!r} is not pinned with =="
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_every_direct_dependency_is_pinned_to_the_constraints_version():
    constraints = _constraints()
    for name, version in _pyproject_pins().items():
        assert name in constraints, f"{name} is in pyproject.toml but not in constraints.txt"
        assert constraints[name] == version, f"{name}: pyproject {version} != constraints {constraints[name]}"


def test_tfx_116_tested_set():
    c = _constraints()
    expected = {"tfx": "1.16.0", "tensorflow": "2.16.2", "keras": "3.6.0", "tf-keras": "2.16.0",
                "apache-beam": "2.59.0", "kfp": "2.5.0", "protobuf": "3.20.3", "numpy": "1.26.4"}
    assert {k: c.get(k) for k in expected} == expected


def test_installed_versions_match_constraints():
    from importlib import metadata

    c = _constraints()
    for name in ("tfx", "tensorflow", "keras", "apache-beam", "numpy", "protobuf"):
        assert metadata.version(name) == c[name], name


def test_python_version_file_selects_310():
    assert (ROOT / ".python-version").read_text().strip() == "3.10"
