"""The typed result: its published schema is the model's, every result ever written still reads (and
writes back unchanged), and what `calibrate` returns is exactly the model's JSON."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from int8wb.calibration import load_spec
from int8wb.calibration.jobs import summarise
from int8wb.calibration.report import render_html
from int8wb.calibration.result import SCHEMA_PATH, Result, Summary, json_schema
from int8wb.calibration.workflow import calibrate
from conftest import copy_example

DATA = Path(__file__).with_name("data")
SAMPLES = sorted(DATA.glob("*.int8.json"))  # written by the engine before the result had a model


def oldest(result: dict) -> dict:
    """The result as the first version wrote it: without the fields added since."""
    old = {k: v for k, v in result.items() if k not in ("accuracy_on", "drop_relative", "metric_higher_is_better",
                                                         "heldout", "budget", "fp32_layers", "accuracy_aware")}
    old["output"] = {k: v for k, v in result["output"].items() if k != "report"}
    old["settings"] = {k: v for k, v in result["settings"].items() if k != "int8_float_precision"}
    return old


def test_published_schema_is_the_models():
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == json_schema(), \
        "calibration/schema/result.schema.json is stale: run `make schema`"


def test_samples_cover_both_methods():
    assert {json.loads(p.read_text())["method"] for p in SAMPLES} == {"default", "accuracy_aware"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_saved_results_read_and_write_back_unchanged(path):
    text = path.read_text(encoding="utf-8")
    result = Result.model_validate_json(text)
    assert json.dumps(result.to_json(), indent=2) + "\n" == text
    assert render_html(result) == render_html(json.loads(text))
    first = oldest(json.loads(text))
    assert Result.model_validate(first).to_json() == first
    assert Result.model_validate(first).accuracy_on is None


def test_a_result_with_a_wrong_field_is_refused():
    result = json.loads(SAMPLES[0].read_text())
    for broken in ({"drop": "small"}, {"throughput": {"int8": 1.0, "fp16": 2.0}}, {"surprise": 1}):
        with pytest.raises(ValidationError):
            Result.model_validate({**result, **broken})


def test_report_command_renders_a_saved_result(tmp_path):
    saved = tmp_path / "model.int8.json"
    saved.write_text(SAMPLES[0].read_text())
    run = subprocess.run([sys.executable, "-m", "int8wb.calibration.report", str(saved)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    page = tmp_path / "model.int8.report.html"
    assert run.stdout.strip() == str(page) and 'data-field="drop"' in page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> dict:
    spec = copy_example(tmp_path_factory.mktemp("result"))
    spec.write_text(spec.read_text().replace("duration = 0.3", "duration = 0.1"))
    return calibrate(load_spec(spec))


def test_calibrate_returns_the_models_json(calibrated):
    typed = Result.model_validate(calibrated)
    assert typed.to_json() == calibrated and list(typed.to_json()) == list(calibrated)
    assert json.loads(Path(typed.output.result).read_text(encoding="utf-8")) == calibrated
    assert typed.budget is None and typed.gate is None and typed.cache is None


def test_job_summary_is_the_published_summary(calibrated):
    summary = Summary.model_validate(summarise(copy.deepcopy(calibrated)))
    assert summary.report == calibrated["output"]["report"] and summary.drop == calibrated["drop"]
