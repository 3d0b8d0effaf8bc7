"""The policy of an inbox, `calibration.toml`: a calibration spec without `model` and `[output]`,
plus a `[drop]` table that says where results go. Every path in it is relative to the policy file.

The policy's tables become each dropped model's spec directly (no spec file is written from them
for validation): every problem names the policy file, its line and key.
"""
from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..problems import CalibrationError, Problem
from ..spec import Spec, read_toml, spec_from_data
from ..toml_lines import line_of
from ..trust import trusted

POLICY_NAME = "calibration.toml"
PLACEHOLDER_MODEL = "<dropped model>.xml"  # the policy alone is validated as the spec of some model
NOT_SPEC = ("model", "output", "drop")      # keys of a policy that are not spec tables


class DropSettings(BaseModel):
    """The `[drop]` table of a policy."""
    model_config = ConfigDict(extra="forbid")
    outbox: str = Field("../outbox", description="Where calibrated models go, one folder per model")
    failed: str = Field("../failed", description="Where refused and failed models go, with reason.txt")
    move: bool = Field(False, description="Move the original pair into the entry's source/ once published")
    jobs: int = Field(1, ge=1, le=64, description="Calibrations at a time")
    settle: float = Field(2.0, ge=0, le=3600, description="Seconds a pair must stay unchanged before it is taken")
    incomplete_after: float = Field(
        60.0, gt=0, description="Seconds an incomplete or unreadable pair may stay unchanged before it is refused")
    retries: int = Field(1, ge=0, le=5, description="Re-runs of a job whose worker process died")
    ray: str | None = Field(None, description='Run the calibrations on a Ray cluster: "auto" (the one this machine '
                                               'joined), "local", or an address (only in a trusted folder)')
    ray_cpus: float = Field(1.0, gt=0, le=1024, description="CPUs each calibration reserves on the Ray cluster")


@dataclass
class Policy:
    path: Path
    text: str
    data: dict                   # the spec tables as written (no model, no [output], no [drop])
    spec: Spec                   # validated with a placeholder model; located in and relative to the policy
    drop: DropSettings
    outbox: Path = field(init=False)
    failed: Path = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = (self.path.parent / self.drop.outbox).resolve()
        self.failed = (self.path.parent / self.drop.failed).resolve()

    def problem(self, message: str, *keys: str, rule: str = "policy", fix: str | None = None) -> Problem:
        return Problem(message, path=str(self.path), line=line_of(self.text, keys), key=".".join(keys) or None,
                       rule=rule, fix=fix)

    def spec_for(self, model: Path, output_dir: Path) -> Spec:
        """The spec of one dropped model: the policy's tables, located in the policy file."""
        return spec_from_data({**self.data, "model": str(model), "output": {"dir": str(output_dir)}},
                              self.path, self.text)

    def job_tables(self, model: Path, output_dir: Path) -> dict:
        """`spec_for`'s tables with every path absolute: what a worker reads from any folder."""
        spec = self.spec_for(model, output_dir)
        data = copy.deepcopy(self.data)
        for role in ("dataset", "validation", "evaluation"):
            ds = getattr(spec, role)
            if ds is not None and ds.path:
                data[role]["path"] = str(spec.resolve(ds.path))
        custom = spec.accuracy.custom
        if custom:
            file, fn = custom.rsplit(":", 1)
            data["accuracy"]["custom"] = f"{spec.resolve(file)}:{fn}"
        return {**data, "model": str(spec.model_path), "output": {"dir": str(spec.output_dir)}}

    def locate(self, problems: list[Problem], job_spec: Path, snapshot: Path, original: Path) -> list[Problem]:
        """Problems a worker found in `job_spec` (the job's tables) or in `snapshot` (its copy of the
        model), told where the user fixes them: the policy's own line and key, or the dropped model."""
        out = []
        for p in problems:
            path, line = p.path, p.line
            if p.path == str(job_spec):
                if p.key and p.key.split(".")[0] == "model":
                    path, line = str(original), None
                else:
                    path = str(self.path)
                    line = line_of(self.text, tuple(p.key.split("."))) if p.key else None
            elif p.path == str(snapshot):
                path = str(original)
            out.append(replace(p, message=p.message.replace(str(snapshot), str(original)), path=path, line=line))
        return out


def policy_path(inbox: str | os.PathLike) -> Path:
    return Path(inbox) / POLICY_NAME


def is_inbox(folder: str | os.PathLike) -> bool:
    return policy_path(folder).is_file()


def load_policy(path: str | os.PathLike, text: str | None = None) -> Policy:
    """Parses and validates a policy; raises CalibrationError whose problems name file, line and key."""
    path = Path(path).resolve()
    text, data = read_toml(path, text, "drop policy", fix=f"create {POLICY_NAME} in the inbox")
    at = lambda *keys: line_of(text, keys)  # noqa: E731
    problems: list[Problem] = []
    if "model" in data:
        problems.append(Problem("a drop policy names no model: every model dropped in the inbox is calibrated "
                                "with it", path=str(path), line=at("model"), key="model", rule="policy",
                                fix="remove the model key"))
    if "output" in data:
        problems.append(Problem("a drop policy has no [output]: results go to [drop] outbox", path=str(path),
                                line=at("output"), key="output", rule="policy",
                                fix='replace [output] by [drop] outbox = "..."'))
    drop, found = _drop_settings(path, text, data.get("drop", {}))
    problems += found
    tables = {k: v for k, v in data.items() if k not in NOT_SPEC}
    spec = None
    try:
        spec = spec_from_data({**tables, "model": PLACEHOLDER_MODEL}, path, text)
    except CalibrationError as exc:
        problems += exc.problems
    if spec is not None:
        for role in ("dataset", "validation", "evaluation"):
            ds = getattr(spec, role)
            if ds is not None and ds.kind != "generated" and ds.path and not spec.resolve(ds.path).exists():
                problems.append(spec.problem(f"{role} not found: {spec.resolve(ds.path)}", role, "path",
                                             rule="dataset-missing", fix="paths are relative to the policy file"))
    if problems:
        raise CalibrationError(problems)
    policy = Policy(path, text, tables, spec, drop)
    inbox = path.parent
    for key, box in (("outbox", policy.outbox), ("failed", policy.failed)):
        if box == inbox or box in inbox.parents:
            problems.append(policy.problem(f"{key} {box} must not be the inbox or hold it", "drop", key,
                                           fix=f'e.g. {key} = "../{key}"'))
        elif inbox.parent not in box.parents and not trusted(folder=box):
            # The policy is the workspace's word: it may place results beside the inbox, not anywhere.
            problems.append(policy.problem(f"{key} {box} lies outside the folder that holds the inbox "
                                           f"({inbox.parent})", "drop", key, rule="path-outside",
                                           fix=f'keep it beside the inbox (e.g. {key} = "../{key}"), or trust '
                                               f'that folder from outside the workspace: int8wb trust {box}'))
    if drop.ray not in (None, "auto", "local") and not trusted(folder=inbox):
        # An address says where jobs go and whose answers this process unpickles: the user's word,
        # never the workspace's.
        problems.append(policy.problem(f"ray = {drop.ray!r}: a cluster address is taken from a trusted folder only",
                                       "drop", "ray", rule="untrusted-cluster",
                                       fix=f'ray = "auto" (the cluster this machine joined), or trust the inbox from '
                                           f'outside the workspace: int8wb trust {inbox}'))
    if policy.outbox == policy.failed:
        problems.append(policy.problem("outbox and failed must be different folders", "drop", "failed"))
    if problems:
        raise CalibrationError(problems)
    return policy


def _drop_settings(path: Path, text: str, raw) -> tuple[DropSettings, list[Problem]]:
    """The `[drop]` table, or the defaults and its problems."""
    if not isinstance(raw, dict):
        return DropSettings(), [Problem("[drop] must be a table", path=str(path), line=line_of(text, ("drop",)),
                                        key="drop", rule="policy")]
    try:
        return DropSettings.model_validate(raw), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ("drop",) + tuple(err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(loc[-1]), list(DropSettings.model_fields), n=1)
                msg = f"unknown key '{loc[-1]}'" + (f"; did you mean '{close[0]}'?" if close else
                                                     f"; allowed: {', '.join(DropSettings.model_fields)}")
            problems.append(Problem(msg, path=str(path), line=line_of(text, loc), key=".".join(map(str, loc)),
                                    rule="policy"))
        return DropSettings(), problems
