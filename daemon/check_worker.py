"""The checker process of the language server: `python -I -m int8wb.daemon.check_worker MEMORY_MB`.

Everything that reads a workspace file's content (spec checks, model checks, the hover's model facts)
runs here, never in the daemon: a hostile file can then cost this process its memory limit or its
life, or the time the daemon grants it, and the daemon goes on answering the editor (checking.py).

It says {"ready": true} once started, then reads one JSON request per line on stdin and writes one
JSON answer per line on stdout, in order:
  {"op": "spec", "path": P, "text": T|null} -> {"problems": [...], "lengths": {...}, "model": P|null}
  {"op": "model", "path": P, "settled": b, "scanned": b} -> {"state": arrival state, "problems": [...]|null, "lengths"}
  {"op": "hover", "path": P}                -> {"markdown": "..."}
  {"op": "layers", "path": P}               -> {"layers": [[name, type, line, [output shapes]], ...], "int8_able": [types]}
A request may carry "limit": at most that many problems (and one saying how many more). Problems
are `Problem.to_dict()`; `lengths` maps each problem's line to its length in the checked text
(a diagnostic spans its line); `model` is the model the spec names. A model's problems are computed
once it has finished arriving (or has settled), so a copy in progress costs one read, not two.
"""
from __future__ import annotations

import json
import os
import re
import resource
import sys
from dataclasses import replace
from pathlib import Path

from int8wb.calibration import conversion
from int8wb.calibration.checker import check_model, check_spec
from int8wb.calibration.guarded import read_bytes
from int8wb.calibration.inspection import INT8_ABLE_TYPES, inspect_model, pretty_shape
from int8wb.calibration.layer_table import layer_table
from int8wb.calibration.model_files import arrival
from int8wb.calibration.problems import CalibrationError, Problem
from int8wb.calibration.spec import load_spec


LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what LSP counts as a line break
MESSAGE_LIMIT = 1000


def spec(path: str, text: str | None) -> dict:
    problems = check_spec(path, text)
    try:
        model = str(load_spec(path, text).model_path)
    except Exception:  # noqa: BLE001  (an invalid spec names no model we can follow)
        model = None
    return {"problems": problems, "model": model}


def model(path: str, settled: bool, scanned: bool = True) -> dict:
    found = arrival(path)
    if found.state == "not-ir":
        return {"state": found.state, "problems": []}
    wanted = found.state in ("complete", "broken") or settled
    return {"state": found.state, "problems": check_model(path, scanned=scanned) if wanted else None}


def hover(path: str) -> dict:
    """The hover text of one model: its facts and whether it can be calibrated."""
    xml = Path(path)
    head = ""
    if kind := conversion.source_kind(xml):  # read as the IR a calibration converted, if any
        cached = conversion.cached_ir(xml)
        head = f"{kind} model, calibrated as its conversion by {conversion.ROUTE}"
        if cached is None:
            broken = "; ".join(f"{p.message} (fix: {p.fix})" for p in check_model(xml) if p.severity == "error")
            return {"markdown": f"**{xml.name}**: {head} (done at the first calibration, then cached)"
                                + (f"\n\n{broken}" if broken else "")}
        head, xml = f"{head} (cached: `{cached}`)\n\n", cached
    try:
        info = inspect_model(xml)
    except CalibrationError as exc:
        return {"markdown": f"**{xml.name}**: " + "; ".join(p.message for p in exc.problems)}
    except Exception as exc:  # noqa: BLE001  (OSError, or whatever else a hostile file provokes)
        return {"markdown": f"**{xml.name}**: cannot read it: {exc}"}
    errors = [p for p in check_model(xml) if p.severity == "error"]
    shape = lambda t: pretty_shape(t.shape)  # noqa: E731
    rows = [f"**{info.name}** (`{xml.name}`)", "",
            f"- IR version: {info.ir_version}",
            f"- precision: {info.precision}" + (" (FP16-compressed weights)" if info.fp16_compressed_weights else ""),
            "- inputs: " + ", ".join(f"`{t.name}` {shape(t)} {t.element_type}" for t in info.inputs),
            f"- layers: {info.layer_count} ({len(info.int8_layers)} INT8-able)",
            "- eligibility: " + ("✅ can be calibrated" if not errors else
                                 "❌ " + "; ".join(f"{p.rule}: {p.message}" for p in errors))]
    return {"markdown": head + "\n".join(rows)}


def line_lengths(path: str, text: str | None, problems: list[Problem]) -> dict[str, int]:
    """{line: its length} for the lines `problems` point at, in `text` or else in the file."""
    wanted = {max(1, p.line or 1) for p in problems}
    if not wanted:
        return {}
    if text is None:
        try:
            text = read_bytes(path).decode("utf-8", "replace")
        except OSError:
            return {}
    lines = LINE_BREAK.split(text)
    return {str(n): len(lines[n - 1]) for n in wanted if n <= len(lines)}


def shown(problems: list[Problem], limit: int | None, path: str) -> list[Problem]:
    """At most `limit` problems, each message at most MESSAGE_LIMIT characters: a hostile file's ten
    thousand problems would cost the editor more than they tell (`int8wb check` lists them all)."""
    out = [p if len(p.message) <= MESSAGE_LIMIT else replace(p, message=p.message[:MESSAGE_LIMIT] + " …")
           for p in problems[:limit]]
    if limit is not None and len(problems) > limit:
        out.append(Problem(f"… and {len(problems) - limit} more problems (`int8wb check {Path(path).name}` lists "
                           "them all)", path=path, line=max(1, problems[limit].line or 1), rule="more-problems",
                           severity="info"))
    return out


LAYERS_SHOWN = 50_000  # layer names a spec may complete: a hostile IR must not flood the editor


def layers(path: str) -> dict:
    """The model's layer table (what `ignored_scope` may name), or an error in words."""
    try:
        table = layer_table(path)
    except Exception as exc:  # noqa: BLE001  (OSError, or whatever else a hostile file provokes)
        return {"layers": [], "error": f"cannot read {Path(path).name}: {exc}"}
    return {"layers": [[e.name, e.type, e.line, list(e.outputs)] for e in table[:LAYERS_SHOWN]],
            "int8_able": sorted(INT8_ABLE_TYPES)}


def answer(request: dict) -> dict:
    op, path = request["op"], request["path"]
    if op == "spec":
        out = spec(path, request.get("text"))
    elif op == "model":
        out = model(path, bool(request.get("settled")), bool(request.get("scanned", True)))
    elif op == "layers":
        out = layers(path)
    else:
        out = hover(path)
    problems = out.get("problems")
    if problems is not None:
        if any(p.rule == "internal" and "MemoryError" in p.message for p in problems):
            raise MemoryError  # the checker reports it as an internal error: here it is our limit
        problems = shown(problems, request.get("limit"), path)
        out["lengths"] = line_lengths(path, request.get("text"), problems)
        out["problems"] = [p.to_dict() for p in problems]
    return out


def _die_with_the_daemon() -> None:
    """Linux: the kernel kills this process when the daemon dies, even in the middle of a check."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    _die_with_the_daemon()
    os.nice(5)  # checks are background work: the daemon's answers to the editor come first
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    if memory_mb > 0:  # address space, set after the imports so that only the checks count
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")  # imports done: the daemon's time limit starts with a check
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = answer(request)
        except MemoryError:  # answered, then this process ends: the daemon starts a fresh one
            out.write(json.dumps({"error": "check-limit", "exiting": True}) + "\n")
            out.flush()
            return
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
