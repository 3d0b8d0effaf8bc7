"""The spec's calibration controls beyond the method: what NNCF lets a practitioner steer (ignored
scope, range estimators, per-channel weights, SmoothQuant). `spec.CalibrationSpec` holds them.
Also the [accuracy] keys of object detection (how boxes are read from an output): `accuracy_spec.AccuracySpec`
builds on them; and what every spec table shares (`Table`, `PathText`)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class Table(BaseModel):
    """A spec table: unknown keys are errors, defaults are validated too."""
    model_config = ConfigDict(extra="forbid", validate_default=True)


def no_nul(value: str) -> str:
    if "\0" in value:
        raise PydanticCustomError("nul_in_path", "a path cannot contain a NUL character")
    return value


PathText = Annotated[str, AfterValidator(no_nul)]  # a file or folder name the spec gives


class Subgraph(Table):
    inputs: list[str] = Field(min_length=1, description="Layer names where the subgraph starts")
    outputs: list[str] = Field(min_length=1, description="Layer names where it ends")


class IgnoredScopeSpec(Table):
    """Layers kept in floating point by hand (NNCF's ignored scope)."""
    names: list[str] = Field([], description="Layer names (as in the IR's XML)")
    types: list[str] = Field([], description="Layer types, e.g. \"MatMul\", \"Softmax\"")
    patterns: list[str] = Field([], description="Regular expressions matched at the start of layer names")
    subgraphs: list[Subgraph] = Field([], description="Everything between `inputs` and `outputs`")
    strict: bool = Field(True, description="Every entry must match a layer (an error otherwise); "
                                           "false: an entry that matches nothing is a warning")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value):
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
        return value

    def empty(self) -> bool:
        return not (self.names or self.types or self.patterns or self.subgraphs)


RANGE_ESTIMATORS = ("minmax", "mean_minmax", "median_minmax", "mean_no_outliers_minmax", "mean_quantile",
                    "histogram")


class QuantizerSpec(Table):
    range_estimator: Literal[RANGE_ESTIMATORS] | None = Field(
        None, description="How the quantization range is estimated from the statistics; default: NNCF's")
    per_channel: bool | None = Field(None, description="weights only: one scale per output channel (NNCF's default: "
                                                       "yes for CPU); activations are always per tensor")


class SmoothQuantSpec(Table):
    """SmoothQuant migrates activation outliers into weights (model_type = "transformer")."""
    matmul: float = Field(0.95, ge=-1, le=1, description="alpha for MatMul layers; -1 turns it off for them")
    convolution: float = Field(-1, ge=-1, le=1, description="alpha for Convolution layers; -1 turns it off")


class DetectionControls(Table):
    """[accuracy] keys of object detection: the output decoder and its thresholds."""
    decoder: Literal["ssd", "yolo", "db"] | None = Field(
        None, description="coco_map, voc_map50: how boxes are read from the output. ssd: DetectionOutput "
                          "[1, 1, N, 7] (image_id, label, confidence, x1, y1, x2, y2 normalised to the input); "
                          "yolo: [1, 4 + C, anchors] (cx, cy, w, h in input pixels, then C class scores), with "
                          "NMS; db: a text probability map [1, 1, H, W] made into boxes (DBNet, PaddleOCR). "
                          "Boxes are mapped back to the original image through [preprocessing] (resize, letterbox)")
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Boxes scoring below it are dropped (ssd, yolo: class confidence, default "
                                      "0.001; db: the box's mean probability, default 0.6)")
    nms_iou: float = Field(0.7, gt=0, le=1, description="yolo: IoU above which a box of the same class with a "
                                                        "lower score is suppressed")
    max_detections: int = Field(100, ge=1, description="Boxes per image the metric keeps, best first (COCO: 100)")
    label_offset: int = Field(0, description="ssd, yolo: the model's label minus the dataset's class index "
                                             "(1 for a model whose class 0 is the background)")
    binary_threshold: float = Field(0.3, gt=0, lt=1, description="db: probability above which a pixel is text")
    unclip_ratio: float = Field(1.5, ge=0, description="db: how far a text region is grown (by area * ratio / "
                                                       "perimeter on every side), as DBNet was trained")
    min_size: float = Field(3.0, ge=0, description="db: regions whose shorter side (in output pixels) is below "
                                                   "it are dropped")
    boxes: Literal["axis-aligned", "rotated"] = Field(
        "axis-aligned", description="db: rotated: each text region's minimum-area rectangle, grown by unclip_ratio, "
                                    "as PaddleOCR's DBPostProcess gives it (a quadrilateral), scored by polygon IoU "
                                    "against the ground truth's COCO segmentation polygons (else its bbox); "
                                    "axis-aligned: the regions' upright boxes, scored by box IoU")

    @field_validator("boxes")
    @classmethod
    def _rotated_from_db(cls, value, info):
        if value == "rotated" and info.data.get("decoder", "db") != "db":  # a bad decoder is its own error
            raise PydanticCustomError("rotated_needs_db", "rotated boxes are read from a text probability map: "
                                      "decoder = \"db\" (ssd and yolo give axis-aligned boxes)")
        return value
