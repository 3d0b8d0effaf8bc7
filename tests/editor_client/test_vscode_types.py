"""The VS Code extension's result types are generated from the published result schema: the committed
editor_client/vscode/src/result.ts must be what the generator writes today (no node needed)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "editor_client" / "vscode" / "scripts" / "schema_to_ts.py"
SCHEMA = ROOT / "calibration" / "schema" / "result.schema.json"
TYPES = ROOT / "editor_client" / "vscode" / "src" / "result.ts"


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATOR), str(SCHEMA), *args], capture_output=True, text=True)


def test_generated_types_are_current():
    run = generate(str(TYPES), "Result", "--check")
    assert run.returncode == 0, run.stderr


def test_types_follow_the_schema(tmp_path):
    out = tmp_path / "result.ts"
    assert generate(str(out), "Result").returncode == 0
    text = out.read_text(encoding="utf-8")
    assert "export interface Result {" in text and "export interface Summary {" in text
    assert '  method: "default" | "accuracy_aware" | "weights_only";' in text
    assert "  heldout?: HeldOut | null;" in text  # optional: older results do not have it
    assert '  throughput: { [K in "fp32_f32" | "fp32_default" | "int8"]?: number };' in text
    assert "  budget?: AccuracyAwareBudget | number | null;" in text
    stale = tmp_path / "stale.ts"
    stale.write_text(text.replace("drop: number;", "drop: string;", 1))
    run = generate(str(stale), "Result", "--check")
    assert run.returncode == 1 and "stale" in run.stderr
