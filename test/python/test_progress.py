"""Compile progress on stderr: stages reported as they happen once a compile
has run a while, on an interactive terminal or when asked; silent otherwise."""

from __future__ import annotations

import io
import time

import pytest

import nnforge
from nnforge.stages import Progress

import models


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_reported_before_the_delay():
    stream = Terminal()
    progress = Progress(stream=stream, delay=60)
    progress.started("import")
    progress.finished("import", 0.5)
    progress.close()
    assert stream.getvalue() == ""


def test_stages_done_before_the_delay_are_reported_with_the_first_after_it():
    stream = Terminal()
    progress = Progress(stream=stream, delay=0.05)
    progress.started("import")
    progress.finished("import", 0.01)
    time.sleep(0.1)
    progress.started("vectorize")
    progress.finished("vectorize", 1.25)
    progress.close()
    # What the terminal shows: each line as its last rewrite left it.
    lines = [line.split("\r\033[K")[-1] for line in stream.getvalue().split("\n") if line]
    assert [line.split()[:2] for line in lines] == [
        ["nnforge:", "import"], ["nnforge:", "vectorize"], ["nnforge:", "compiled"]
    ]
    assert "1.25 s" in lines[1]


def test_a_long_stage_shows_while_it_runs():
    """The timer notices the delay in the middle of a stage and shows it running."""
    stream = Terminal()
    progress = Progress(stream=stream, delay=0.05)
    progress.started("import")
    time.sleep(0.3)
    assert stream.getvalue().endswith("nnforge: import ...")
    progress.finished("import", 0.3)
    progress.close(failed=False)
    assert "\r\033[Knnforge: import" in stream.getvalue()


def test_a_failure_ends_the_report_with_the_failed_stage():
    stream = Terminal()
    progress = Progress(stream=stream, delay=0)
    progress.started("linalg-fusion")
    progress.close(failed=True)
    assert "nnforge: linalg-fusion failed after" in stream.getvalue()


@pytest.mark.parametrize("verbose,terminal,reported", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False),
])
def test_verbose_decides_where_progress_is_reported(verbose, terminal, reported):
    stream = Terminal() if terminal else io.StringIO()
    progress = Progress(verbose, stream=stream, delay=0)
    progress.started("import")
    progress.finished("import", 0.1)
    progress.close()
    assert bool(stream.getvalue()) == reported


def test_compile_reports_its_stages_when_asked(monkeypatch, capsys):
    monkeypatch.setattr(Progress, "DELAY", 0.0)
    model, inputs = models.mlp()
    nnforge.compile(model, inputs, verbose=True)
    reported = capsys.readouterr().err
    for stage in ("import", "nnf-to-linalg", "linalg-fusion", "dispatch-regions", "vectorize", "linalg-to-llvm",
                  "llvm", "compiled in"):
        assert f"nnforge: {stage}" in reported

