"""The public API: every ``__all__`` names things that import and exist, nothing private, and the
light packages stay light (no torch, transformers, peft, ray, plotly or pandas at import)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

#: Packages whose ``__all__`` is the public API.
PACKAGES = [
    "staytuned",
    "staytuned.hparams",
    "staytuned.results",
    "staytuned.cbs",
    "staytuned.tasks",
    "staytuned.hardware",
    "staytuned.search",
    "staytuned.search.strategies",
    "staytuned.search.executors",
    "staytuned.finetune",
    "staytuned.decoding",
    "staytuned.export",
    "staytuned.report",
]

#: Importing these loads none of HEAVY (the heavy names of finetune/decoding resolve lazily).
LIGHT = PACKAGES
HEAVY = ("torch", "transformers", "peft", "ray", "plotly", "pandas")


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_public_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    private = [n for n in exported if n.startswith("_")]
    assert not private, f"{name}.__all__ lists private names {private}"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names that do not resolve: {missing}"


@pytest.mark.parametrize("name", [p for p in PACKAGES if hasattr(importlib.import_module(p), "_LAZY")])
def test_lazy_packages_export_exactly_their_lazy_names(name: str) -> None:
    # A lazily resolved name missing from __all__ (or the reverse) is an API that drifted.
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(module._LAZY)
    assert set(module.__all__) <= set(dir(module))


def test_the_package_and_its_light_subpackages_import_nothing_heavy() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {LIGHT!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_package_ships_its_type_marker() -> None:
    from importlib.resources import files

    assert files("staytuned").joinpath("py.typed").is_file()
