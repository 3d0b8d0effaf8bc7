"""The VS Code extension (editor_client/vscode): type-check, bundle, the Node protocol test against the
real daemon over stdio, and packaging to a .vsix. Skipped only when `node`/`npm` are missing."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "editor_client" / "vscode"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = pytest.mark.skipif(NODE is None or NPM is None, reason="node/npm are not on PATH")
_BUILT: list[bool] = []  # this process has built the bundle


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, INT8WB_PYTHON=sys.executable, INT8WB_ROOT=str(ROOT), npm_config_audit="false",
               npm_config_fund="false", npm_config_update_notifier="false", NO_COLOR="1")
    env.pop("INT8WB_TRUST", None)
    proc = subprocess.run([NPM, *args], cwd=EXT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"npm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture
def built(tmp_path_factory) -> Iterator[Path]:
    """node_modules from the committed package-lock.json (npm ci, only when missing), then the bundle.
    `npm ci`, the build and `vsce package` (which builds again) write node_modules/ and dist/ in the
    source tree: a test holds the tree (a lock shared by pytest-xdist's workers) while it runs."""
    lock = tmp_path_factory.getbasetemp().parent / "vscode-extension-tree.lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not (EXT / "node_modules" / ".package-lock.json").is_file():
            npm("ci")
        if not _BUILT:
            npm("run", "build")
            _BUILT.append(True)
        bundle = EXT / "dist" / "extension.js"
        assert bundle.is_file()
        yield bundle


def test_lockfile_is_committed_and_pins_languageclient_9():
    lock = json.loads((EXT / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 2
    assert lock["packages"]["node_modules/vscode-languageclient"]["version"].startswith("9.")
    assert {"node_modules/", "out/", "dist/", "*.vsix"} <= set((EXT / ".gitignore").read_text().split())


def test_typecheck(built):
    npm("run", "typecheck")


def test_bundle_is_one_file_without_runtime_requires(built):
    text = built.read_text()
    # everything but `vscode` and Node's own modules is bundled in
    assert 'require("vscode")' in text
    assert 'require("vscode-languageclient' not in text and 'require("vscode-jsonrpc' not in text


def test_node_protocol_test_drives_the_real_daemon(built):
    proc = npm("test", timeout=400)
    assert "# fail 0" in proc.stdout and "# skipped 0" in proc.stdout, proc.stdout[-3000:]


def test_package_vsix(built, tmp_path):
    out = tmp_path / "int8wb.vsix"
    env_args = ("exec", "--", "vsce", "package", "--no-dependencies", "--skip-license", "--out", str(out))
    npm(*env_args, timeout=300)
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
    assert "extension/dist/extension.js" in names
    assert not any("node_modules" in n for n in names), "raw node_modules shipped"
    assert not any(n.startswith("extension/src/") or n.startswith("extension/test/") for n in names)
    assert manifest["main"] == "./dist/extension.js"
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert {"int8wb.calibrateCurrent", "int8wb.cancelJob", "int8wb.showJobs", "int8wb.compareCurrent",
            "int8wb.compareModels", "int8wb.checkWorkspace", "int8wb.openLastReport"} <= commands
    settings = manifest["contributes"]["configuration"]["properties"]
    assert {"int8wb.pythonPath", "int8wb.serverArgs", "int8wb.maxJobs", "int8wb.trustCustomMetrics"} <= set(settings)
    assert out.stat().st_size < 1_000_000
