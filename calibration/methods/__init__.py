"""Calibration methods: an FP32 ov.Model and calibration samples in, an INT8 ov.Model out.

- `default`: every INT8-able layer (maximum performance);
- `accuracy_aware`: only the layers whose quantization keeps the drop within the budget;
- `nncf`: what both share with NNCF.
"""
from .accuracy_aware import accepts, calibrate_accuracy_aware
from .default import quantize_default

__all__ = ["accepts", "calibrate_accuracy_aware", "quantize_default"]
