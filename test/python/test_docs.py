"""The README and docs/ stay true: short, linked, and their examples run.

The README is read by a newcomer in five minutes: it stays short, links
every page of docs/, and each of its links resolves. Its command lines parse
with the CLI's own parser and its Python quickstart runs as written.
NNFORGE_SLOW_TESTS=1 also runs the README's shell examples and the Python
examples of docs/.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnforge.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# What the README may grow to (its aim is about 150 lines).
README_MAX_LINES = 160
# Pages whose Python examples run after the README's, in this order (they use
# the files the README's quickstart writes).
RUNNABLE_PAGES = ("onnx.md", "cuda.md", "stablehlo.md")
SLOW = not os.environ.get("NNFORGE_SLOW_TESTS")

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Shell control operators between the commands of one line.
_CONTROL = {";", "&&", "||", "|", "&"}
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def code_blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(page.read_text()) if lang == language]


def local_links(page: Path) -> list[str]:
    """Targets of the page's links that are files of this repository."""
    return [t for t in _LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def command_lines(page: Path) -> list[list[str]]:
    """The `nnforge ...` commands of a page's shell examples, as argument lists
    (comments dropped, continuation lines joined, lists like `a && b` split)."""
    commands = []
    for block in code_blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in _CONTROL:
                    if words and words[0] in ("nnforge", ".venv/bin/nnforge"):
                        commands.append(words[1:])
                    words = []
                else:
                    words.append(token)
    return commands


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_links_resolve(page: Path):
    broken = [t for t in local_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in local_links(README)}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_command_lines_parse(page: Path, capsys):
    parser = build_parser()
    for arguments in command_lines(page):
        try:
            parser.parse_args(arguments)
        except SystemExit:
            pytest.fail(f"{page.name}: `nnforge {shlex.join(arguments)}` does not parse: {capsys.readouterr().err}")


def test_readme_shows_the_two_setup_commands_first():
    first = code_blocks(README, "sh")[0]
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/nnforge example" in first
    assert "./test.sh" in first


def _run_python(code: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"example failed:\n{code}\n--- stderr:\n{result.stderr[-3000:]}"


def test_readme_quickstart_runs(tmp_path: Path):
    (quickstart,) = code_blocks(README, "python")
    _run_python(quickstart, tmp_path)
    assert (tmp_path / "mlp.so").exists() and (tmp_path / "mlp.onnx").exists()


@pytest.mark.skipif(SLOW, reason="runs every example of the docs: set NNFORGE_SLOW_TESTS=1")
def test_docs_examples_run(tmp_path: Path):
    (quickstart,) = code_blocks(README, "python")
    _run_python(quickstart, tmp_path)
    bin_dir = Path(sys.executable).parent
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "nnforge", "nnforge-opt"):
        # A script, not a symlink: a symlinked venv python would not find its venv.
        wrapper = venv / "bin" / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{bin_dir / tool}" "$@"\n')
        wrapper.chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for block in code_blocks(README, "sh")[1:]:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=environment,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README example failed:\n{block}\n--- stderr:\n{result.stderr[-3000:]}"
    for name in RUNNABLE_PAGES:
        for block in code_blocks(DOCS / name, "python"):
            _run_python(block, tmp_path)
