"""Default (maximum performance): every INT8-able layer quantized by NNCF's post-training quantization."""
from __future__ import annotations

from typing import Callable

import openvino as ov

from ..datasets import Dataset
from ..spec import Spec
from .nncf import Feed, nncf_settings, quantize


def quantize_default(model: ov.Model, spec: Spec, dataset: Dataset, indices: list[int],
                     progress: Callable[[float], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> ov.Model:
    """Every INT8-able layer quantized: NNCF post-training quantization over the subset."""
    dataset.preload(indices, cancel)
    feed = Feed(dataset, indices, progress, cancel)
    return quantize(model, feed, **nncf_settings(spec, len(indices)))
