"""Calibration methods: an FP32 ov.Model and calibration samples in, an INT8 ov.Model out.

- `default`: every INT8-able layer (maximum performance);
- `accuracy_aware`: only the layers whose quantization keeps the drop within the budget;
- `weights_only`: INT8 weights, float activations (no calibration data);
- `nncf`: what they share with NNCF;
- `statistics`: NNCF's statistics collection with every infer request busy.
"""
from .accuracy_aware import accepts, calibrate_accuracy_aware
from .default import quantize_default
from .weights_only import compress_weights

__all__ = ["accepts", "calibrate_accuracy_aware", "compress_weights", "quantize_default"]
