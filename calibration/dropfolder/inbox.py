"""Arrival in an inbox: the state machine of every model file, and of every content's job.

A model dropped anywhere below the inbox (an IR pair, ONNX, TFLite, Paddle, a SavedModel: `files_of`) is

1. taken once it has arrived (`model_files`): its signature unchanged for `settle` seconds and all its
   files there; one that stays incomplete for `incomplete_after` seconds, or is whole yet unreadable,
   is refused;
2. keyed by content (sha256 over its files): a content already processed is never calibrated again;
   the same model under another name gets an entry that says whose result it shares, a changed
   model under the same name is processed again;
3. checked (`check_model`), snapshotted into `INBOX/.int8wb/work/` (so the original is only read)
   and calibrated through the job runner, one worker process per model;
4. published (`publish`): an outbox entry, or a failed entry with the reason.

`scan()` is one bounded pass over the inbox and the jobs; the watcher calls it in its loop.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from ..jobs import FINAL, STORE_DIR, JobStore, Runner
from ..model_files import MODEL_ENDINGS, Settle, arrival, content_hash, files_of, signature, walk
from ..private import private_file, private_folder
from ..problems import CalibrationError, Problem
from . import publish
from .policy import Policy, load_policy, policy_path
from .state import FILE_FINAL, MODEL_ACTIVE, DropState, stored_signature

LOG_NAME = "dropfolder.log"


class Inbox:
    """One inbox: its policy, its state, and the steps that take each model file through it.

    `store` may be shared with a caller (the daemon); `runner` is set by the watcher before a scan.
    `echo(line)` receives every log line (the command line prints them to stderr)."""

    runner: Runner

    def __init__(self, inbox: str | os.PathLike, *, policy: str | os.PathLike | None = None,
                 jobs: int | None = None, settle: float | None = None,
                 echo: Callable[[str], None] | None = None, store: JobStore | None = None):
        self.inbox = Path(inbox).resolve()
        if not self.inbox.is_dir():
            raise CalibrationError(Problem(f"inbox is not a folder: {self.inbox}", path=str(self.inbox),
                                           rule="policy"))
        self.policy_file = Path(policy).resolve() if policy else policy_path(self.inbox)
        self.policy: Policy = load_policy(self.policy_file)
        self._policy_sig = signature(self.policy_file)
        self.policy_problems: list[Problem] = []   # of a changed policy: nothing new is taken meanwhile
        self.jobs_override, self.settle_override = jobs, settle
        self.echo = echo
        self.state_dir = self.inbox / STORE_DIR
        self.store = store or JobStore(self.inbox)
        self.work = self.state_dir / "work"
        self.spec_dir = self.state_dir / "specs"
        self.state = DropState(self.inbox)
        private_folder(self.state_dir)
        self._log_file = os.fdopen(private_file(self.state_dir / LOG_NAME, append=True), "a", encoding="utf-8",
                                   buffering=1)
        self.failures: list[str] = []    # names that failed in this process's lifetime
        self.published: list[str] = []
        self.orphaned: set[str] = set()  # jobs whose watcher died: re-queued without counting an attempt

    # -- settings and log -----------------------------------------------------------------------
    @property
    def max_jobs(self) -> int:
        return self.jobs_override or self.policy.drop.jobs

    @property
    def settle(self) -> float:
        return self.policy.drop.settle if self.settle_override is None else self.settle_override

    def log(self, name: str, state: str, detail: str = "") -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name}: {state}" + (f" ({detail})" if detail else "")
        try:
            self._log_file.write(line + "\n")
        except ValueError:  # closed
            pass
        if self.echo is not None:
            self.echo(line)

    def close_log(self) -> None:
        self._log_file.close()

    def worker_log(self, job_id: str) -> Path:
        return self.state_dir / "logs" / f"{job_id}.log"

    # -- one pass -------------------------------------------------------------------------------
    def scan(self) -> None:
        """One pass: reload a changed policy, look at every model file, advance every job."""
        self.reload_policy()
        now = time.time()
        seen: set[str] = set()
        policy = self.policy
        skip = (policy.outbox, policy.failed, publish.staging(policy.outbox), publish.staging(policy.failed))
        for xml in walk(self.inbox, skip, MODEL_ENDINGS):
            rel = xml.relative_to(self.inbox).as_posix()
            seen.add(rel)
            raw = signature(xml)
            if raw is None:
                continue
            sig = stored_signature(raw)
            row = self.state.file(rel)
            if row is None:
                self.state.add_file(rel, publish.entry_name(rel), sig, now)
                self.log(self.state.file(rel)["name"], "seen", rel)
                continue
            if row["sig"] != sig:
                was_final = row["state"] in FILE_FINAL
                self.state.set_file(rel, sig=sig, since=now, hash=None, state="settling", note=None)
                if was_final:
                    self.log(row["name"], "changed", "it will be processed again if its content is new")
                continue
            if row["state"] not in FILE_FINAL and not self.policy_problems:
                try:
                    self._advance(xml, rel, row, now)
                except OSError as exc:  # vanished or unreadable mid-way: look again next pass
                    self.state.set_file(rel, state="settling", since=now, note=f"{type(exc).__name__}: {exc}")
        for row in self.state.open_files():
            if row["xml"] not in seen:
                self._gone(row)
        self.advance_jobs()

    def reload_policy(self) -> None:
        """A changed policy applies to models taken from now on; an invalid one pauses taking models."""
        sig = signature(self.policy_file)
        if sig == self._policy_sig:
            return
        self._policy_sig = sig
        try:
            self.policy = load_policy(self.policy_file)
        except CalibrationError as exc:
            self.policy_problems = exc.problems
            for p in exc.problems:
                self.log("policy", "invalid", str(p))
            self.log("policy", "paused", "no new model is taken until the policy is fixed")
            return
        self.log("policy", "valid again" if self.policy_problems else "reloaded",
                 "resuming" if self.policy_problems else "applies to models taken from now on")
        self.policy_problems = []

    def _gone(self, row: sqlite3.Row) -> None:
        """A file that left the inbox before it reached a final state."""
        if row["state"] in ("settling", "incomplete"):  # removed before it was taken
            self.state.forget_file(row["xml"])
            self.log(row["name"], "gone", "removed before it was complete")
            return
        model = self.state.model(row["hash"]) if row["hash"] else None
        if model is None or model["state"] in ("done", "failed"):
            if model is not None and model["xml"] == row["xml"]:  # removed while processed (the
                self.state.set_file(row["xml"], state=model["state"])  # snapshot was calibrated)
            else:
                self.state.forget_file(row["xml"])
                self.log(row["name"], "gone", "removed while it waited")

    # -- one file -------------------------------------------------------------------------------
    def _advance(self, xml: Path, rel: str, row: sqlite3.Row, now: float) -> None:
        name, state = row["name"], row["state"]
        if state in ("processing", "waiting"):
            model = self.state.model(row["hash"])
            if model is None:  # forgotten (should not happen): start over
                self.state.set_file(rel, state="settling", since=now)
            elif model["state"] in ("done", "failed"):
                if model["xml"] == rel:
                    self.state.set_file(rel, state=model["state"])
                else:
                    self._duplicate(xml, rel, row, model)
            return
        if Settle(self.settle).left(row["since"], now) > 0:
            return
        found = arrival(xml)
        if found.state == "not-ir":
            self.state.set_file(rel, state="ignored", note="not an OpenVINO IR")
            self.log(name, "ignored", "not an OpenVINO IR .xml")
            return
        if found.state == "broken":
            # The whole document is there (it closes </net>) and still does not parse: no amount of
            # waiting mends it, so say so now rather than after incomplete_after.
            self._refuse_file(xml, rel, row)
            return
        if not found.complete:
            if state != "incomplete":
                self.state.set_file(rel, state="incomplete", note=found.why)
                self.log(name, "waiting", f"incomplete: {found.why}")
            if now - row["since"] >= self.policy.drop.incomplete_after:
                self._refuse_file(xml, rel, row)
            return
        digest = row["hash"]
        if digest is None:
            digest = content_hash(xml)
            if stored_signature(signature(xml)) != row["sig"]:
                return  # changed while hashing: the next pass sees a new signature
            self.state.set_file(rel, hash=digest)
        model = self.state.model(digest)
        if model is None:
            self._take(xml, rel, row, digest)
        elif model["state"] in MODEL_ACTIVE:
            if model["xml"] == rel:
                self.state.set_file(rel, state="processing")
            else:
                self.state.set_file(rel, state="waiting", hash=digest, note=f"same content as {model['name']}")
                self.log(name, "waiting", f"same content as {model['name']}, which is being processed")
        elif model["xml"] == rel:
            self.state.set_file(rel, state=model["state"], hash=digest, note="already processed")
        else:
            self._duplicate(xml, rel, self.state.file(rel), model)

    def _take(self, xml: Path, rel: str, row: sqlite3.Row, digest: str) -> None:
        from ..checker import check_model

        name = row["name"]
        # A model that needs conversion is checked by its worker, once converted (or why it was not).
        errors = [p for p in check_model(xml) if p.severity == "error"] if xml.suffix == ".xml" else []
        self.state.add_model(digest, name, rel, time.time())
        self.state.set_file(rel, hash=digest, state="processing")
        if errors:
            self._publish_failure(digest, "refused", errors)
            self.state.set_file(rel, state="failed")
            return
        self.log(name, "taken", f"sha256 {digest[:12]}")
        self._submit(digest)

    def _refuse_file(self, xml: Path, rel: str, row: sqlite3.Row) -> None:
        """A pair that never became complete and readable within incomplete_after (or never will)."""
        from ..checker import check_model

        problems = [p for p in check_model(xml) if p.severity == "error"] or [Problem(
            f"the pair stayed incomplete for {self.policy.drop.incomplete_after:g} s: {row['note'] or ''}",
            path=str(xml), rule="truncated-weights", fix="copy all the model's files again")]
        self._failed_entry(row["name"], xml, row["sig"], None, "refused", problems)
        self.state.set_file(rel, state="failed", note=problems[0].message)

    def _duplicate(self, xml: Path, rel: str, row: sqlite3.Row, model: sqlite3.Row) -> None:
        """Same content as a model already processed: an entry that points at its result."""
        dest = publish.duplicate_entry(self.policy, row["name"], xml, row["sig"], dict(model))
        self.state.set_file(rel, state="duplicate", hash=model["hash"], note=f"same content as {model['name']}")
        self.log(row["name"], "duplicate", f"same content as {model['name']}; {dest}")
        self._remove_originals(xml, row["sig"])

    # -- jobs -----------------------------------------------------------------------------------
    def _snapshot(self, digest: str) -> Path:
        return self.work / digest[:16]

    def _job_spec(self, digest: str) -> Path:
        return self.spec_dir / f"{digest[:16]}.json"

    def _submit(self, digest: str) -> None:
        """Snapshots the model (if not already) and queues its job."""
        model = self.state.model(digest)
        name, rel = model["name"], model["xml"]
        snap = self._snapshot(digest)
        xml = self.inbox / rel
        snap_xml = snap / xml.name
        if not snap_xml.exists() or not all(f.is_file() for f in files_of(snap_xml)):
            shutil.rmtree(snap, ignore_errors=True)
            private_folder(self.work)
            try:
                copied = content_hash(xml, copy_to=snap)
            except OSError as exc:
                copied = f"unreadable: {exc}"
            if copied != digest:  # changed or removed since it was hashed
                shutil.rmtree(snap, ignore_errors=True)
                self.state.forget_model(digest)
                self.state.set_file(rel, state="settling", since=time.time(), hash=None)
                self.log(name, "changed", "its content changed while it was copied; taken again once settled")
                return
        out = publish.staging(self.policy.outbox) / digest[:16]
        shutil.rmtree(out, ignore_errors=True)  # a previous attempt's outputs, if any
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            job_id = self.runner.submit(self._write_job_spec(digest, snap_xml, out))
        except CalibrationError as exc:
            self._publish_failure(digest, "refused", self._locate(exc.problems, digest))
            return
        self.state.set_model(digest, state="queued", job=job_id)
        self.log(name, "queued", f"job {job_id}")

    def _write_job_spec(self, digest: str, model: Path, output_dir: Path) -> Path:
        """The job's spec: the policy's tables for this model, handed to the worker as JSON."""
        spec = self._job_spec(digest)
        private_folder(spec.parent)
        tmp = spec.with_name(f".{spec.name}.tmp-{os.getpid()}")
        with os.fdopen(private_file(tmp, truncate=True), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.policy.job_tables(model, output_dir), indent=2) + "\n")
        os.replace(tmp, spec)
        return spec

    def _locate(self, problems: list[Problem], digest: str) -> list[Problem]:
        original = self.inbox / self.state.model(digest)["xml"]
        return self.policy.locate(problems, self._job_spec(digest), self._snapshot(digest) / original.name, original)

    def advance_jobs(self) -> None:
        for model in self.state.active_models():
            digest = model["hash"]
            if model["job"] is None:  # interrupted by a clean stop, or never submitted
                if not self.policy_problems:
                    self._submit(digest)
                continue
            job = self.store.get(model["job"])
            if job is None:
                self.state.set_model(digest, job=None)
                continue
            if job["state"] == "running" and model["state"] == "queued":
                self.state.set_model(digest, state="running")
                self.log(model["name"], "running", f"job {job['id']}, worker pid {job['pid']}")
            if job["state"] not in FINAL:
                continue
            if job["state"] == "done":
                self._publish_result(digest, job)
                continue
            problems = (job.get("summary") or {}).get("problems") if isinstance(job.get("summary"), dict) else None
            if job["id"] in self.orphaned:
                self.orphaned.discard(job["id"])
                self.log(model["name"], "re-queued", f"the watcher that ran job {job['id']} died")
                self._submit(digest)
            elif not problems and job["state"] == "failed" and model["attempts"] < self.policy.drop.retries:
                self.state.set_model(digest, attempts=model["attempts"] + 1)
                self.log(model["name"], "retrying", f"job {job['id']} failed: {job['error']}")
                self._submit(digest)
            else:
                found = [Problem(**p) for p in problems] if problems else [Problem(
                    f"calibration failed: {job['error']}", path=str(self.inbox / model["xml"]), rule="job-failed",
                    fix=f"see the worker log {self.worker_log(job['id'])}")]
                self._publish_failure(digest, "failed", self._locate(found, digest), job)

    # -- publishing -----------------------------------------------------------------------------
    def _publish_result(self, digest: str, job: dict) -> None:
        model = self.state.model(digest)
        name, original = model["name"], self.inbox / model["xml"]
        stage = publish.staging(self.policy.outbox) / digest[:16]
        dest = self.policy.outbox / name
        if not stage.is_dir():
            # published before a crash, after the rename but before this row was updated?
            if publish.published_digest(dest) == digest:
                self._finish(digest, "done", dest, None)
                return
            self.state.set_model(digest, attempts=model["attempts"] + 1)
            self.log(name, "retrying", "the finished job's outputs are gone")
            self._submit(digest)
            return
        summary = job.get("summary") if isinstance(job.get("summary"), dict) else {}
        outputs = {role: str(dest / Path(path).name) for role, path in (summary.get("output") or {}).items()}
        manifest = {"name": name, "source": str(original), "sha256": digest, "state": "done", "job": job["id"],
                    "policy": str(self.policy.path), "finished": job.get("finished"), "outputs": outputs,
                    "drop": summary.get("drop"), "accuracy": summary.get("accuracy"),
                    "speedup": summary.get("speedup"), "model_size": summary.get("model_size")}
        row = self.state.file(model["xml"])
        sig = row["sig"] if row else None
        publish.result_entry(self.policy, stage, name, manifest, original, sig, self._snapshot(digest))
        self._finish(digest, "done", dest, None)
        drop = summary.get("drop")
        speed = summary.get("speedup_vs_default")
        self.log(name, "done", f"{dest}" + (f"; drop {drop * 100:.2f} pp" if drop is not None else "")
                 + (f", {speed:.2f}x vs FP32 default" if speed else ""))
        self._remove_originals(original, sig)

    def _publish_failure(self, digest: str, verb: str, problems: list[Problem], job: dict | None = None) -> None:
        model = self.state.model(digest)
        original = self.inbox / model["xml"]
        row = self.state.file(model["xml"])
        extra = publish.staging(self.policy.outbox) / digest[:16]
        dest, reason = self._failed_entry(model["name"], original, row["sig"] if row else None, digest, verb,
                                          problems, job, keep=extra if extra.is_dir() else None)
        shutil.rmtree(extra, ignore_errors=True)
        self._finish(digest, "failed", dest, reason)

    def _failed_entry(self, name: str, original: Path, sig: str | None, digest: str | None, verb: str,
                      problems: list[Problem], job: dict | None = None, keep: Path | None = None) -> tuple[Path, str]:
        dest, reason = publish.failed_entry(
            self.policy, name, original, sig, digest, verb, problems, job=job["id"] if job else None,
            worker_log=self.worker_log(job["id"]) if job else None, keep=keep,
            snapshot=self._snapshot(digest) if digest else None)
        self.failures.append(name)
        self.log(name, verb, str(problems[0]) if len(problems) == 1 else f"{len(problems)} problems; "
                 f"{dest / 'reason.txt'}")
        self._remove_originals(original, sig)
        return dest, reason

    def _finish(self, digest: str, state: str, entry: Path, reason: str | None) -> None:
        self.state.set_model(digest, state=state, entry=str(entry), reason=reason, finished=time.time())
        model = self.state.model(digest)
        row = self.state.file(model["xml"])
        if row is not None and row["hash"] == digest:
            self.state.set_file(model["xml"], state=state)
        if state == "done":
            self.published.append(model["name"])
        shutil.rmtree(self._snapshot(digest), ignore_errors=True)
        self._job_spec(digest).unlink(missing_ok=True)

    def _remove_originals(self, original: Path, sig: str | None) -> None:
        """With `move = true` the dropped pair leaves the inbox once its entry is in place."""
        if self.policy.drop.move and sig and publish.remove_originals(original, sig):
            self.state.forget_file(original.relative_to(self.inbox).as_posix())
