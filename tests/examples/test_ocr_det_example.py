"""The PP-OCRv5 text detector case (slow: ~3 minutes; `make test-all` or `pytest -m slow`).

Default INT8 of a real DB detector given as ONNX, on rendered pages with known word boxes: the
figures are pycocotools' AP at IoU 0.5 with a bootstrap interval over pages, and the saved model,
evaluated again on its own, gives the reported INT8 figure."""
import subprocess
import sys
from pathlib import Path

import openvino as ov
import pytest

from int8wb.calibration import deployment, load_spec
from int8wb.calibration.conversion import converted_ir
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.decoders import decode
from int8wb.calibration.detection import mean_average_precision
from int8wb.calibration.inspection import inspect_model
from int8wb.calibration.trust import set_trusted
from int8wb.calibration.workflow import calibrate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ocr_det"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    subprocess.run([sys.executable, str(EXAMPLE / "prepare.py")], check=True)
    spec = load_spec(EXAMPLE / "ocr_det.calibration.toml")
    spec.output.dir = str(tmp_path_factory.mktemp("ocr_det"))
    set_trusted(Path(spec.output.dir))  # results go outside the example's folder
    spec.inference.duration = 0.5
    return calibrate(spec)


def test_the_detector_finds_the_words(result):
    assert result["metric"] == "voc_map50" and result["fp32"]["accuracy"] > 0.9
    low, high = result["drop_ci"]
    assert low <= result["drop"] <= high and result["heldout"]["drop_ci"] is not None


def test_the_saved_model_gives_the_reported_figure(result):
    spec = load_spec(EXAMPLE / "ocr_det.calibration.toml")
    info = inspect_model(converted_ir(spec.model_path))
    val = open_dataset(spec, deployment.deployed(info, deployment.shapes(spec, info)), "validation")
    compiled = ov.Core().compile_model(result["output"]["model"], "CPU")
    truth = [val.label(i) for i in range(len(val))]
    found = [decode(compiled(val.load(i), share_inputs=False)[0], spec.accuracy, t) for i, t in enumerate(truth)]
    assert mean_average_precision(truth, found, "voc_map50", 200) == pytest.approx(result["int8"]["accuracy"])
