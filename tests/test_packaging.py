"""What the installed distribution carries: version, metadata, typing files, every module,
and a stub of the compiled core that matches it."""
from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import pathlib

import pytest

import fastmlp
from fastmlp import _core

PKG = pathlib.Path(fastmlp.__file__).resolve().parent
SOURCE = pathlib.Path(__file__).resolve().parents[1] / "fastmlp"


def test_version_is_single_sourced():
    # pyproject.toml reads the version from fastmlp/_version.py; the installed metadata
    # must carry the same string.
    assert md.version("fastmlp") == fastmlp.__version__


def test_metadata():
    meta = md.metadata("fastmlp")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["Requires-Python"] == ">=3.10"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    extras = set(meta.get_all("Provides-Extra"))
    assert {"test", "sklearn", "plot", "onnx", "bench", "progress", "cli", "all"} <= extras
    files = {str(f) for f in md.files("fastmlp")}
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), files


def test_console_script_entry_point():
    (ep,) = [ep for ep in md.entry_points(group="console_scripts") if ep.name == "fastmlp"]
    assert callable(ep.load())


def test_typing_files_are_installed():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_core.pyi").is_file()


@pytest.mark.skipif(not SOURCE.is_dir(), reason="no source tree next to the tests")
def test_every_source_module_is_installed():
    # The suite runs against the installed package, so a module left out of the wheel
    # (a subpackage missing from pyproject's `packages`, say) fails here by name.
    wanted = {p.relative_to(SOURCE) for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(p) for p in wanted if not (PKG / p).is_file())
    assert not missing, f"modules of fastmlp/ missing from the installed package: {missing}"


# ---------------------------------------------------------------------- _core.pyi
def _stub() -> ast.Module:
    return ast.parse((PKG / "_core.pyi").read_text(encoding="utf-8"))


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, object]]:
    args = fn.args.posonlyargs + fn.args.args
    defaults = [inspect.Parameter.empty] * (len(args) - len(fn.args.defaults)) + [
        ast.literal_eval(d) for d in fn.args.defaults]
    return [(a.arg, d) for a, d in zip(args, defaults)]


def _runtime_params(obj) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(obj).parameters.values()]


def _compiled_names() -> dict[str, object]:
    """Functions and classes the compiled module defines itself, and its constant tables."""
    return {name: obj for name, obj in vars(_core).items()
            if not name.startswith("__")
            and (getattr(obj, "__module__", None) == "fastmlp._core"
                 or (name.isupper() and isinstance(obj, (dict, int, float, tuple))))}


def test_core_stub_names_match_the_compiled_module():
    stub = {n.name for n in _stub().body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stub |= {n.target.id for n in _stub().body if isinstance(n, ast.AnnAssign)}
    assert stub == set(_compiled_names())


def test_core_stub_signatures_match():
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef):
            assert _stub_params(node) == _runtime_params(getattr(_core, node.name)), node.name


def test_core_stub_engine_matches():
    (engine,) = [n for n in _stub().body if isinstance(n, ast.ClassDef) and n.name == "Engine"]
    stub: dict[str, list[ast.FunctionDef]] = {}
    for n in engine.body:
        if isinstance(n, ast.FunctionDef) and n.name != "__init__":
            stub.setdefault(n.name, []).append(n)     # a property's getter and setter
    runtime = {name: obj for name, obj in vars(_core.Engine).items()
               if not name.startswith("_")}
    assert set(stub) == set(runtime)
    for name, nodes in stub.items():
        if callable(runtime[name]):
            (node,) = nodes
            assert _stub_params(node) == _runtime_params(runtime[name]), name
        else:
            # Cython properties are getset descriptors: the stub must declare a property
            assert any(isinstance(d, ast.Name) and d.id == "property"
                       for n in nodes for d in n.decorator_list), name
