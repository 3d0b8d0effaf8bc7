"""The calibration spec file (`*.calibration.toml`): schema, loading and located errors.

pydantic gives us validation and the published JSON Schema from one definition; we add
the file/line/key of every error, since users fix specs in an editor, not in a traceback.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .guarded import read_text
from .accuracy_spec import AccuracySpec
from .spec_controls import IgnoredScopeSpec, PathText, QuantizerSpec, SmoothQuantSpec, Table
from .problems import CalibrationError, Problem
from .toml_lines import key_lines, line_of

SPEC_SUFFIX = ".calibration.toml"
SCHEMA_PATH = Path(__file__).with_name("schema") / "calibration.schema.json"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")




_Table = Table


class DatasetSpec(_Table):
    kind: Literal["imagenet", "image_list", "images", "npz", "generated", "segmentation", "coco", "voc"] = Field(
        description="imagenet: one sub-folder of images per class; image_list: a text file of "
                    "`path label` lines; images: an unannotated folder (Default method only); "
                    "npz: tensors named after the model inputs (or `inputs`) and optional `labels`; "
                    "generated: random tensors, for speed only; segmentation: a folder with images/ and masks/ "
                    "(class-index PNGs, paired by name); coco: a folder of images and a COCO instances JSON "
                    "(`annotations`); voc: a folder of images and a folder of Pascal VOC XML files (`annotations`, "
                    "paired by name), or a VOCdevkit year folder with `split`")
    path: PathText | None = Field(None, description="Folder or file, relative to the spec file (not for generated)")
    subset: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*%\s*$")] = Field(
        "100%", description='Part of the dataset that feeds calibration: a percent ("25%") or a count (300)')
    seed: int = Field(0, description="Seed of the deterministic subset selection")
    count: int = Field(32, ge=1, description="Number of random samples (generated only)")
    annotations: PathText | None = Field(
        None, description="coco: the instances JSON; voc: the folder of XML files (one per image, same stem; "
                          "default with `split`: path's Annotations/); relative to the spec file")
    split: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] | None = Field(
        None, description='voc: read path as a VOCdevkit year folder (Annotations/, JPEGImages/, ImageSets/Main/) '
                          'and take the images its ImageSets/Main/<split>.txt lists, e.g. "val"')
    classes: list[str] | None = Field(
        None, min_length=1, description="coco, voc: category names in the model's class order (index 0 first); "
                                        "default: coco's categories by id, voc's names in sorted order")
    recursive: bool = Field(False, description="images: also the images in sub-folders (a sub-folder of masks "
                                               "or thumbnails would otherwise join the samples unnoticed)")

    @field_validator("split", mode="before")
    @classmethod
    def _voc_list(cls, value, info):
        if value is not None and info.data.get("kind", "voc") != "voc":  # a bad kind is its own error
            raise PydanticCustomError("split_not_voc", "split names a Pascal VOC ImageSets list: only for kind = \"voc\"")
        if isinstance(value, str) and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", value):
            raise PydanticCustomError("split_name", "split is the name of a list in ImageSets/Main, without "
                                      "folder or .txt (e.g. \"val\"), got {got}", {"got": repr(value)})
        return value

    @field_validator("subset")
    @classmethod
    def _percent_range(cls, value):
        if isinstance(value, str):
            pct = float(_PERCENT.match(value).group(1))
            if not 0 < pct <= 100:
                raise ValueError("a percent must be above 0 % and at most 100 %")
        return value

    def subset_size(self, total: int) -> int:
        """How many of `total` samples the subset selects (0 when the percent selects none)."""
        if isinstance(self.subset, int):
            return min(self.subset, total)
        pct = float(_PERCENT.match(self.subset).group(1))
        return min(total, int(total * pct / 100 + 1e-9))


INTERPOLATIONS = ("opencv-linear", "opencv-area", "opencv-nearest", "opencv-cubic",
                  "pillow-bilinear", "pillow-bicubic", "pillow-lanczos")


class PreprocessingSpec(_Table):
    resize: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=2, max_length=2,
        description="[height, width]; default: the model input's spatial size")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Layout of the model input")
    color: Literal["RGB", "BGR", "GRAY"] | None = Field(
        None, description="Channel order fed to the model; default GRAY for 1 channel, else RGB")
    mean: list[float] = Field([0.0], min_length=1, description="Subtracted per channel (pixel values 0..255)")
    scale: list[float] = Field([1.0], min_length=1, description="Divides per channel after the mean")
    letterbox: bool = Field(False, description="Keep the aspect ratio: resize within `resize` (or the model input) "
                                               "and pad the rest (detection and OCR models are trained so)")
    pad_value: Annotated[int, Field(ge=0, le=255)] | Literal["mean"] = Field(
        114, description="letterbox: the padding's pixel value (0..255, every channel), or \"mean\": padding that "
                         "is exactly 0 once normalised (PaddleOCR pads normalised zeros)")
    align: Literal["center", "top-left"] = Field("center", description="letterbox: where the image sits (YOLO: "
                                                                        "center; PaddleOCR recognisers: top-left)")
    interpolation: Literal[INTERPOLATIONS] = Field(
        "opencv-linear", description="Resize implementation, bit-exact with the library it names: opencv-* decode "
        "with cv2.imdecode and resize with cv2.resize (INTER_LINEAR, INTER_AREA, INTER_NEAREST, INTER_CUBIC), "
        "pillow-* decode with Pillow and resize with Image.resize (antialiased when shrinking). INT8 accuracy moves "
        "with the resize code by up to 1 pp: name the one your deployment uses. Default opencv-linear, what "
        "OpenVINO's samples and most deployment code call (cv::resize's default)")

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value):
        if any(v == 0 for v in value):
            raise ValueError("scale values must not be 0")
        return value


class CalibrationSpec(_Table):
    method: Literal["default", "accuracy_aware", "weights_only"] = Field(
        "default", description="default: every INT8-able layer runs INT8 (maximum performance); "
                               "accuracy_aware: only layers that keep the drop within max_drop; weights_only: "
                               "INT8 weights, float activations (no calibration data needed)")
    model_type: Literal["cnn", "transformer"] = Field(
        "cnn", description="transformer: NNCF's transformer rules (quantizer placement for attention, SmoothQuant)")
    bias_correction: Literal["fast", "full", "off"] = Field(
        "fast", description="Bias correction after quantization: fast, full (slower, sometimes more accurate), off")
    statistics_samples: int | None = Field(
        None, ge=1, description="Samples the statistics see (NNCF's subset_size); default: the whole [dataset] subset")
    weights_mode: Literal["int8_asym", "int8_sym"] = Field("int8_asym", description="weights_only: the INT8 format")
    ignored_scope: IgnoredScopeSpec = Field(IgnoredScopeSpec(), description="Layers kept in floating point by hand: "
                                            "never quantized, and never searched by AccuracyAware")
    activations: QuantizerSpec = QuantizerSpec()
    weights: QuantizerSpec = QuantizerSpec()
    smooth_quant: SmoothQuantSpec = SmoothQuantSpec()

    @field_validator("activations")
    @classmethod
    def _per_tensor(cls, value):
        if value.per_channel:
            raise PydanticCustomError("per_tensor", "activations are quantized per tensor on every device "
                                      "(per_channel applies to [calibration.weights])")
        return value
    max_drop: float = Field(0.005, ge=0, description="accuracy_aware: largest allowed drop "
                            "(absolute: in metric units, 0.005 = 0.5 pp; relative: a fraction of FP32's)")
    drop_type: Literal["absolute", "relative"] = Field("absolute", description="How max_drop is measured")
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric quantization; mixed: asymmetric activations")
    confidence: float = Field(
        0.95, ge=0, lt=1, description="accuracy_aware: a candidate is accepted only when its drop is within "
        "max_drop with this confidence (one-sided upper bound of a paired bootstrap over the validation "
        "samples), so the answer does not fit the validation set's luck; 0: on the measured drop alone")
    only_if_faster: bool = Field(True, description="The INT8 model is the answer only when measurably faster than FP32 "
                                 "as the device runs it; else it is set aside as <model>.int8.not-faster.* (false: always)")
    faster_in: Literal["either", "throughput", "latency"] = Field(
        "either", description="Which speed the recommendation rests on: either (faster in throughput or in batch-1 "
        "latency, slower in neither), throughput (requests in flight) or latency (batch 1, one request in flight: "
        "a model served one request at a time)")
    search: Literal["ranked", "from_float"] = Field(
        "ranked", description="accuracy_aware: ranked: rank the layers, find the shortest prefix of the ranking that "
        "keeps the budget, then give layers back to INT8; from_float: no ranking, every layer starts in float and goes "
        "back to INT8 costliest first (fewer layers left in float where many are needed, BENCHMARKS.md)")
    precise_reverted: bool = Field(False, description="accuracy_aware, on a device that runs floats in bf16 by default: "
                                   "the layers put back in float are marked strict f32 in the IR (measured and shipped "
                                   "so); off by default, as it did not shorten the search on PP-OCRv5 (BENCHMARKS.md)")


class InferenceSpec(_Table):
    batch: int = Field(1, ge=1, description="Batch size for the speed comparison")
    streams: int | Literal["auto"] = Field("auto", description="Inference streams (\"auto\": device decides)")
    requests: int | Literal["auto"] = Field("auto", description="Parallel infer requests (\"auto\": optimal)")
    duration: float = Field(3.0, gt=0, le=600, description="Seconds of throughput measurement per model variant, "
                            "split over `rounds`; batch-1 latency (one request in flight) runs half as long")
    rounds: int = Field(5, ge=1, le=100, description="Interleaved rounds (A B C, B C A, C A B, then reversed ...): "
                        "every variant runs once per round, so all see the same machine; the spread and the "
                        "intervals come from them")
    more_rounds: int = Field(5, ge=0, le=100, description="A second look: when the first `rounds` show INT8 neither "
                             "faster nor slower than FP32 as the device runs it, this many more rounds run and the "
                             "recommendation is judged on all of them (0: never). Two looks make a false \"faster\" "
                             "at most 5 % likely instead of 2.5 %")
    int8_float_precision: Literal["default", "f32"] = Field(
        "default", description="How the INT8 model's layers that stay in floating point run, for its accuracy, "
                               "AccuracyAware's search and its speed: the device default (bf16 on AMX CPUs) or "
                               "strict f32. Deploy the INT8 model the same way.")

    @field_validator("streams", "requests")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 or \"auto\"")
        return value


class GateSpec(_Table):
    """Budgets the pytest gate enforces (see the README's pytest section)."""
    max_drop: float | None = Field(None, ge=0, description="Largest allowed accuracy drop as a fraction "
                                   "(0.01 = 1 pp); default: the method's budget, else 0.01")
    min_speedup: float | None = Field(None, gt=0, description="Smallest allowed INT8 speedup")
    speedup_baseline: Literal["f32", "default"] = Field(
        "default", description="Speedup against the FP32 model in strict f32, or as the device runs it by default")
    max_model_size: int | None = Field(None, ge=1, description="Largest allowed INT8 model size in bytes (.xml + .bin)")
    undecided: Literal["fail", "skip"] = Field("fail", description="When a budget's interval straddles it (the data "
                                               "cannot tell met from exceeded): fail the test, or skip it with the reason")


class DeploymentSpec(_Table):
    """The profile the model is deployed with: every figure and the promise are measured on it."""
    shape: list[int] | list[list[int]] | None = Field(
        None, description="Static input shape the model runs at, e.g. [1, 3, 640, 640] (or one per model input, in "
                          "order). Statistics, validation, the AccuracyAware search, the held-out check and speed run on "
                          "the model reshaped to it, and the INT8 model is saved with it: OpenVINO compiles a fixed shape "
                          "differently, and INT8 accuracy moves with it. Default: the model's own (dynamic) shape")

    @field_validator("shape", mode="before")
    @classmethod
    def _static(cls, value):
        # One clear message instead of one per union member.
        shapes = [value] if isinstance(value, list) and all(isinstance(d, int) for d in value) else value
        if value is not None and not (isinstance(shapes, list) and shapes and all(
                isinstance(s, list) and 1 <= len(s) <= 8 and all(type(d) is int and d >= 1 for d in s)
                for s in shapes)):
            raise PydanticCustomError("static_shape", "a shape is a list of positive integers such as "
                                      "[1, 3, 640, 640] (or a list of them, one per model input), got {got}",
                                      {"got": repr(value)})
        return value

    def shapes(self) -> list[list[int]] | None:
        if self.shape is None:
            return None
        return [self.shape] if isinstance(self.shape[0], int) else list(self.shape)


class OutputSpec(_Table):
    dir: PathText = Field("calibrated", description="Folder for the INT8 model and the result, relative to the spec")


class Spec(_Table):
    """One calibration: model, data, method, and how to compare the result."""
    model: PathText = Field(description="FP32 IR model (.xml; its .bin beside it), relative to the spec file")
    device: str = Field("CPU", description="Target device")
    dataset: DatasetSpec
    validation: DatasetSpec | None = Field(
        None, description="Where accuracy and the drop are measured; default: all of [dataset]")
    evaluation: DatasetSpec | None = Field(
        None, description="Optional held-out set, never used to calibrate: measured on FP32 and INT8 too")
    preprocessing: PreprocessingSpec = PreprocessingSpec()
    accuracy: AccuracySpec = AccuracySpec()
    calibration: CalibrationSpec = CalibrationSpec()
    inference: InferenceSpec = InferenceSpec()
    output: OutputSpec = OutputSpec()
    gate: GateSpec = GateSpec()
    deployment: DeploymentSpec = DeploymentSpec()

    _path: Path = PrivateAttr(default=Path("spec.calibration.toml"))
    _text: str = PrivateAttr(default="")

    @property
    def path(self) -> Path:
        return self._path

    def resolve(self, relative: str) -> Path:
        """`relative` against the spec's folder; never raises (a symlink loop stays unresolved and
        is then reported as missing or unreadable where it is used)."""
        joined = self._path.parent / relative
        try:
            return joined.resolve()
        except (OSError, RuntimeError, ValueError):
            return Path(os.path.abspath(joined))

    @property
    def model_path(self) -> Path:
        return self.resolve(self.model)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output.dir)

    def line(self, *keys: str) -> int:
        return line_of(self._text, keys)

    def written(self, *keys: str) -> bool:
        """Whether the file sets `keys` itself (a defaulted key has no line of its own)."""
        return tuple(keys) in key_lines(self._text)

    def problem(self, message: str, *keys: str, rule: str = "spec", fix: str | None = None,
                severity: str = "error") -> Problem:
        """A problem located at `keys` of this spec."""
        return Problem(message, path=str(self._path), line=self.line(*keys), key=".".join(keys) or None,
                       rule=rule, fix=fix, severity=severity)


def load_spec(path: str | Path, text: str | None = None) -> Spec:
    """Parses and validates a spec; `text` overrides the file (an editor's unsaved buffer)."""
    path = Path(path).resolve()
    text, data = read_toml(path, text, "spec")
    return spec_from_data(data, path, text)


def spec_from_data(data: Mapping[str, Any], path: str | Path, text: str = "") -> Spec:
    """Validates spec tables read elsewhere (e.g. a drop policy's, with the model it applies to):
    problems are located in `text`, the file at `path` the tables come from, and relative paths
    resolve against that file."""
    path = Path(path).resolve()
    try:
        spec = Spec.model_validate(dict(data))
    except ValidationError as exc:
        raise CalibrationError(_merge([located(path, text, err) for err in exc.errors()])) from None
    spec._path, spec._text = path, text
    return spec


def read_toml(path: Path, text: str | None, what: str, fix: str | None = None) -> tuple[str, dict]:
    """(text, table) of a TOML file or of the editor's `text`; errors name the file and line. A `.json`
    file holds the same tables as JSON: how a program hands a spec to a worker process."""
    if text is None:
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(Problem(f"cannot read the {what}: {exc}", path=str(path), fix=fix)) from None
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        return text, json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError both are
        match = re.search(r"line (\d+)", str(exc))
        raise CalibrationError(Problem(f"invalid {kind}: {exc}", path=str(path),
                                       line=int(match.group(1)) if match else 1, rule=kind.lower())) from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise CalibrationError(Problem(f"invalid {kind}: nested too deeply", path=str(path), line=1,
                                       rule=kind.lower())) from None


def located(path: Path, text: str, err: dict) -> Problem:
    # Union members add their type name to loc ("subset", "int"); keep only real keys.
    loc = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_type_tag(p))
    key = ".".join(str(p) for p in loc)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'" + _did_you_mean(loc)
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == "literal_error":
        message = f"{message}, got {err.get('input')!r}"
    return Problem(message, path=str(path), line=line_of(text, loc), key=key, rule="spec")


def _merge(problems: list[Problem]) -> list[Problem]:
    """A union field fails once per member; say it once, listing what each member wanted."""
    merged: dict[str | None, Problem] = {}
    for p in problems:
        if p.key in merged:
            p = Problem(f"{merged[p.key].message}; or {p.message}", p.path, p.line, p.key, p.rule)
        merged[p.key] = p
    return list(merged.values())


def _is_type_tag(part: str) -> bool:
    return part in {"int", "str", "float", "list[int]", "constrained-int", "constrained-str", "none"} \
        or part.startswith(("literal[", "function-after[", "constrained-"))


def _did_you_mean(loc: tuple) -> str:
    model: type[BaseModel] = Spec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        ann = model.model_fields.get(str(part))
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            return ""
        model = ann.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(model.model_fields)}"


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "int8-workbench calibration spec"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
