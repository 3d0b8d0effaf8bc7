"""The OCR example's dataset-level metric, corpus CER: its value against an independent count on known
strings, and a short calibration with it (Default on a few words, not the slow AccuracyAware case)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from int8wb.calibration import load_spec
from int8wb.calibration.custom_metrics import Sample
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.inspection import inspect_model
from int8wb.calibration.trust import set_trusted
from int8wb.calibration.workflow import calibrate

ROOT = Path(__file__).resolve().parents[2]
OCR = ROOT / "examples" / "ocr"

# (what the model reads, the label as the image list gives it, edits counted by hand)
KNOWN = [("kitten", "sitting", 3), ("canala", "canal", 1), ("574.510", "574.51", 1), ("2024", 2024, 0),
         ("", "ok", 2), ("VDF-3121", "VDT-3121", 1)]


@pytest.fixture(scope="module")
def ocr_metric():
    subprocess.run([sys.executable, str(OCR / "prepare.py")], check=True, capture_output=True)
    sys.path.insert(0, str(OCR))
    try:
        import ocr_metric
    finally:
        sys.path.remove(str(OCR))
    return ocr_metric


def reading(text: str, table: list[str]) -> np.ndarray:
    """CTC scores [1, 40, C] that greedy decoding reads as `text`: each character, then a blank."""
    scores = np.zeros((1, 40, len(table) + 1), dtype=np.float32)
    scores[0, :, 0] = 1.0
    for step, char in enumerate(text):
        scores[0, 2 * step, 0], scores[0, 2 * step, table.index(char) + 1] = 0.0, 1.0
    return scores


def levenshtein(a: str, b: str) -> int:
    """Edits from a to b, by the textbook recursion (the test's own, not the example's)."""
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def d(i: int, j: int) -> int:
        if not i or not j:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_corpus_cer_on_known_strings(ocr_metric):
    metric = ocr_metric.CorpusCER()
    for i, (read, label, _) in enumerate(KNOWN):
        metric.update(reading(read, ocr_metric.CHARACTERS), Sample(i, f"w{i}.png", label, "validation", False))
    edits = [e for _, _, e in KNOWN]
    lengths = [len(str(label)) for _, label, _ in KNOWN]
    assert edits == [levenshtein(r, str(label)) for r, label, _ in KNOWN]
    assert metric.per_sample() == list(zip(edits, lengths))
    assert metric.compute() == pytest.approx(8 / 32) == pytest.approx(sum(edits) / sum(lengths))
    # a ratio of sums, not the mean of per-word rates
    assert metric.compute() != pytest.approx(np.mean([e / n for e, n in zip(edits, lengths)]))


def test_a_short_calibration_with_it(ocr_metric, tmp_path):
    spec = load_spec(OCR / "ocr-cer.calibration.toml")
    spec.dataset.subset, spec.validation.subset, spec.evaluation = 16, 40, None
    spec.calibration.method = "default"
    spec.inference.duration, spec.inference.rounds = 0.3, 2
    spec.output.dir = str(tmp_path)
    set_trusted(tmp_path)  # results go outside the example's folder
    result = calibrate(spec, trust_custom_metrics=True)
    assert result["metric"] == "CorpusCER" and result["metric_higher_is_better"] is False
    assert "warnings" not in result  # per_sample() adds up to compute()
    low, high = result["drop_ci"]
    assert low <= result["drop"] <= high
    # FP32's figure, counted independently on the same 40 validation words
    validation = open_dataset(spec, inspect_model(spec.model_path), "validation")
    compiled = ov.Core().compile_model(str(spec.model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    words = validation.subset_indices()
    assert len(words) == 40
    counts = [(levenshtein(ocr_metric.decode(compiled(validation.load(i))[0]), str(validation.label(i))),
               len(str(validation.label(i)))) for i in words]
    assert result["fp32"]["accuracy"] == pytest.approx(sum(e for e, _ in counts) / sum(n for _, n in counts))
