// Generated from calibration/schema/result.schema.json by editor_client/vscode/scripts/schema_to_ts.py: do not edit.
// Regenerate with `make schema` (tests/editor_client/test_vscode_types.py checks it is current).

/** One calibration: FP32 against INT8 on accuracy, speed, size and per layer. */
export interface Result {
  spec: string;
  /** The FP32 model (.xml) */
  model: string;
  device: string;
  /** How the device runs FP32 by default */
  device_default_precision?: string | null;
  method: "default" | "accuracy_aware" | "weights_only";
  preset: string;
  metric: string;
  dataset: DatasetInfo;
  accuracy_on?: AccuracyOn | null;
  fp32: Fp32Accuracy;
  int8: Int8Accuracy;
  /** FP32 accuracy minus INT8's on validation; positive: INT8 is worse */
  drop: number;
  /** The drop as a fraction of FP32's accuracy */
  drop_relative?: number | null;
  /** 95 % interval of the drop [low, high]: paired bootstrap over the validation samples */
  drop_ci?: number[] | null;
  metric_higher_is_better?: boolean | null;
  /** Why the drops have no interval (drop_ci absent): "the metric gives no per_sample()" */
  no_interval?: string | null;
  heldout?: HeldOut | null;
  /** int8 or keep-fp32, and why (results since the recommendation exists) */
  recommendation?: Recommendation | null;
  /** Samples per second */
  throughput: { [K in "fp32_f32" | "fp32_default" | "int8"]?: number };
  /** Median latency */
  latency_ms: { [K in "fp32_f32" | "fp32_default" | "int8"]?: number };
  speed: { [K in "fp32_f32" | "fp32_default" | "int8"]?: Speed };
  speedup: Speedup;
  /** Where the speed was measured */
  machine?: Machine | null;
  model_size: ModelSize;
  output: Outputs;
  layers: { [K in "fp32_f32" | "fp32_default" | "int8"]?: LayerRow[] };
  layer_summary: { [K in "fp32_f32" | "fp32_default" | "int8"]?: LayerSummary };
  /** Layers that run INT8: runtime layers of the compiled INT8 model with u8/i8 runtimePrecision (OpenVINO fuses graph layers into them) */
  int8_layer_count: number;
  /** Quantize operations inserted: FakeQuantize operations in the saved INT8 model's graph */
  quantize_ops?: number | null;
  /** The spec's [inference] table */
  settings: InferenceSpec;
  timing_s: Timing;
  versions: { [key: string]: string | null };
  notes: string[];
  /** What the figures rest on, located (e.g. a metric's per_sample() that does not add up to its compute()); also in notes */
  warnings?: ProblemRow[] | null;
  /** AccuracyAware's budget and whether the saved model meets it (older results: a number) */
  budget?: AccuracyAwareBudget | number | null;
  /** AccuracyAware: the layers left in FP32 */
  fp32_layers?: Fp32Layer[] | null;
  /** AccuracyAware: how the search went */
  accuracy_aware?: AccuracyAwareRecord | null;
  /** AccuracyAware: whether the search was cut short */
  search?: Search | null;
  /** A model given as ONNX, TFLite, Paddle or SavedModel: `source`, the converted `ir` it was calibrated as, and the `route` */
  conversion?: { [key: string]: string } | null;
  /** Every [calibration] control in force, and `ignored_layers`: the layers the ignored scope kept in floating point */
  controls?: { [key: string]: unknown } | null;
  /** The deployment profile the figures and the promise hold for (results since the profile exists) */
  deployment?: Deployment | null;
  /** Added by the pytest gate: the budget checked (`calibration.gate.spec_budget`) */
  gate?: { [key: string]: unknown } | null;
  /** Added by the pytest gate: where the result came from */
  cache?: CacheInfo | null;
}

/** AccuracyAware's promise, checked on the saved model's own validation run. */
export interface AccuracyAwareBudget {
  max_drop: number;
  drop_type: "absolute" | "relative";
  measured: number;
  met: boolean;
  /** The confidence the budget was judged at (0: measured drop) */
  confidence?: number | null;
  /** The drop bound judged: the one-sided upper bound at `confidence` */
  bound?: number | null;
  /** The promise in words, and on which data */
  guarantee?: string | null;
  /** The held-out set's verdict on the budget (its drop's 95 % interval against max_drop); exceeded: the promise does not hold on unseen data and the answer is set aside */
  heldout?: "met" | "exceeded" | "undecided" | null;
  /** What the held-out set says of the budget, in words */
  unseen?: string | null;
}

export interface AccuracyAwareRecord {
  met: boolean;
  validation_accuracy: number;
  drop: number;
  drop_relative: number;
  /** Quantized layers: graph layers fed by a quantize operation in the Default model, the layers AccuracyAware chooses among */
  quantized_layers: number;
  probes: Probe[];
}

export interface AccuracyOn {
  /** The spec table the drop is measured on */
  role: "validation" | "dataset";
  size: number;
}

/** Where a result the gate checks came from (`calibration.result_cache`). */
export interface CacheInfo {
  hit: boolean;
  key: string;
  entry: string | null;
  created: number;
  seconds: number;
  why: string[];
  /** "cached (date)" or "calibrated in N s; why" */
  source: string;
}

export interface DatasetInfo {
  /** The [dataset] kind */
  kind: string;
  /** Samples in [dataset] */
  size: number;
  /** Samples that fed calibration */
  subset: number;
  /** [dataset] subset as written: a count or a percent */
  subset_spec: number | string;
  seed: number;
}

/** The profile every figure was measured on (the spec's [deployment], [preprocessing], [inference]). */
export interface Deployment {
  /** Static input shapes the model ran at and was saved with, one per input; null: the model's own shapes */
  shape: number[][] | null;
  /** The FP32 model's own input shapes (-1: a dynamic dimension) */
  model_shape: number[][];
  /** Resize implementation of image datasets; null: tensors as given */
  interpolation: string | null;
  /** How the INT8 model's floating-point layers ran */
  float_precision: string;
}

export interface Fp32Accuracy {
  accuracy: number;
  precision_hint: string;
}

/** A layer AccuracyAware left in FP32, and why. */
export interface Fp32Layer {
  name: string;
  type: string;
  score: number | null;
  rank?: number;
  macs?: number;
  precise?: boolean;
  reason: string;
}

/** Accuracy on [evaluation], a set never used to calibrate. */
export interface HeldOut {
  fp32: number;
  int8: number;
  drop: number;
  size: number;
  /** 95 % interval of the drop [low, high] (paired bootstrap) */
  drop_ci?: number[] | null;
}

export interface InferenceSpec {
  /** Batch size for the speed comparison */
  batch?: number;
  /** Inference streams ("auto": device decides) */
  streams?: number | "auto";
  /** Parallel infer requests ("auto": optimal) */
  requests?: number | "auto";
  /** Seconds of throughput measurement per model variant, split over `rounds`; batch-1 latency (one request in flight) runs half as long */
  duration?: number;
  /** Interleaved rounds (A B C, B C A, C A B, then reversed ...): every variant runs once per round, so all see the same machine; the spread and the intervals come from them */
  rounds?: number;
  /** A second look: when the first `rounds` show INT8 neither faster nor slower than FP32 as the device runs it, this many more rounds run and the recommendation is judged on all of them (0: never). Two looks make a false "faster" at most 5 % likely instead of 2.5 % */
  more_rounds?: number;
  /** How the INT8 model's layers that stay in floating point run, for its accuracy, AccuracyAware's search and its speed: the device default (bf16 on AMX CPUs) or strict f32. Deploy the INT8 model the same way. */
  int8_float_precision?: "default" | "f32";
}

export interface Int8Accuracy {
  accuracy: number;
}

export interface LatencyStats {
  median: number;
  mean: number;
  min: number;
  max: number;
  p90?: number;
}

/** A layer of the compiled (runtime) model, with its time averaged over a few runs. */
export interface LayerRow {
  name: string;
  type: string;
  outputPrecisions: string;
  runtimePrecision: string;
  kernel: string;
  originalLayers: string[];
  time_us: number;
}

export interface LayerSummary {
  time_us_by_type: { [key: string]: number };
  layers_by_precision: { [key: string]: number };
  total_time_us: number;
}

export interface Machine {
  cpu: string;
  cores: number;
  /** 1, 5, 15 min, as the speed was measured */
  load_average?: number[] | null;
}

export interface ModelSize {
  /** Bytes of .xml + .bin */
  fp32: number;
  /** Bytes of .xml + .bin */
  int8: number;
}

export interface Outputs {
  model: string;
  weights: string;
  result: string;
  /** The HTML report (results since the report exists) */
  report?: string | null;
}

/** One validation run of AccuracyAware's search, with the ranked groups `groups` in FP32. */
export interface Probe {
  groups?: number[];
  fp32_layers: number;
  macs?: number;
  accuracy: number;
  drop: number;
  drop_relative: number;
  drop_bound?: number;
  ok: boolean;
  stopped_after?: number;
}

/** A located problem (`calibration.problems.Problem`): here, a warning about the figures. */
export interface ProblemRow {
  message: string;
  path: string | null;
  line: number | null;
  key: string | null;
  rule: string;
  severity: string;
  fix: string | null;
}

/** A throughput ratio measured over interleaved rounds. */
export interface Ratio {
  /** Geometric mean of the per-round ratios (older results: one run's ratio) */
  value: number;
  /** 95 % interval [low, high], Student t over rounds */
  ci?: number[] | null;
  /** faster or slower only when the interval excludes 1 */
  verdict?: "faster" | "slower" | "no measurable difference" | null;
  rounds?: number | null;
}

/** Ship INT8 only when it beats, on evidence, the FP32 model as the device runs it by default. */
export interface Recommendation {
  choice: "int8" | "keep-fp32";
  reason: string;
  /** Whether the INT8 model was written as the answer (<model>.int8.*); false: set aside as <model>.int8.not-faster.* ([calibration] only_if_faster) */
  answer?: boolean;
  /** The evidence: INT8 throughput over FP32-as-run-by-default */
  speedup_vs_default: Ratio;
  /** ... and FP32-as-run's batch-1 latency over INT8's (INT8 ships when faster on one, slower on neither) */
  latency_vs_default?: Ratio | null;
  /** Batch-1 median latency of both */
  latency_ms: { [K in "fp32_f32" | "fp32_default" | "int8"]?: number };
}

/** How AccuracyAware's search ended. */
export interface Search {
  /** [calibration] search: ranked, or from_float (no ranking) */
  strategy?: string;
  /** The validation cap stopped the give-back pass: the answer may keep more layers in FP32 than needed (not minimal) */
  cut_short: boolean;
  validations: number;
  max_validations: number;
  /** FP32 groups not yet tried back in INT8 when it stopped */
  untried_groups: number;
  ranked_groups: number;
  /** Validations asked for a layer set already measured: none is run twice */
  repeats_avoided?: number;
  /** Where the ranking probes ran: `this process`, or `ray` (one task per probe, when the job runs on a Ray cluster) */
  ranked_on?: string;
  /** Validations ended as soon as their candidate could no longer pass (a per-sample metric with a best score): same decisions, fewer samples */
  stopped_early?: number;
  /** Validation samples run over the whole search */
  samples_run?: number;
  /** Ranking probes a Ray task answered (the job's own process takes the others, so a busy cluster never stalls it) */
  probes_on_cluster?: number;
  /** Validation samples every ranking probe ran (16, fewer when samples are large; 0: no ranking was needed) */
  ranking_samples?: number;
}

/** One variant's speed (benchmark_app style), over interleaved rounds (results since rounds). */
export interface Speed {
  throughput: number;
  latency_ms: LatencyStats;
  requests: number;
  streams: number;
  batch: number;
  iterations: number;
  rounds?: number[];
  spread?: number[];
  latency_rounds?: number[];
  latency_mode?: string;
  looks?: number;
  config?: { [key: string]: unknown };
}

export interface Speedup {
  /** INT8 throughput over FP32 in strict f32 (older results: a number) */
  vs_f32: Ratio | number;
  /** INT8 throughput over FP32 as the device runs it by default (older results: a number) */
  vs_default: Ratio | number;
  /** FP32 strict f32 batch-1 latency over INT8's (> 1: INT8 faster with one request in flight) */
  latency_vs_f32?: Ratio | null;
  /** FP32-as-run-by-default batch-1 latency over INT8's */
  latency_vs_default?: Ratio | null;
}

/** What an editor shows of a finished job's result (`calibration.jobs.summarise`). */
export interface Summary {
  drop: number | null;
  drop_relative: number | null;
  accuracy: SummaryAccuracy;
  metric: string | null;
  speedup: Speedup | null;
  speedup_vs_default: number | null;
  speedup_verdict?: string | null;
  drop_ci?: number[] | null;
  heldout?: HeldOut | null;
  throughput: { [K in "fp32_f32" | "fp32_default" | "int8"]?: number } | null;
  model_size: ModelSize | null;
  int8_layer_count: number | null;
  budget: AccuracyAwareBudget | number | null;
  output: Outputs | null;
  report: string | null;
  notes: string[];
  /** The profile the figures were measured on */
  deployment?: Deployment | null;
  /** AccuracyAware: names of the layers left in FP32 */
  fp32_layers?: string[] | null;
  recommendation?: Recommendation | null;
}

export interface SummaryAccuracy {
  fp32: number | null;
  int8: number | null;
}

export interface Timing {
  calibration: number;
  total: number;
}
