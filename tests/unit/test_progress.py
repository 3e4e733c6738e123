"""`sluice run`'s progress lines: each component's start and end (with cache state and duration); on a
terminal the end line overwrites the start line, otherwise both are plain lines."""

from __future__ import annotations

import logging

from sluice.pipeline.runner import _Progress


def _feed(progress: _Progress, *events):
    for msg, args in events:
        progress.emit(logging.LogRecord("absl", logging.INFO, __file__, 1, msg, args, None))


def test_plain_output_has_a_start_and_an_end_line_per_component():
    out = []
    progress = _Progress(out.append, tty=False)
    _feed(progress, ("Component %s is running.", ("Transform",)), ("Component %s is finished.", ("Transform",)),
          ("Component %s is running.", ("Trainer",)), ("A cached execution %d is used.", (7,)),
          ("Component %s is finished.", ("Trainer",)))
    text = "".join(out)
    assert "\r" not in text and "\033" not in text
    lines = text.splitlines()
    assert lines[0].split() == ["Transform", "running…"] and lines[1].split()[:2] == ["Transform", "ran"]
    assert lines[3].split()[:2] == ["Trainer", "cached"] and lines[3].endswith(" s")
    assert [(c.name, c.cached) for c in progress.lines] == [("Transform", False), ("Trainer", True)]


def test_terminal_output_rewrites_the_start_line_in_place():
    out = []
    progress = _Progress(out.append, tty=True)
    _feed(progress, ("Component %s is running.", ("Evaluator",)), ("Component %s is finished.", ("Evaluator",)))
    assert not out[0].endswith("\n") and out[1].startswith("\r\033[K") and out[1].endswith("\n")
