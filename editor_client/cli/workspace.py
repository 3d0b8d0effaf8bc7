"""Commands about workspace folders: jobs, watch (the drop folder), trust, serve."""
from __future__ import annotations

import argparse
import json
import os
import sys

from rich.markup import escape
from rich.table import Table

from int8wb.calibration import CalibrationError
from int8wb.calibration.trust import trusted

from .cluster import backend, ray_arguments
from .console import err, out


def cmd_jobs(args) -> int:
    from datetime import datetime
    from pathlib import Path

    from int8wb.calibration.jobs import JobStore, store_path

    if not Path(args.folder).is_dir():
        err.print(f"error: no such folder: {escape(str(args.folder))}")
        return 1
    if inbox_jobs(args):  # an inbox (int8wb watch): one row per dropped model
        return 0
    if not store_path(args.folder).exists():
        rows = []
    else:
        store = JobStore(args.folder, create=False)
        rows = store.list(limit=args.limit)
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        err.print(f"no jobs in {store_path(args.folder)}")
        return 0
    when = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""  # noqa: E731
    table = Table(title=str(store_path(args.folder)))
    for col in ("id", "spec", "state", "progress", "started", "finished", "result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        s = r["summary"] if isinstance(r["summary"], dict) else {}
        if r["state"] == "done" and s.get("drop") is not None:
            result = f"drop {s['drop'] * 100:.2f} pp, {s.get('speedup_vs_default') or 0:.2f}x vs default"
        else:
            result = r["error"] or ""
        progress = f"{r['percent']:.0f}% {r['phase'] or ''}" if r["state"] == "running" else ""
        table.add_row(r["id"], Path(r["spec"]).name, r["state"], progress, when(r["started"]), when(r["finished"]),
                      escape(result))
    out.print(table)
    return 0

def inbox_jobs(args) -> bool:
    """`int8wb jobs INBOX`: the inbox's models with their state and job; False when not an inbox."""
    from datetime import datetime

    from int8wb.calibration.dropfolder import inbox_rows

    rows = inbox_rows(args.folder)
    if rows is None:
        return False
    rows = rows[:args.limit]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return True
    if not rows:
        err.print(f"no models in the inbox {escape(str(args.folder))} yet")
        return True
    when = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""  # noqa: E731
    table = Table(title=f"inbox {args.folder}")
    for col in ("model", "state", "sha256", "job", "progress", "updated", "entry / note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        progress = f"{r['percent']:.0f}% {r['phase'] or ''}" if r["job_state"] == "running" else (r["job_state"] or "")
        note = r["entry"] if r["state"] in ("done", "failed") and r["entry"] else (r["note"] or r["error"] or "")
        table.add_row(r["xml"], r["state"], (r["hash"] or "")[:12], r["job"] or "", progress, when(r["updated"]),
                      escape(str(note)))
    out.print(table)
    return True

def cmd_watch(args) -> int:
    """Exit status: 0 all succeeded, 1 any refused or failed (or an invalid policy), 2 usage."""
    import signal
    import threading

    from int8wb.calibration.dropfolder import DropFolder, inbox_rows

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        drop = DropFolder(args.inbox, policy=args.policy, jobs=args.jobs, echo=None if args.quiet else echo,
                          trust_custom_metrics=trusted(args.trust, folder=args.inbox),
                          backend=backend(args, retries=0))  # the inbox re-runs them: [drop] retries
    except CalibrationError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: drop.stop())
    try:
        status = drop.run(once=args.once, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        drop.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.once:
        left = [r for r in inbox_rows(drop.inbox) or [] if r["state"] in ("incomplete", "settling")]
        print(f"{len(drop.published)} calibrated, {len(drop.failures)} refused or failed"
              + (f", {len(left)} incomplete left for a later run" if left else ""), file=sys.stderr)
    return status

def watch_arguments(parser: argparse.ArgumentParser) -> None:
    from int8wb.calibration.dropfolder import POLICY_NAME

    parser.add_argument("inbox", help=f"the inbox folder (holding {POLICY_NAME})")
    parser.add_argument("--once", action="store_true", help="process what is there, then exit (cron, CI)")
    parser.add_argument("--policy", help=f"the policy file (default INBOX/{POLICY_NAME})")
    parser.add_argument("--jobs", type=int, help="calibrations at a time (default: [drop] jobs, 1)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="log to INBOX/.int8wb/dropfolder.log only")
    parser.add_argument("--trust", action="store_true",
                        help="run the policy's custom metric (Python code); also INT8WB_TRUST=1")
    ray_arguments(parser)

def cmd_trust(args) -> int:
    from int8wb.calibration.trust import set_trusted, trust_file, trusted_folders

    if args.folder is not None:
        if not os.path.isdir(args.folder):
            err.print(f"not a folder: {escape(args.folder)}")
            return 2
        set_trusted(args.folder, on=not args.revoke)
    for folder in trusted_folders():
        out.print(escape(str(folder)), highlight=False)
    err.print(f"trusted folders: {escape(str(trust_file()))}")
    return 0

def cmd_serve(args) -> int:
    # The language server is another front end: this process becomes it (same stdio), isolated
    # from the working directory, rather than importing it.
    os.execv(sys.executable, [sys.executable, "-I", "-m", "int8wb.daemon"])
