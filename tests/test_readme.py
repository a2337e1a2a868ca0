"""Every code block of README.md runs, so the README cannot rot.

Which blocks run, and how, is read from HTML comments on the lines right above a block's
opening fence:

- ```python blocks run as a script under this interpreter (so ``import fastmlp`` is the
  installed package), ```bash and ```sh blocks under ``bash -euo pipefail`` with this
  interpreter's folder first on PATH; each in a fresh, empty working folder.
- ``<!-- new-user: NAME -->``: a command .ci/run runs verbatim in a fresh virtual
  environment (installing fastmlp, running this suite); not run again from here.
- ``<!-- readme-test: skip (REASON) -->``: not run; the reason is required.
- ``<!-- readme-test: requires MODULE[, MODULE] -->``: skipped unless each module imports.
- Blocks in other languages (``text``) are not code.  A fence without a language is an
  error, so that every block is either run or explicitly not.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
RUNNERS = {"python": "python", "bash": "bash", "sh": "bash"}
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
_COMMENT = re.compile(r"^<!--\s*(.*?)\s*-->$")
_HEADING = re.compile(r"^#{1,6}\s")


@dataclasses.dataclass
class Block:
    line: int                 # 1-based line of the opening fence
    lang: str
    code: str
    heading: str
    comments: list[str]       # the comments directly above the fence, top to bottom

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"{slug}-L{self.line}"


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if _HEADING.match(line):
            heading = line.lstrip("#").strip()
        m = _FENCE.match(line)
        if m is None:
            i += 1
            continue
        fence, lang = m.groups()
        end = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == fence), None)
        if end is None:
            raise AssertionError(f"README.md:{i + 1}: code block never closed")
        comments: list[str] = []
        j = i - 1
        while j >= 0 and _COMMENT.match(lines[j].strip()):
            comments.insert(0, _COMMENT.match(lines[j].strip()).group(1))
            j -= 1
        blocks.append(Block(i + 1, lang, "\n".join(lines[i + 1:end]) + "\n", heading,
                            comments))
        i = end + 1
    return blocks


def directives(block: Block) -> dict[str, object]:
    """The block's ``readme-test:`` and ``new-user:`` comments, checked and parsed."""
    out: dict[str, object] = {}
    for comment in block.comments:
        if comment.startswith("new-user:"):
            out["new-user"] = comment.split(":", 1)[1].strip()
        elif comment.startswith("readme-test:"):
            rest = comment.split(":", 1)[1].strip()
            skip = re.fullmatch(r"skip \((.+)\)", rest)
            requires = re.fullmatch(r"requires ([\w.]+(?:\s*,\s*[\w.]+)*)", rest)
            if skip:
                out["skip"] = skip.group(1)
            elif requires:
                out["requires"] = [m.strip() for m in requires.group(1).split(",")]
            else:
                raise AssertionError(f"README.md:{block.line}: unknown directive {comment!r}; "
                                     "expected 'readme-test: skip (reason)' or "
                                     "'readme-test: requires MODULE'")
    return out


BLOCKS = parse(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.lang in RUNNERS]


def test_every_block_is_accounted_for():
    assert len(RUNNABLE) >= 4, "the README parser found too few code blocks"
    for block in BLOCKS:
        assert block.lang, (f"README.md:{block.line}: a code block needs a language: python, "
                            "bash, or text for what is not code")
        d = directives(block)
        if "new-user" in d:
            assert block.lang == "bash", f"README.md:{block.line}: .ci/run runs bash blocks only"
        if d and block.lang not in RUNNERS:
            raise AssertionError(f"README.md:{block.line}: directive on a {block.lang} block, "
                                 "which is never run")


def test_no_directive_is_detached():
    # A readme-test comment that is not right above a fence (a blank line in between, say)
    # would silently stop applying; every one must belong to a block.
    attached = sum(c.startswith("readme-test:") for b in BLOCKS for c in b.comments)
    total = sum(bool(_COMMENT.match(line.strip())) and "readme-test:" in line
                for line in README.read_text(encoding="utf-8").splitlines())
    assert attached == total, "a <!-- readme-test: ... --> comment is not directly above a block"


def test_parser_reads_markers():
    text = ("# Top\n<!-- readme-test: requires a, b.c -->\n```python\nx = 1\n```\n"
            "## Next\n```text\n# not a heading\n```\n")
    first, second = parse(text)
    assert (first.line, first.lang, first.code, first.heading) == (3, "python", "x = 1\n", "Top")
    assert directives(first) == {"requires": ["a", "b.c"]}
    assert (second.heading, second.comments) == ("Next", [])
    with pytest.raises(AssertionError, match="unknown directive"):
        directives(parse("<!-- readme-test: skip -->\n```bash\ntrue\n```\n")[0])


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_readme_block_runs(block, tmp_path):
    d = directives(block)
    if "new-user" in d:
        pytest.skip(f"new-user block {d['new-user']!r}: .ci/run runs it in a fresh venv")
    if "skip" in d:
        pytest.skip(str(d["skip"]))
    for module in d.get("requires", []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}, which is not installed")
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if RUNNERS[block.lang] == "python":
        (tmp_path / "block.py").write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, "block.py"]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (
        f"README.md:{block.line} ({block.heading}) failed with exit status {proc.returncode}"
        f"\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
