"""Custom metrics for the PP-OCRv5 recogniser: CTC greedy decoding, exact match and CER.

Named in ocr.calibration.toml as `custom = "ocr_metric.py:exact_match"`; each function takes one
sample's model output ([1, T, C] probabilities or logits, or [T, C]) and its label (the word from
the image list) and returns a float. `CorpusCER` (ocr-cer.calibration.toml) is a dataset-level
metric: one character error rate over all the words, with (edits, length) per word for intervals.

CTC convention (PaddleOCR's CTCLabelDecode): class 0 is the blank; class i >= 1 is line i - 1 of
model/characters.txt (the ONNX `character` metadata, then the " " PaddleOCR appends when
use_space_char is on). Greedy decoding: argmax per time step, collapse repeats, drop blanks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_CHARS_FILE = Path(__file__).resolve().parent / "model" / "characters.txt"
# Split on "\n" only: str.splitlines would also split on U+2028 etc. and shift the table.
try:
    CHARACTERS: list[str] = _CHARS_FILE.read_text(encoding="utf-8").split("\n")[:-1]
except FileNotFoundError:
    raise FileNotFoundError(f"{_CHARS_FILE} is missing: run `python examples/ocr/prepare.py` first") from None
_TABLE = np.array([""] + CHARACTERS, dtype=object)   # index 0 = blank -> ""


def _scores(output) -> np.ndarray:
    """[T, C] scores of one sample from [1, T, C], [T, C], or a dict/list holding that array first."""
    if isinstance(output, dict):
        output = next(iter(output.values()))
    elif isinstance(output, (list, tuple)):
        output = output[0]
    arr = np.asarray(output)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise ValueError(f"expected one sample's output [1, T, C], got {list(arr.shape)}")
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[1] != len(_TABLE):
        raise ValueError(f"expected [T, {len(_TABLE)}] CTC scores, got {list(arr.shape)}")
    return arr


def decode(output) -> str:
    """CTC greedy decoding of one sample (argmax is the same for probabilities and logits)."""
    idx = _scores(output).argmax(axis=-1)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    return "".join(_TABLE[idx[keep]])


def _text(label) -> str:
    # image_list gives labels that are all digits as int ("2024" -> 2024); the rest as str.
    return str(label).strip()


def exact_match(output, label) -> float:
    """1.0 when the decoded text equals the label exactly (case and punctuation included)."""
    return 1.0 if decode(output) == _text(label) else 0.0


exact_match.best = 1.0  # no word scores more: AccuracyAware may stop a failing candidate's validation early


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(output, label) -> float:
    """Levenshtein distance / len(label): 0.0 is perfect, lower is better (higher_is_better = false)."""
    truth = _text(label)
    return _edit_distance(decode(output), truth) / max(1, len(truth))


class CorpusCER:
    """Corpus character error rate, dataset level: all edits over all reference characters.

    Named as `custom = "ocr_metric.py:CorpusCER"` (ocr-cer.calibration.toml); lower is better. Long
    words weigh as much as their characters, unlike the mean of per-word rates
    (`character_error_rate`). `per_sample()` gives each word's (edits, reference length), so the
    drop's interval is a paired bootstrap of the ratio of sums over the words."""

    def __init__(self):
        self.pairs: list[tuple[int, int]] = []

    def update(self, output, sample) -> None:
        truth = _text(sample.label)
        self.pairs.append((_edit_distance(decode(output), truth), len(truth)))

    def compute(self) -> float:
        characters = sum(n for _, n in self.pairs)
        return sum(e for e, _ in self.pairs) / characters if characters else float("nan")

    def per_sample(self) -> list[tuple[int, int]]:
        return self.pairs
