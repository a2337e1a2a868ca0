"""The house rules the source tree keeps, checked on the sources beside the tests:

- no import circle among fastmlp's modules, counting imports inside functions and
  ``__main__`` blocks (a circle works until someone reorders two imports);
- no module of the package, the benchmarks or the tools edits ``sys.path``;
- no compiled source file above MAX_COMPILED_LINES lines, no Python file above
  MAX_PYTHON_LINES (one job per file: a file past these has grown a second job);
- the README's Layout section names every file and folder of the package, and only
  those that exist.

Skipped where the sources are not beside the tests (an installed test suite).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastmlp"
MAX_COMPILED_LINES = 900
MAX_PYTHON_LINES = 1000
COMPILED = (".pyx", ".pxd", ".pxi", ".h")
GENERATED = {"_core.c"}

pytestmark = pytest.mark.skipif(not (PACKAGE / "_core.pyx").exists(),
                                reason="the fastmlp sources are not beside the tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_modules() -> dict[str, Path]:
    """Every module of the package: its Python files, and its compiled modules (whose
    .pyx imports only cimports and numpy, so they are leaves here)."""
    modules = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules.update((_module_name(p), p) for p in sorted(PACKAGE.rglob("*.pyx")))
    return modules


def _imports(path: Path, name: str, modules) -> set[str]:
    """The fastmlp modules that ``path`` (module ``name``) imports anywhere in its body.
    ``from A import B`` imports module A.B when that is a module, else A itself."""
    if path.suffix == ".pyx":
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_the_package():
    modules = _package_modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert graph["fastmlp.sklearn._base"] >= {"fastmlp._core", "fastmlp.sklearn._stochastic"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def _edits_sys_path(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func.value]
        for t in targets:
            t = t.value if isinstance(t, ast.Subscript) else t
            if (isinstance(t, ast.Attribute) and t.attr == "path"
                    and isinstance(t.value, ast.Name) and t.value.id == "sys"):
                return True
    return False


def test_sys_path_edit_detector():
    assert _edits_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')"))
    assert _edits_sys_path(ast.parse("import sys\nsys.path[:] = []"))
    assert not _edits_sys_path(ast.parse("import sys\nprint(sys.path)"))


@pytest.mark.parametrize("folder", ["fastmlp", "bench", "tools"])
def test_no_module_edits_sys_path(folder):
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / folder).rglob("*.py"))
                 if _edits_sys_path(ast.parse(p.read_text(encoding="utf-8")))]
    assert offenders == []


def test_no_file_has_grown_a_second_job():
    too_long = []
    for p in sorted(PACKAGE.rglob("*")):
        if p.name in GENERATED or p.suffix not in COMPILED + (".py",):
            continue
        limit = MAX_PYTHON_LINES if p.suffix == ".py" else MAX_COMPILED_LINES
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > limit:
            too_long.append(f"{p.relative_to(ROOT)}: {n} lines > {limit}")
    assert too_long == []


def _layout_names() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Layout\n"):]
    block = section[section.index("```text\n") + 8:]
    block = block[:block.index("```")]
    return re.findall(r"^(\S+)", block, flags=re.MULTILINE)


def test_readme_layout_matches_the_tree():
    named = _layout_names()
    missing = [n for n in named if not (ROOT / n.rstrip("/")).exists()]
    assert missing == [], "the README's Layout names paths that do not exist"
    listed = {n.rstrip("/") for n in named}
    unlisted = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.iterdir())
                if p.name not in GENERATED | {"__init__.py", "py.typed", "__pycache__"}
                and p.suffix not in (".so", ".html")
                and str(p.relative_to(ROOT)) not in listed]
    assert unlisted == [], "files of the package the README's Layout does not name"
