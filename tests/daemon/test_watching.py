"""watching.py end to end: models copied, replaced and deleted in a workspace folder (half-written
first), and folders the editor adds later; and its rules for names, arriving pairs and the walk."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from daemon_fixtures import client, models, workspace  # noqa: F401  (fixtures)
from daemon_helpers import codes, command, copy_pair, wait_for
from int8wb.calibration.checker import check_model
from int8wb.calibration.model_files import arrival, signature
from int8wb.daemon.watching import hidden, kind_of, walk


@pytest.mark.asyncio
async def test_model_diagnostics_follow_the_files(client: LanguageClient, workspace: Path, models):
    """An ineligible model dropped into the workspace gets a diagnostic (never while half-written),
    which clears when the model is replaced by an eligible one, and when it is deleted."""
    drop = workspace / "incoming"
    target = drop / "net.xml"
    copy_pair(models["fp16"], drop, half_first=0.6)
    diags = await wait_for(lambda: client.diagnostics.get(target.as_uri()), 5, what="model diagnostic")
    assert "truncated-weights" not in codes(client, target) and "missing-weights" not in codes(client, target)
    d = next(d for d in diags if d.code == "not-fp32")
    assert d.source == "int8wb" and d.severity == types.DiagnosticSeverity.Error
    line = target.read_text().splitlines()[d.range.start.line]
    assert d.range.start.character == 0 and d.range.end.character == len(line) and "<port" in line or "<layer" in line

    copy_pair(models["fp32"], drop)  # fixed: the same name now holds an eligible FP32 pair
    await wait_for(lambda: target.as_uri() not in client.diagnostics or not client.diagnostics[target.as_uri()],
                   5, what="diagnostics cleared after the fix")

    copy_pair(models["fp16"], drop, name="other")
    other = drop / "other.xml"
    await wait_for(lambda: "not-fp32" in codes(client, other), 5, what="second model diagnostic")
    other.unlink()
    other.with_suffix(".bin").unlink()
    await wait_for(lambda: not client.diagnostics.get(other.as_uri()), 5, what="diagnostics cleared on delete")

    status = await command(client, "int8wb.status")
    assert status["openvino_loaded"] is False and status["nncf_loaded"] is False
    assert str(workspace.resolve()) in status["roots"]


@pytest.mark.asyncio
@pytest.mark.parametrize("client", ["vscode"], indirect=True)
async def test_folders_added_later_are_watched(client: LanguageClient, workspace: Path, tmp_path, models):
    # VS Code announces dynamic file watching: the daemon registers its globs (its own watcher runs too)
    watch = await wait_for(lambda: [r for r in client.registrations
                                    if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES], 5, what="registration")
    assert {w["globPattern"] for w in watch[0].register_options["watchers"]} >= {"**/*.xml", "**/*.bin"}
    extra = tmp_path / "second"
    extra.mkdir()
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(uri=extra.as_uri(), name="second")],
                                                removed=[])))
    await wait_for(lambda: _has_root(client, extra), 5, what="root added")
    target = copy_pair(models["fp16"], extra / "m")
    await wait_for(lambda: "not-fp32" in codes(client, target), 5, what="diagnostic in the added folder")


async def _has_root(client, folder: Path) -> bool:
    return str(folder.resolve()) in (await command(client, "int8wb.status"))["roots"]


# -- what the watcher sees, in process ------------------------------------------------------------------
def test_what_a_name_means_and_what_is_hidden(tmp_path):
    assert kind_of(Path("a/net.calibration.toml")) == "spec"
    assert [kind_of(Path(n)) for n in ("net.xml", "net.bin", "net.onnx")] == ["model", "weights", None]
    assert hidden(tmp_path / ".cache" / "net.xml", tmp_path) and not hidden(tmp_path / "m" / "net.xml", tmp_path)


def test_a_pair_still_arriving_is_told_from_a_bad_model(tmp_path, models):
    whole = copy_pair(models["fp16"], tmp_path / "whole")
    assert arrival(whole).complete and check_model(whole)  # ineligible, but finished arriving
    half = tmp_path / "half" / "net.xml"
    half.parent.mkdir()
    shutil.copyfile(models["fp16"], half)  # the weights are not there yet
    assert arrival(half).state == "arriving"
    assert signature(half)[2] is None and signature(whole)[2:] == signature(whole.with_suffix(".bin"))


def test_the_walk_finds_specs_and_ir_models_but_not_hidden_ones(tmp_path, models):
    model = copy_pair(models["fp32"], tmp_path / "m")
    copy_pair(models["fp32"], tmp_path / ".hidden")
    spec = tmp_path / "s" / "net.calibration.toml"
    spec.parent.mkdir()
    spec.write_text('model = "../m/net.xml"\n')
    (tmp_path / "s" / "notes.xml").write_text("<notes/>")
    assert walk([tmp_path]) == {model: signature(model), spec: signature(spec)}


def test_a_check_stopped_for_time_is_tried_again_by_the_rescans(tmp_path):
    """A timeout says more about the machine's load at that moment than about the file: the file stays
    unknown to the rescan (so it is looked at again) a few times, then is left be until it changes."""
    from types import SimpleNamespace

    from int8wb.daemon.checking import Checked
    from int8wb.daemon.config import Settings
    from int8wb.daemon.watching import TIMEOUT_RETRIES, Watching

    watching = Watching(SimpleNamespace(settings=Settings()))
    path, sig = tmp_path / "slow.calibration.toml", (1, 2)
    stopped = Checked([], {}, stopped="check-timeout")
    for _ in range(TIMEOUT_RETRIES):
        watching.remember(path, sig, stopped)
        assert path not in watching.known
    watching.remember(path, sig, stopped)
    assert watching.known[path] == sig
    watching.remember(path, (3, 4), Checked([], {}))  # changed and answered: the count starts again
    assert watching.known[path] == (3, 4) and path not in watching.timeouts
