"""What a fuzz campaign of the language server measured (benchmarks/bench_fuzz_daemon.py): the Report,
the daemon's memory and CPU from /proc, what each file's diagnostics must be at the end (the engine's
answer, computed here as the daemon's checker process computes it), and the table of figures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    specs: int = 0                       # malformed specs pushed (buffers and files)
    pairs: int = 0                       # malformed IR pairs written
    by_kind: dict = field(default_factory=dict)
    crashes: int = 0                     # the daemon exited before shutdown
    exit_code: int | None = None
    tracebacks: int = 0                  # "Traceback" on the daemon's stderr
    stderr_tail: list = field(default_factory=list)
    error_logs: list = field(default_factory=list)  # window/logMessage or showMessage of type Error
    hover_ms: list = field(default_factory=list)
    hover_at: list = field(default_factory=list)    # seconds since start of each hover
    hover_wrong: int = 0                 # hovers that failed or did not describe the model
    client_lag_ms: list = field(default_factory=list)  # how late this process's own loop wakes up
    client_lag_at: list = field(default_factory=list)
    requests: int = 0                    # hover, code lens and code action requests on the fuzz buffers
    error_replies: list = field(default_factory=list)  # ... answered with an error
    rss_peak_mb: float = 0.0             # the daemon's VmHWM
    rss_tree_max_mb: float = 0.0         # largest sample of the daemon plus its child processes
    cpu_s: float = 0.0                   # CPU time of the daemon itself (user + system) over the run
    checks_done: dict = field(default_factory=dict)  # the daemon's own count of checks (int8wb.status)
    stale: list = field(default_factory=list)       # URIs whose diagnostics are not those of their last state
    stopped: list = field(default_factory=list)     # URIs whose last check the daemon stopped (time, memory)
    checked_files: int = 0               # URIs compared at the end
    seconds: float = 0.0
    cut_short: bool = False              # --max-seconds reached before all inputs were pushed

    @property
    def malformed_specs(self) -> int:
        return self.specs - self.by_kind.get("policy", 0)

    @property
    def malformed_pairs(self) -> int:
        return self.pairs - self.by_kind.get("pair:valid", 0) - self.by_kind.get("pair:deleted", 0)

    def p(self, q: float) -> float:
        return _q(self.hover_ms, q)

    def worst_window_p95(self, window: float = 10.0) -> float:
        buckets: dict[int, list] = {}
        for at, ms in zip(self.hover_at, self.hover_ms):
            buckets.setdefault(int(at // window), []).append(ms)
        return max((sorted(b)[int(round(0.95 * (len(b) - 1)))] for b in buckets.values() if len(b) >= 20),
                   default=float("nan"))


# -- the daemon's memory ---------------------------------------------------------------------------------
def proc_status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":")), 0)
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


# -- what the diagnostics of each file must be at the end -------------------------------------------------
def expected(path: Path, buffer: str | None) -> list[tuple]:
    """The engine's answer for the last state of `path` (its open `buffer`, or the file), as the daemon
    publishes it: the checker process's own answer function, run here."""
    from int8wb.calibration.model_files import arrival
    from int8wb.calibration.problems import Problem
    from int8wb.daemon.check_worker import answer
    from int8wb.daemon.checking import SHOWN
    from int8wb.daemon.diagnostics import to_diagnostics
    from int8wb.daemon.paths import exists

    if buffer is None and not exists(path):  # the daemon's view: a loop or a name too long is no file
        return []
    if path.name.endswith(".calibration.toml"):
        reply = answer({"op": "spec", "path": str(path), "text": buffer, "limit": SHOWN})
    elif path.suffix == ".xml":
        if arrival(path).state == "not-ir":
            return []
        reply = answer({"op": "model", "path": str(path), "settled": True, "limit": SHOWN})
    else:
        return []
    problems = [Problem(**p) for p in reply["problems"]]
    lengths = {int(k): v for k, v in reply["lengths"].items()}
    return sorted((d.code, d.range.start.line, d.message) for d in to_diagnostics(problems, path, lengths))


def want_all(uris: list[str], buffers: dict[str, tuple[Path, str]]) -> dict[str, list]:
    from int8wb.daemon.paths import path_of

    out = {}
    for u in uris:
        path, text = buffers[u] if u in buffers else (path_of(u), None)
        out[u] = expected(path, text) if path is not None else []
    return out


def got(diagnostics: list) -> list[tuple]:
    return sorted((d.code, d.range.start.line, d.message) for d in diagnostics)


STOPPED = {"check-timeout", "check-limit", "check-crashed"}  # the daemon's answer when a check was stopped


def _q(values: list, q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")


def table(report: Report, command: str) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind.items()))
    k = report.by_kind
    rows = [("malformed specs pushed (buffers and files)", f"{report.malformed_specs} (and {k.get('policy', 0)} "
             "drop policies in nested folders)", "≥ 2,000"),
            ("malformed IR pairs written", f"{report.malformed_pairs} (and {k.get('pair:valid', 0)} valid pairs, "
             f"{k.get('pair:deleted', 0)} deletions)", "≥ 500"),
            ("daemon crashes (exit before shutdown)", str(report.crashes), "0"),
            ("exit code after shutdown", str(report.exit_code), "0"),
            ("tracebacks on the daemon's stderr", str(report.tracebacks), "0"),
            ("error messages logged by the daemon", str(len(report.error_logs)), "0"),
            ("hover / code lens / code action requests on fuzz buffers: error replies",
             f"{len(report.error_replies)} of {report.requests}", "0"),
            (f"hover requests (wrong or failed answers: {report.hover_wrong})", str(len(report.hover_ms)), ""),
            ("hover p50 / p95 / max", f"{report.p(0.5):.1f} / {report.p(0.95):.1f} / {max(report.hover_ms, default=0):.0f} ms",
             "p95 ≤ 50 ms"),
            ("hover p95, worst 10 s window", f"{report.worst_window_p95():.1f} ms", "≤ 50 ms"),
            ("this benchmark's own loop lag p95 / max (included in the hover figures)",
             f"{_q(report.client_lag_ms, 0.95):.1f} / {max(report.client_lag_ms, default=0):.0f} ms", ""),
            ("daemon RSS, high-water mark", f"{report.rss_peak_mb:.0f} MB", "≤ 300 MB"),
            ("daemon + child processes RSS, max sampled", f"{report.rss_tree_max_mb:.0f} MB", ""),
            ("daemon CPU time (its own process)", f"{report.cpu_s:.0f} s", ""),
            ("checks the daemon's checker processes ran: answered / stopped for time / memory / crashed",
             " / ".join(str(report.checks_done.get(k, 0)) for k in ("answered", "check-timeout", "check-limit",
                                                                   "check-crashed")), ""),
            (f"stale or missing diagnostics at the end (of {report.checked_files} files)", str(len(report.stale)), "0"),
            ("files whose last check the daemon stopped (time or memory limit), not compared",
             str(len(report.stopped)), ""),
            ("wall time", f"{report.seconds:.0f} s" + (" (cut short by --max-seconds)" if report.cut_short else ""), "")]
    out = [f"`{command}`", "", "| measure | value | goal |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out += ["", f"inputs by kind: {kinds}"]
    return "\n".join(out)


SECTION = "Language server under a fuzz campaign"
INTRO = """\
Goal (issue #15): ≥ 2,000 malformed specs and ≥ 500 malformed IR pairs through the daemon over LSP with
0 crashes, 0 tracebacks, hover p95 ≤ 50 ms throughout, RSS ≤ 300 MB. `benchmarks/bench_fuzz_daemon.py`
starts `python -I -m int8wb.daemon` over stdio (VS Code's recorded capabilities) on a copy of the digits
example and pushes seeded inputs from `benchmarks/fuzz_cases.py`, made and written by a separate process:
spec buffers (didOpen/didChange, up to 8 open, some under hostile URIs) and spec files in the watched
folder (a pool of 64 names rewritten at random: TOML mutations, arrays nested to 100,000, numbers of a
million digits, backtracking inputs, up to 10,000 unknown keys, NUL, invalid UTF-8, 17 MB files, FIFOs,
loops, links to '/' and /dev/zero, paths to all of those), drop policies in nested folders, and IR pairs
(a pool of 32: truncated, bit-flipped, other encodings, entity bombs, FIFOs and folders named *.xml,
.bin missing, short or a FIFO, 40k constants, absurd shapes, half-written copies, renames). Meanwhile the
editor hovers the valid spec's model line every 50 ms and asks hover, code lenses and quick fixes on
half of the fuzz buffers. At the end every buffer is closed and every file's diagnostics are compared
with the engine's answer for its last state (files whose last case asks more than a check may take are
first rewritten with one the engine answers quickly). Hover figures are those of the client, its own
loop lag included; "worst 10 s window" is the p95 of the worst 10 seconds. The daemon's RSS is its
high-water mark (VmHWM); its checker processes (each limited to 1 GB of address space) are counted
apart. Some inputs are coalesced by design (a file rewritten within the debounce is checked once):
the daemon's own count of checks is given.
"""
