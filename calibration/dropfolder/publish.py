"""Entries: what the drop folder publishes, and only ever in whole.

`OUTBOX/<name>/` gets the calibrated model (`<stem>.int8.xml/.bin/.json/.report.html`) and
`drop.json`; a refused or failed model gets `FAILED/<name>/reason.txt` (one `file:line: key: message
(fix: …)` line per problem) and `drop.json`. An entry is assembled in a hidden staging folder beside
its box (same filesystem) and renamed in whole, replacing an older entry of the same name, so no
partial entry is ever visible. With `move = true` the entry keeps the original pair in `source/`,
and the original leaves the inbox only once the entry is in place.

Files only: the caller (the inbox) records what was published.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from ..model_files import files_of, signature
from ..problems import Problem
from .policy import Policy
from .state import stored_signature

MANIFEST = "drop.json"


def entry_name(rel: str) -> str:
    """`resnet/model.xml` (or `.onnx`, `.tflite`, `.pdmodel`) -> `resnet__model`: one flat folder per model
    in the outbox (a SavedModel folder keeps its name)."""
    stem, ext = os.path.splitext(rel)
    return (stem if ext in (".xml", ".onnx", ".tflite", ".pdmodel") else rel).replace("/", "__").replace(os.sep, "__")


def staging(box: Path) -> Path:
    """Where entries of `box` are assembled: beside it, so the final rename stays on one filesystem."""
    return box.parent / f".{box.name}.int8wb-staging"


def ours(entry: Path) -> bool:
    """An entry we published (it holds our manifest): the only kind of folder we ever replace or remove."""
    return entry.is_dir() and not entry.is_symlink() and (entry / MANIFEST).is_file()


def free_name(box: Path, name: str) -> str:
    """`name`, or `name~2`, `name~3`…: the first that is free or already ours in `box`."""
    candidate, n = name, 1
    while os.path.lexists(box / candidate) and not ours(box / candidate):
        n += 1
        candidate = f"{name}~{n}"
    return candidate


def install(src: Path, dest: Path) -> None:
    """Renames the finished folder `src` to `dest`, replacing an older entry of ours (never a partial
    one, never a folder we did not publish: callers pick `dest` with `free_name`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if ours(dest):
        old = dest.parent / f".{dest.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    os.rename(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def published_digest(entry: Path) -> str | None:
    """The sha256 an installed entry was published for (None: no such entry)."""
    manifest = entry / MANIFEST
    return json.loads(manifest.read_text()).get("sha256") if manifest.is_file() else None


def result_entry(policy: Policy, stage: Path, name: str, manifest: dict, original: Path, sig: str | None,
                 snapshot: Path) -> Path:
    """Publishes the job's outputs, assembled in `stage`, as `OUTBOX/<name>`."""
    return _place(policy, stage, policy.outbox, name, manifest, original, sig, snapshot)


def failed_entry(policy: Policy, name: str, original: Path, sig: str | None, digest: str | None, verb: str,
                 problems: list[Problem], job: str | None = None, worker_log: Path | None = None,
                 keep: Path | None = None, snapshot: Path | None = None) -> tuple[Path, str]:
    """Publishes `FAILED/<name>` with reason.txt; `keep`: a folder whose files go in too (e.g. an
    over-budget attempt is worth keeping). Returns the entry and the reason (one line per problem)."""
    stage = staging(policy.failed) / f"{(digest or 'x' * 16)[:16]}-{uuid.uuid4().hex[:8]}"
    stage.mkdir(parents=True)
    reason = "\n".join(str(p) for p in problems)
    header = [f"{name}: {verb} at {time.strftime('%Y-%m-%d %H:%M:%S')}", f"model: {original}"]
    if digest:
        header.append(f"sha256: {digest}")
    if job is not None:
        header.append(f"job: {job} (worker log: {worker_log})")
    (stage / "reason.txt").write_text("\n".join(header) + "\n\n" + reason + "\n", encoding="utf-8")
    if keep is not None:
        for f in keep.iterdir():
            if f.is_file() and not f.name.startswith("."):
                shutil.move(str(f), str(stage / f.name))
    manifest = {"name": name, "source": str(original), "sha256": digest, "state": verb,
                "problems": [p.to_dict() for p in problems], "job": job,
                "time": time.time()}
    return _place(policy, stage, policy.failed, name, manifest, original, sig, snapshot), reason


def duplicate_entry(policy: Policy, name: str, xml: Path, sig: str, model: dict) -> Path:
    """An entry for content already processed as `model` (a drop_models row): it points at that
    result (hard links of its files) or repeats its reason; the model is not processed again."""
    ok = model["state"] == "done"
    box = policy.outbox if ok else policy.failed
    stage = staging(box) / f"dup-{uuid.uuid4().hex[:12]}"
    stage.mkdir(parents=True)
    source = Path(model["entry"]) if model["entry"] else None
    note = (f"{name} has the same content (sha256 {model['hash']}) as {model['name']}, "
            f"{'calibrated' if ok else 'refused or failed'} before; it is not processed again.\n")
    if ok and source is not None and source.is_dir():
        for f in source.iterdir():
            if f.is_file() and f.name != MANIFEST:
                _link_or_copy(f, stage / f.name)
        note += f"The files here are the result of {model['name']}: {source}\n"
    elif not ok:
        note += f"Its reason:\n{model['reason'] or ''}\n"
    (stage / ("duplicate.txt" if ok else "reason.txt")).write_text(note, encoding="utf-8")
    manifest = {"name": name, "source": str(xml), "sha256": model["hash"], "state": "duplicate",
                "duplicate_of": model["name"], "entry_of_original": model["entry"], "time": time.time()}
    return _place(policy, stage, box, name, manifest, xml, sig, None)


def remove_originals(original: Path, sig: str) -> bool:
    """Removes the dropped pair (`move = true`) unless it changed since `sig`: then it is a new drop."""
    if stored_signature(signature(original)) != sig:
        return False
    for f in files_of(original):
        f.unlink(missing_ok=True)
    if original.is_dir():  # a SavedModel: its (now empty) folders too
        shutil.rmtree(original, ignore_errors=True)
    return True


def clear_leftovers(policy: Policy, active: set[str]) -> None:
    """Staging folders of models not being processed (by sha256[:16]) are leftovers of a crash."""
    for box in (policy.outbox, policy.failed):
        stage = staging(box)
        if stage.is_dir():
            for child in stage.iterdir():
                if child.name[:16] not in active or box == policy.failed:
                    shutil.rmtree(child, ignore_errors=True)


def _place(policy: Policy, stage: Path, box: Path, name: str, manifest: dict, original: Path, sig: str | None,
           snapshot: Path | None) -> Path:
    """Writes the manifest, keeps the source if asked, then installs `stage` as `box/name`."""
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    if policy.drop.move and sig is not None:
        _keep_source(stage, original, snapshot)
    dest = box / free_name(box, name)
    install(stage, dest)
    _remove_stale(policy, name, keep=box)
    return dest


def _keep_source(stage: Path, original: Path, snapshot: Path | None) -> None:
    """A copy of the original files in source/ (from the snapshot that was calibrated, if there is one)."""
    src = snapshot if snapshot is not None and (snapshot / original.name).exists() else original.parent
    (stage / "source").mkdir(exist_ok=True)
    for f in (p.relative_to(src) for p in files_of(src / original.name)):
        if (src / f).is_file():
            (stage / "source" / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / f, stage / "source" / f)


def _remove_stale(policy: Policy, name: str, keep: Path) -> None:
    """An entry of the same name in the other box is an older content's: it goes."""
    other = policy.failed if keep == policy.outbox else policy.outbox
    stale = other / name
    if ours(stale):
        gone = other / f".{name}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(stale, gone)
        shutil.rmtree(gone, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
