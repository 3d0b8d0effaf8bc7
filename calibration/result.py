"""The result of a calibration (what `workflow.calibrate` returns and writes beside the model), typed.

One definition gives validation, typed reading for every front end and the published JSON Schema
(`schema/result.schema.json`, from which the VS Code extension's TypeScript types are generated).
The wire shape is the JSON the engine has always written: a field that appeared in a later version
is optional, and `to_json()` gives back exactly the keys that were set, so a result read and written
again is unchanged. Rows (layers, speed records, probes) are TypedDicts: they stay plain dicts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict

from .spec import InferenceSpec

SCHEMA_PATH = Path(__file__).with_name("schema") / "result.schema.json"

Variant = Literal["fp32_f32", "fp32_default", "int8"]
"""How a model ran: FP32 in strict f32, FP32 as the device runs it by default, the INT8 model."""

_ROW = ConfigDict(extra="forbid")


class _Record(BaseModel):
    model_config = _ROW


# ---- rows: plain dicts with a declared shape ---------------------------------------------------

@with_config(_ROW)
class LatencyStats(TypedDict):
    median: float
    mean: float
    min: float
    max: float
    p90: NotRequired[float]


@with_config(_ROW)
class Speed(TypedDict):
    """One variant's speed (benchmark_app style), over interleaved rounds (results since rounds)."""
    throughput: float               # median over rounds (older results: one run)
    latency_ms: LatencyStats        # batch 1, one request in flight (older results: throughput mode)
    requests: int
    streams: int
    batch: int
    iterations: int
    rounds: NotRequired[list[float]]          # throughput of each round, samples/s
    spread: NotRequired[list[float]]          # [min, max] over rounds
    latency_rounds: NotRequired[list[float]]  # median batch-1 latency of each round, ms
    latency_mode: NotRequired[str]
    looks: NotRequired[int]                   # 2: the first rounds decided nothing, `more_rounds` ran
    config: NotRequired[dict[str, Any]]


@with_config(_ROW)
class LayerRow(TypedDict):
    """A layer of the compiled (runtime) model, with its time averaged over a few runs."""
    name: str
    type: str
    outputPrecisions: str
    runtimePrecision: str
    kernel: str
    originalLayers: list[str]
    time_us: float


@with_config(_ROW)
class LayerSummary(TypedDict):
    time_us_by_type: dict[str, float]
    layers_by_precision: dict[str, int]
    total_time_us: float


@with_config(_ROW)
class Fp32Layer(TypedDict):
    """A layer AccuracyAware left in FP32, and why."""
    name: str
    type: str
    score: float | None
    rank: NotRequired[int]
    macs: NotRequired[int]
    precise: NotRequired[bool]  # marked to run in strict f32 while the device runs floats in bf16
    reason: str


@with_config(_ROW)
class Probe(TypedDict):
    """One validation run of AccuracyAware's search, with the ranked groups `groups` in FP32."""
    groups: NotRequired[list[int]]
    fp32_layers: int
    macs: NotRequired[int]
    accuracy: float
    drop: float
    drop_relative: float
    drop_bound: NotRequired[float]
    ok: bool
    stopped_after: NotRequired[int]  # the validation ended after this many samples: it could no longer pass;
    # accuracy and drop are then the best the candidate could still have reached


@with_config(_ROW)
class ProblemRow(TypedDict):
    """A located problem (`calibration.problems.Problem`): here, a warning about the figures."""
    message: str
    path: str | None
    line: int | None
    key: str | None
    rule: str
    severity: str
    fix: str | None


# ---- records ---------------------------------------------------------------------------------

class DatasetInfo(_Record):
    kind: str = Field(description="The [dataset] kind")
    size: int = Field(description="Samples in [dataset]")
    subset: int = Field(description="Samples that fed calibration")
    subset_spec: int | str = Field(description="[dataset] subset as written: a count or a percent")
    seed: int


class AccuracyOn(_Record):
    role: Literal["validation", "dataset"] = Field(description="The spec table the drop is measured on")
    size: int


class Fp32Accuracy(_Record):
    accuracy: float
    precision_hint: str


class Int8Accuracy(_Record):
    accuracy: float


class HeldOut(_Record):
    """Accuracy on [evaluation], a set never used to calibrate."""
    fp32: float
    int8: float
    drop: float
    size: int
    drop_ci: list[float] | None = Field(None, description="95 % interval of the drop [low, high] (paired bootstrap)")


class Ratio(_Record):
    """A throughput ratio measured over interleaved rounds."""
    value: float = Field(description="Geometric mean of the per-round ratios (older results: one run's ratio)")
    ci: list[float] | None = Field(None, description="95 % interval [low, high], Student t over rounds")
    verdict: Literal["faster", "slower", "no measurable difference"] | None = Field(
        None, description="faster or slower only when the interval excludes 1")
    rounds: int | None = None


class Speedup(_Record):
    vs_f32: Ratio | float = Field(description="INT8 throughput over FP32 in strict f32 (older results: a number)")
    vs_default: Ratio | float = Field(
        description="INT8 throughput over FP32 as the device runs it by default (older results: a number)")

    latency_vs_f32: Ratio | None = Field(None, description="FP32 strict f32 batch-1 latency over INT8's (> 1: INT8 "
                                                          "faster with one request in flight)")
    latency_vs_default: Ratio | None = Field(None, description="FP32-as-run-by-default batch-1 latency over INT8's")

    def ratio(self, key: Literal["vs_f32", "vs_default"]) -> Ratio:
        """The ratio as a record, whatever version wrote it (older results held one run's number)."""
        value = getattr(self, key)
        return value if isinstance(value, Ratio) else Ratio(value=value)


class Machine(_Record):
    cpu: str
    cores: int
    load_average: list[float] | None = Field(None, description="1, 5, 15 min, as the speed was measured")


class ModelSize(_Record):
    fp32: int = Field(description="Bytes of .xml + .bin")
    int8: int = Field(description="Bytes of .xml + .bin")


class Outputs(_Record):
    model: str
    weights: str
    result: str
    report: str | None = Field(None, description="The HTML report (results since the report exists)")


class Timing(_Record):
    calibration: float
    total: float


class AccuracyAwareBudget(_Record):
    """AccuracyAware's promise, checked on the saved model's own validation run."""
    max_drop: float
    drop_type: Literal["absolute", "relative"]
    measured: float
    met: bool
    confidence: float | None = Field(None, description="The confidence the budget was judged at (0: measured drop)")
    bound: float | None = Field(None, description="The drop bound judged: the one-sided upper bound at `confidence`")
    guarantee: str | None = Field(None, description="The promise in words, and on which data")
    heldout: Literal["met", "exceeded", "undecided"] | None = Field(
        None, description="The held-out set's verdict on the budget (its drop's 95 % interval against max_drop); "
                          "exceeded: the promise does not hold on unseen data and the answer is set aside")
    unseen: str | None = Field(None, description="What the held-out set says of the budget, in words")


class Search(_Record):
    """How AccuracyAware's search ended."""
    strategy: str = Field("ranked", description="[calibration] search: ranked, or from_float (no ranking)")
    cut_short: bool = Field(description="The validation cap stopped the give-back pass: the answer may keep "
                                        "more layers in FP32 than needed (not minimal)")
    validations: int
    max_validations: int
    untried_groups: int = Field(description="FP32 groups not yet tried back in INT8 when it stopped")
    ranked_groups: int
    repeats_avoided: int = Field(0, description="Validations asked for a layer set already measured: none is run twice")
    ranked_on: str = Field("this process", description="Where the ranking probes ran: `this process`, or `ray` "
                                                        "(one task per probe, when the job runs on a Ray cluster)")
    stopped_early: int = Field(0, description="Validations ended as soon as their candidate could no longer pass "
                                              "(a per-sample metric with a best score): same decisions, fewer samples")
    samples_run: int = Field(0, description="Validation samples run over the whole search")
    probes_on_cluster: int = Field(0, description="Ranking probes a Ray task answered (the job's own process "
                                                  "takes the others, so a busy cluster never stalls it)")
    ranking_samples: int = Field(0, description="Validation samples every ranking probe ran (16, fewer when "
                                                "samples are large; 0: no ranking was needed)")


class AccuracyAwareRecord(_Record):
    met: bool
    validation_accuracy: float
    drop: float
    drop_relative: float
    quantized_layers: int = Field(description="Quantized layers: graph layers fed by a quantize operation in the "
                                              "Default model, the layers AccuracyAware chooses among")
    probes: list[Probe]


class CacheInfo(_Record):
    """Where a result the gate checks came from (`calibration.result_cache`)."""
    hit: bool
    key: str
    entry: str | None
    created: float
    seconds: float
    why: list[str]
    source: str = Field(description='"cached (date)" or "calibrated in N s; why"')


class Deployment(_Record):
    """The profile every figure was measured on (the spec's [deployment], [preprocessing], [inference])."""
    shape: list[list[int]] | None = Field(description="Static input shapes the model ran at and was saved with, "
                                                       "one per input; null: the model's own shapes")
    model_shape: list[list[int]] = Field(description="The FP32 model's own input shapes (-1: a dynamic dimension)")
    interpolation: str | None = Field(description="Resize implementation of image datasets; null: tensors as given")
    float_precision: str = Field(description="How the INT8 model's floating-point layers ran")


class Recommendation(_Record):
    """Ship INT8 only when it beats, on evidence, the FP32 model as the device runs it by default."""
    choice: Literal["int8", "keep-fp32"]
    reason: str
    answer: bool = Field(True, description="Whether the INT8 model was written as the answer (<model>.int8.*); "
                                           "false: set aside as <model>.int8.not-faster.* ([calibration] only_if_faster)")
    speedup_vs_default: Ratio = Field(description="The evidence: INT8 throughput over FP32-as-run-by-default")
    latency_vs_default: Ratio | None = Field(None, description="... and FP32-as-run's batch-1 latency over INT8's "
                                                               "(INT8 ships when faster on one, slower on neither)")
    latency_ms: dict[Variant, float] = Field(description="Batch-1 median latency of both")


class Result(_Record):
    """One calibration: FP32 against INT8 on accuracy, speed, size and per layer."""
    spec: str
    model: str = Field(description="The FP32 model (.xml)")
    device: str
    device_default_precision: str | None = Field(None, description="How the device runs FP32 by default")
    method: Literal["default", "accuracy_aware", "weights_only"]
    preset: str
    metric: str
    dataset: DatasetInfo
    accuracy_on: AccuracyOn | None = None
    fp32: Fp32Accuracy
    int8: Int8Accuracy
    drop: float = Field(description="FP32 accuracy minus INT8's on validation; positive: INT8 is worse")
    drop_relative: float | None = Field(None, description="The drop as a fraction of FP32's accuracy")
    drop_ci: list[float] | None = Field(None, description="95 % interval of the drop [low, high]: paired bootstrap "
                                        "over the validation samples")
    metric_higher_is_better: bool | None = None
    no_interval: str | None = Field(None, description="Why the drops have no interval (drop_ci absent): "
                                    "\"the metric gives no per_sample()\"")
    heldout: HeldOut | None = None
    recommendation: Recommendation | None = Field(None, description="int8 or keep-fp32, and why (results since "
                                                  "the recommendation exists)")
    throughput: dict[Variant, float] = Field(description="Samples per second")
    latency_ms: dict[Variant, float] = Field(description="Median latency")
    speed: dict[Variant, Speed]
    speedup: Speedup
    machine: Machine | None = Field(None, description="Where the speed was measured")
    model_size: ModelSize
    output: Outputs
    layers: dict[Variant, list[LayerRow]]
    layer_summary: dict[Variant, LayerSummary]
    int8_layer_count: int = Field(description="Layers that run INT8: runtime layers of the compiled INT8 model "
                                              "with u8/i8 runtimePrecision (OpenVINO fuses graph layers into them)")
    quantize_ops: int | None = Field(None, description="Quantize operations inserted: FakeQuantize operations in the "
                                                       "saved INT8 model's graph")
    settings: InferenceSpec = Field(description="The spec's [inference] table")
    timing_s: Timing
    versions: dict[str, str | None]
    notes: list[str]
    warnings: list[ProblemRow] | None = Field(
        None, description="What the figures rest on, located (e.g. a metric's per_sample() that does not add "
                          "up to its compute()); also in notes")
    budget: AccuracyAwareBudget | float | None = Field(
        None, description="AccuracyAware's budget and whether the saved model meets it (older results: a number)")
    fp32_layers: list[Fp32Layer] | None = Field(None, description="AccuracyAware: the layers left in FP32")
    accuracy_aware: AccuracyAwareRecord | None = Field(None, description="AccuracyAware: how the search went")
    search: Search | None = Field(None, description="AccuracyAware: whether the search was cut short")
    conversion: dict[str, str] | None = Field(None, description="A model given as ONNX, TFLite, Paddle or SavedModel: "
                                              "`source`, the converted `ir` it was calibrated as, and the `route`")
    controls: dict[str, Any] | None = Field(None, description="Every [calibration] control in force, and "
                                            "`ignored_layers`: the layers the ignored scope kept in floating point")
    deployment: Deployment | None = Field(None, description="The deployment profile the figures and the promise "
                                          "hold for (results since the profile exists)")
    gate: dict[str, Any] | None = Field(
        None, description="Added by the pytest gate: the budget checked (`calibration.gate.spec_budget`)")
    cache: CacheInfo | None = Field(None, description="Added by the pytest gate: where the result came from")

    @classmethod
    def of(cls, result: Result | dict) -> Result:
        """`result` as the model (a dict, e.g. read from JSON, is validated)."""
        return result if isinstance(result, Result) else cls.model_validate(result)

    def to_json(self) -> dict:
        """The JSON-able dict of the wire format: the keys that were set, in the engine's order."""
        return self.model_dump(exclude_unset=True)


class SummaryAccuracy(_Record):
    fp32: float | None
    int8: float | None


class Summary(_Record):
    """What an editor shows of a finished job's result (`calibration.jobs.summarise`)."""
    drop: float | None
    drop_relative: float | None
    accuracy: SummaryAccuracy
    metric: str | None
    speedup: Speedup | None
    speedup_vs_default: float | None
    speedup_verdict: str | None = None
    drop_ci: list[float] | None = None
    heldout: HeldOut | None = None
    throughput: dict[Variant, float] | None
    model_size: ModelSize | None
    int8_layer_count: int | None
    budget: AccuracyAwareBudget | float | None
    output: Outputs | None
    report: str | None
    notes: list[str]
    deployment: Deployment | None = Field(None, description="The profile the figures were measured on")
    fp32_layers: list[str] | None = Field(None, description="AccuracyAware: names of the layers left in FP32")
    recommendation: Recommendation | None = None


def json_schema() -> dict:
    """The published schema: a result document, with the job summary among its definitions."""
    schema = Result.model_json_schema()
    summary = Summary.model_json_schema()
    schema["$defs"] = dict(sorted({**schema.get("$defs", {}), **summary.pop("$defs", {}),
                                   "Summary": summary}.items()))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "int8-workbench calibration result"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    """Writes the schema under a temporary name beside `path`, then renames it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
