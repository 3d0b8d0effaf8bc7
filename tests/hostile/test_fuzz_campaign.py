"""The fuzz campaign of the language server, reduced (benchmarks/bench_fuzz_daemon.py runs the full one:
over 2,000 malformed specs and 500 malformed IR pairs; BENCHMARKS.md has its figures).
Run with `pytest -m slow tests/hostile/test_fuzz_campaign.py`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_fuzz_daemon import campaign  # noqa: E402
from fuzz_report import table  # noqa: E402


@pytest.mark.slow
def test_a_reduced_fuzz_campaign_leaves_the_daemon_well_and_right():
    report = campaign(200, 50, seed=1, max_seconds=900.0, settle_timeout=180.0)
    figures = table(report, "campaign(200, 50, seed=1)")
    assert (report.specs, report.pairs, report.cut_short) == (200, 50, False), figures
    assert report.malformed_specs >= 180 and report.malformed_pairs >= 40, figures
    assert report.crashes == 0 and report.exit_code == 0, figures
    assert report.tracebacks == 0, "\n".join(report.stderr_tail)
    assert report.error_logs == [] and report.error_replies == [] and report.hover_wrong == 0, figures
    assert report.stale == [], f"{figures}\n{report.stale}"
    assert report.rss_peak_mb <= 300, figures
    assert report.p(0.95) <= 50, figures
