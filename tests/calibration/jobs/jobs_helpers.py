"""Shared by the jobs tests: a workspace with the example, and a fake worker that says what it is told."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from conftest import copy_example
from int8wb.calibration.jobs.protocol import Message, encode


@pytest.fixture
def ws(tmp_path) -> Path:
    copy_example(tmp_path)
    return tmp_path


def spec_in(ws: Path) -> Path:
    return ws / "digits" / "digits.calibration.toml"


def visible(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.glob(".*tmp*")] if folder.is_dir() else []


def fake_python(folder: Path, lines: list[Message | str], code: int = 0, stderr: str = "", linger: float = 0) -> str:
    """An executable to pass as a runner's `python`: it ignores its arguments, writes `lines` (messages
    encoded, strings as they are) on stdout and `stderr` on stderr, waits `linger` s and exits with `code`."""
    stream = folder / "stream.jsonl"
    stream.write_text("".join(encode(m) if not isinstance(m, str) else m for m in lines))
    script = folder / "fake-python"
    script.write_text(f"#!/bin/sh\ncat {shlex.quote(str(stream))}\nprintf %s {shlex.quote(stderr)} >&2\n"
                      f"sleep {linger}\nexit {code}\n")
    script.chmod(0o755)
    return str(script)
