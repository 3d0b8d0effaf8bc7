"""Real editors against the daemon over stdio: headless Neovim 0.7 and batch Emacs with eglot 1.9 load
the configuration snippets of docs/editors.md word for word (README.md carries the same blocks), then
the drivers in real_clients/ do what a user does: open a spec with a problem (its diagnostic arrives),
hover the model line (eglot, without markdown-mode, gets plain text), pick "Calibrate with int8wb" from
the code actions (the job runs to its end and its result is shown), open the report (answered at once),
change a live setting, and shut down (the server and all it started are gone).
Each skips only when its editor is not installed; the CI (.ci/run) installs both."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import copy_example, wait_until
from daemon_fixtures import models  # noqa: F401  (fixture)
from daemon_helpers import HERE, ROOT, SERVER

DRIVERS = HERE / "real_clients"
DOCS, README = ROOT / "docs" / "editors.md", ROOT / "README.md"
FENCE = re.compile(r"^```(lua|elisp)\n(.*?)^```\n", re.S | re.M)
RUN_S = 60  # one editor's whole session, calibration included


def snippet(language: str, text: str | None = None) -> str:
    """The one fenced `language` block of docs/editors.md (or of `text`)."""
    blocks = [body for lang, body in FENCE.findall(DOCS.read_text() if text is None else text) if lang == language]
    assert len(blocks) == 1, f"expected one {language} block, found {len(blocks)}"
    return blocks[0]


def test_the_readme_shows_the_tested_snippets():
    readme = README.read_text()
    assert snippet("lua", readme) == snippet("lua") and snippet("elisp", readme) == snippet("elisp")


def session(tmp_path: Path, argv: list[str], files: dict[str, str], *, int8wb_on_path: bool = True,
            model: Path | None = None) -> tuple[dict, str]:
    """Runs one editor session in a fresh home on a copy of the example plus a spec whose model is
    missing (and `model`, an IR pair without suffix, for the driver to copy in); returns the driver's
    result and the editor's stderr."""
    ws = tmp_path / "ws"
    spec = copy_example(ws)
    (spec.parent / "broken.calibration.toml").write_text(spec.read_text().replace('model = "model.xml"',
                                                                                   'model = "missing.xml"'))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # PATH as the user's, without any int8wb; with one when the test wants it (`int8wb serve` of this checkout)
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not os.access(Path(d, "int8wb"), os.X_OK)]
    if int8wb_on_path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "int8wb").write_text(f'#!/bin/sh\nexec "{SERVER[0]}" -I -m int8wb.editor_client.cli "$@"\n')
        (bin_dir / "int8wb").chmod(0o755)
        path.insert(0, str(bin_dir))
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INT8WB_", "XDG_", "NVIM", "EMACS"))}
    env.update(PATH=os.pathsep.join(path), HOME=str(tmp_path), INT8WB_WS=str(ws), INT8WB_OUT=str(out),
               XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    if not int8wb_on_path:
        env["INT8WB_MODE"] = "missing"
    if model is not None:
        env["INT8WB_MODEL"] = str(model)
    started = time.monotonic()
    with adopting_orphans() as left_behind:
        proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=RUN_S + 15)
        wall_s = time.monotonic() - started
        stderr = proc.stderr.decode(errors="replace")
        assert out.is_file(), f"the driver wrote no result: rc={proc.returncode} {stderr[-3000:]}"
        result = json.loads(out.read_text())
        result["wall_s"] = wall_s
        # the server and every process it started are gone once the editor has shut it down
        wait_until(lambda: not left_behind(), 10, what=f"the server's processes to end: {left_behind()}")
    return result, stderr


@contextlib.contextmanager
def adopting_orphans():
    """This process becomes the reaper of orphaned descendants (Linux PR_SET_CHILD_SUBREAPER): a checker
    or job worker that outlives a server killed by its editor (eglot kills it after `exit`) is ours to
    see. Yields a function listing the live ones, reaping those that ended."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = children()
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def left_behind() -> list[str]:
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        return [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in children() - before
                if Path(f"/proc/{pid}/cmdline").exists()]

    try:
        yield left_behind
    finally:
        libc.prctl(36, 0, 0, 0, 0)


def children() -> set[int]:
    return {int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()}


def assert_used_as_documented(result: dict, ws: Path) -> None:
    assert result["root"].rstrip("/") == str(ws / "digits"), result  # the spec's folder, not the editor's cwd
    assert "model-missing" in result["codes"], result
    assert "Calibrate with int8wb" in result["actions"], result
    assert result["ended"] and result["state"] == "done", result
    # the result, as the user reads it: drop, speed-up, report path
    assert re.search(r"digits\.calibration\.toml: done: drop -?\d", result["end_message"]), result
    assert "x vs FP32 default" in result["end_message"] and result["report"] in result["end_message"], result
    assert result["report"].endswith(".report.html") and Path(result["report"]).is_file()
    assert result["open_report"] is False and result["open_report_s"] < 5, result  # no showDocument: a message
    assert result["report"] in result["report_message"], result
    assert result["settings_live"] is True, result
    assert result["exited"] and result["shutdown_s"] < 5, result
    assert result["wall_s"] < RUN_S, result


# -- Neovim 0.7 ------------------------------------------------------------------------------------------
NVIM = shutil.which("nvim")


def nvim_argv(tmp_path: Path) -> list[str]:
    return [NVIM, "--headless", "-n", "-i", "NONE", "-u", str(tmp_path / "init.lua"),
            "-c", f"luafile {DRIVERS / 'nvim_driver.lua'}"]


@pytest.mark.skipif(NVIM is None, reason="nvim is not on PATH")
def test_neovim_with_the_documented_snippet(tmp_path, models):
    result, stderr = session(tmp_path, nvim_argv(tmp_path), {"init.lua": snippet("lua")},
                             model=models["fp16"].with_suffix(""))
    assert "not-fp32" in result["model_codes"], result
    assert result["initialized"] and result["same_client"] and result["started"] == 1, result
    assert result["exit_code"] == 0, result
    assert_used_as_documented(result, tmp_path / "ws")
    log = tmp_path / "cache" / "nvim" / "lsp.log"
    assert "Traceback" not in (log.read_text() if log.is_file() else ""), log.read_text()
    assert "Error" not in stderr, stderr


@pytest.mark.skipif(NVIM is None, reason="nvim is not on PATH")
def test_neovim_snippet_without_int8wb_says_so_once(tmp_path):
    result, stderr = session(tmp_path, nvim_argv(tmp_path), {"init.lua": snippet("lua")}, int8wb_on_path=False)
    assert result["clients"] == 0 and "started" not in result, result
    assert result["notified"] == [{"level": 4, "msg": "int8wb: cannot start the language server: 'int8wb' is not "
                                   "on PATH. Install int8-workbench (make install) and put its .venv/bin on PATH, "
                                   "or set int8wb.cmd"}], result  # 4: vim.log.levels.ERROR
    assert "Error" not in stderr and "traceback" not in stderr, stderr


# -- Emacs 28 with eglot 1.9 ------------------------------------------------------------------------------
EMACS = shutil.which("emacs")


def emacs_argv(tmp_path: Path) -> list[str]:
    # -q, not -Q: the site start files put the distribution's ELPA packages (elpa-eglot) where
    # package-initialize, as an interactive Emacs runs it at startup, activates them
    return [EMACS, "--batch", "-q", "--eval", "(package-initialize)", "-l", str(tmp_path / "init.el"),
            "-l", str(DRIVERS / "emacs_driver.el")]


@pytest.mark.skipif(EMACS is None, reason="emacs is not on PATH")
def test_emacs_eglot_with_the_documented_snippet(tmp_path):
    result, stderr = session(tmp_path, emacs_argv(tmp_path), {"init.el": snippet("elisp")})
    assert "error" not in result and "timeout" not in result, result
    assert result["managed"] and result["same_server"], result
    assert result["hover_kind"] == "plaintext" and "IR version" in result["hover"] and "**" not in result["hover"]
    assert_used_as_documented(result, tmp_path / "ws")
    assert "shutdown_error" not in result, result  # answered in time; jsonrpc 1.0.14 then kills the process
    assert "Traceback" not in result["stderr"], result["stderr"]


@pytest.mark.skipif(EMACS is None, reason="emacs is not on PATH")
def test_emacs_snippet_without_int8wb_says_so_once(tmp_path):
    result, stderr = session(tmp_path, emacs_argv(tmp_path), {"init.el": snippet("elisp")}, int8wb_on_path=False)
    assert result["servers"] == 0, result
    warnings = [m for m in result["messages"] if "int8wb" in m]
    assert warnings == ["Error (int8wb): cannot start the language server: `int8wb' is not on exec-path. Install "
                        "int8-workbench (make install) and add its .venv/bin to exec-path, or set int8wb-command"], result
