"""The spec's [accuracy] table: which metric measures the drop, and how it reads the model's outputs
(`spec.Spec.accuracy`; the detection keys come from `spec_controls.DetectionControls`)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .spec_controls import DetectionControls, no_nul


class AccuracySpec(DetectionControls):
    metric: Literal["top1", "topk", "agreement", "custom", "iou", "miou", "pixel_accuracy", "coco_map",
                    "voc_map50"] = Field(
        "top1", description="top1/topk: classification against labels; agreement: share of samples "
                            "whose top-1 class equals the FP32 model's (needs no labels); custom: "
                            "a Python metric named by `custom` (runs only when the workspace trusts it); iou, miou, "
                            "pixel_accuracy: semantic segmentation against a segmentation dataset's masks; coco_map "
                            "(mAP@[.5:.95]), voc_map50 (mAP@0.5): object detection against a coco or voc "
                            "dataset's boxes, through `decoder`, computed by pycocotools")
    k: int = Field(5, ge=1, description="k of topk")
    threshold: float = Field(0.5, description="iou, miou, pixel_accuracy on a one-channel output: the foreground "
                                              "probability above which a pixel is foreground")
    output: str | None = Field(None, description="Model output holding the class scores; default the first")
    custom: Annotated[str, Field(pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$"), AfterValidator(no_nul)] | None = Field(
        None,
        description='"file.py:name" (relative to the spec). Per sample: a function name(output, label) -> float, '
                    'averaged. Dataset level: a class, or a function taking no arguments, called once per '
                    'evaluation pass, whose object has update(output, sample) (in dataset order; output is a copy '
                    'it may keep; sample has index, path, label as written, original_size (height, width) or '
                    'None, split) and compute() -> float, and optionally per_sample(): a float per sample (mean) '
                    'or a (numerator, denominator) pair per sample (ratio of sums: corpus CER, F1); the drop\'s '
                    'interval comes from it, and without it there is none')
    higher_is_better: bool = Field(True, description="Direction of the metric (false for error rates, losses)")
    needs_labels: bool = Field(True, description="custom only: whether the function needs labels")
    @model_validator(mode="after")
    def _custom_metric_named(self):
        if self.metric == "custom" and not self.custom:
            raise PydanticCustomError("custom_missing", 'metric "custom" needs custom = "file.py:function"')
        if self.metric in ("coco_map", "voc_map50") and not self.decoder:
            raise PydanticCustomError("decoder_missing", f'metric "{self.metric}" needs decoder = "ssd", "yolo" '
                                      'or "db" (how boxes are read from the output)')
        return self
