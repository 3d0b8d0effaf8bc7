"""Can the runtime's per-layer profile say which quantized layers to keep in float for speed?

    .venv/bin/python benchmarks/probe_speed_groups.py SPEC [SPEC ...]

For each spec (at its deployment shape): NNCF's Default quantization with FakeQuantize weights, then
the per-layer profile (PERF_COUNT) of the all-INT8 model and of the same model with every quantized
layer back in float, both compiled as the device runs them (float layers in bf16 on AMX). Each group of
quantized layers (layers sharing a quantizer) is traced to the runtime nodes that execute it. The
runtime fuses and renames (a convolution folded with its batch norm takes the Multiply's name), so a
group is known by its layers, the activation quantizers feeding them and the chain of ops after each
layer up to the next quantizer; a fused node carrying two groups' ops counts for both. The groups
slower in INT8 by the profile go back to float, and that candidate is timed against the all-INT8 model
and FP32 as the device runs it, interleaved. Findings: BENCHMARKS.md, "Per-layer speed on AMX".
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from int8wb.calibration import deployment, inspect_model, load_spec, performance  # noqa: E402
from int8wb.calibration.conversion import ir_of  # noqa: E402
from int8wb.calibration.datasets import open_dataset  # noqa: E402
from int8wb.calibration.methods.accuracy_aware import _groups, corrected_biases, revert  # noqa: E402
from int8wb.calibration.methods.nncf import Feed, nncf_settings, quantize  # noqa: E402
from int8wb.calibration.runtime import DEFAULT, INT8, config_for, read_model  # noqa: E402
from int8wb.calibration.spec import InferenceSpec  # noqa: E402

INT8_PRECISIONS = ("u8", "i8")
MARGIN = 0.10      # INT8 must be this much slower than float to count a group as slower
MIN_GAIN_US = 2.0  # ... and by at least this many microseconds


@dataclass
class GroupTime:
    layers: list[str]
    int8_us: float   # the INT8 nodes that execute the group's layers
    float_us: float  # the nodes that execute them in FP32 as the device runs it

    @property
    def slower(self) -> bool:
        return self.int8_us > self.float_us * (1 + MARGIN) and self.int8_us - self.float_us >= MIN_GAIN_US


def _nodes(rows: list[dict], precisions: tuple[str, ...] | None = None) -> dict[str, list[dict]]:
    """Runtime rows by the original layer names they execute."""
    by_layer: dict[str, list[dict]] = {}
    for row in rows:
        if precisions and row["runtimePrecision"] not in precisions:
            continue
        for name in row["originalLayers"]:
            by_layer.setdefault(name, []).append(row)
    return by_layer


def signatures(model: ov.Model, groups: list[list[str]], depth: int = 8) -> list[set[str]]:
    """Names by which the runtime's nodes can be traced to each group. The runtime fuses and renames
    (a convolution folded with its batch norm takes the Multiply's name), but the ops fused into a
    layer keep theirs: so a group is known by its layers, the activation quantizers feeding them and
    the chain of ops after each layer up to the next quantizer (bias, batch norm, activation)."""
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    out = []
    for group in groups:
        names = set(group)
        for name in group:
            op = ops.get(name)
            if op is None:
                continue
            for inp in op.inputs():
                src = inp.get_source_output().get_node()
                if src.get_type_name() == "FakeQuantize":
                    names.add(src.get_friendly_name())
            node = op
            for _ in range(depth):
                readers = [t.get_node() for t in node.output(0).get_target_inputs()] if node.get_output_size() else []
                if len(readers) != 1 or readers[0].get_type_name() in ("FakeQuantize", "Result"):
                    break
                node = readers[0]
                if node.get_friendly_name() in ops and any(
                        i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in node.inputs()):
                    break  # the next quantized layer: another group
                names.add(node.get_friendly_name())
        out.append(names)
    return out


def group_times(int8_rows: list[dict], float_rows: list[dict], groups: list[list[str]],
                signs: list[set[str]]) -> list[GroupTime]:
    """Each group's time in INT8 and in float, a runtime node counted once per group."""
    int8_nodes, float_nodes = _nodes(int8_rows, INT8_PRECISIONS), _nodes(float_rows)

    def total(nodes: dict[str, list[dict]], names: set[str]) -> float:
        rows = {row["name"]: row["time_us"] for name in names for row in nodes.get(name, [])}
        return float(sum(rows.values()))

    return [GroupTime(g, total(int8_nodes, s), total(float_nodes, s)) for g, s in zip(groups, signs)]


def probe(spec_path: str) -> None:
    spec = load_spec(spec_path)
    xml = ir_of(spec)
    fixed = deployment.shapes(spec, inspect_model(xml))
    dataset = open_dataset(spec, deployment.deployed(inspect_model(xml), fixed))
    subset = dataset.subset_indices()
    core = ov.Core()
    fp32 = deployment.reshape(read_model(core, str(xml)), fixed, spec)
    fq = quantize(fp32, Feed(dataset, subset, None, None), **nncf_settings(spec, len(subset), compress_weights=False))
    groups, biases = _groups(fq), corrected_biases(fp32, fq)
    sample = dataset.load(subset[0])
    config = config_for(INT8, spec.device)
    int8 = revert(fq, set(), biases)
    floats = revert(fq, {n for g in groups for n in g}, biases)
    times = group_times(performance.profile(core, int8, spec.device, config, sample),
                        performance.profile(core, floats, spec.device, config, sample), groups, signatures(fq, groups))
    slower = [t for t in times if t.slower]
    print(f"{Path(spec_path).name}: {len(groups)} groups, {len(slower)} slower in INT8 by the profile; "
          f"unattributed: {sum(t.int8_us == 0 for t in times)} in INT8, {sum(t.float_us == 0 for t in times)} in float")
    for t in sorted(slower, key=lambda t: t.float_us - t.int8_us)[:8]:
        print(f"  {t.int8_us:8.1f} us INT8  {t.float_us:8.1f} us float  {t.layers[:3]}")
    candidate = revert(fq, {n for t in slower for n in t.layers}, biases)
    speed = performance.measure_interleaved(core, {"int8": (int8, config, sample), "candidate": (candidate, config, sample),
                                                   "fp32_default": (fp32, config_for(DEFAULT, spec.device), sample)},
                                            spec.device, InferenceSpec(duration=12, rounds=6))
    for name, figures in speed.items():
        print(f"  {name}: {figures['throughput']:.1f}/s, batch-1 {figures['latency_ms']['median']:.3f} ms")
    for a, b in (("candidate", "int8"), ("candidate", "fp32_default"), ("int8", "fp32_default")):
        r = performance.speedup(speed, a, b)
        print(f"  {a}/{b}: {r['value']:.3f}x [{r['ci'][0]:.3f}-{r['ci'][1]:.3f}] {r['verdict']}")


if __name__ == "__main__":
    for path in sys.argv[1:] or [str(ROOT / "examples" / "ocr" / "ocr.calibration.toml")]:
        probe(path)
