"""Can AccuracyAware's ranking do without a compile per probe?

    .venv/bin/python benchmarks/probe_switch_ranking.py SPEC [--calibration N]

The ranking's probes (`methods/ranking.py`) each compile the FakeQuantize model with one group of
quantized layers back in float, then run 16 samples; on the PP-OCRv5 recogniser the compile is most of
a probe. The alternative probed here: one model in which every group's quantizers sit behind a switch
(a boolean input per group selecting the quantized or the float tensor, and the corrected or the
original bias), compiled once, each probe setting the switches. The runtime then cannot fold the
quantizers into INT8 kernels: it simulates them in float. Both rankings run on the same 16 samples
(those the all-INT8 model hurts most among the first 64 of the validation set), the product's one
first. Printed: the time of each ranking, and how well the switched ranking agrees with the product's
(Spearman over all groups, and the overlap of their top k). Findings: BENCHMARKS.md, "AccuracyAware on
unseen data", the ranking paragraph.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from int8wb.calibration import inspect_model, load_spec  # noqa: E402
from int8wb.calibration.conversion import ir_of  # noqa: E402
from int8wb.calibration.datasets import open_dataset  # noqa: E402
from int8wb.calibration.methods.accuracy_aware import _groups, corrected_biases, revert  # noqa: E402
from int8wb.calibration.methods.nncf import Feed, nncf_settings, quantize  # noqa: E402
from int8wb.calibration.methods.ranking import InProcess, outputs  # noqa: E402
from int8wb.calibration.runtime import INT8, config_for, read_model  # noqa: E402
from int8wb.calibration.trust import set_trusted  # noqa: E402


def switched(quantized: ov.Model, groups: list[list[str]], biases: dict) -> ov.Model:
    """The FakeQuantize model with a boolean input `switch<g>` per group: true puts the group in float."""
    model = quantized.clone()
    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    switches = []
    for g, group in enumerate(groups):
        switch = ops.parameter([], ov.Type.boolean, name=f"switch{g}")
        switch.output(0).get_tensor().set_names({f"switch{g}"})
        switches.append(switch)
        for name in group:
            op = by_name[name]
            for inp in op.inputs():
                src = inp.get_source_output().get_node()
                if src.get_type_name() == "FakeQuantize":
                    inp.replace_source_output(ops.select(switch, src.input_value(0), src.output(0)).output(0))
            for target in op.output(0).get_target_inputs():
                add = target.get_node()
                if add.get_friendly_name() in biases:
                    for inp in add.inputs():
                        const = inp.get_source_output().get_node()
                        if const.get_type_name() == "Constant":
                            original = ops.constant(biases[add.get_friendly_name()])
                            inp.replace_source_output(ops.select(switch, original, const.output(0)).output(0))
    model.add_parameters(switches)
    model.validate_nodes_and_infer_types()
    return model


def scores(distances: list[float]) -> np.ndarray:
    start = distances[0]
    return np.array([(start - d) / (start + 1e-12) for d in distances[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--calibration", type=int, default=300, help="calibration samples (default 300)")
    args = parser.parse_args()
    from scipy.stats import spearmanr

    spec = load_spec(args.spec)
    set_trusted(spec.path.parent)
    info = inspect_model(ir_of(spec))
    cal, val = open_dataset(spec, info), open_dataset(spec, info, "validation")
    core = ov.Core()
    fp32 = read_model(core, str(ir_of(spec)))
    subset = cal.subset_indices()[:args.calibration]
    quantized = quantize(fp32, Feed(cal, subset, lambda f: None, None),
                         **nncf_settings(spec, len(subset), compress_weights=False))
    biases, groups = corrected_biases(fp32, quantized), _groups(quantized)
    config = config_for(INT8, spec.device, spec.inference.int8_float_precision)
    f32 = config_for("fp32_f32", spec.device)
    inputs = [val.load(i) for i in range(64)]
    reference = outputs(core.compile_model(fp32, spec.device, f32), inputs)
    all_int8 = outputs(core.compile_model(revert(quantized, set(), biases), spec.device, config), inputs)
    hurt = np.argsort([-np.sum((a - r) ** 2) / np.sum(r ** 2) for a, r in zip(all_int8, reference)])[:16]
    inputs, reference = [inputs[i] for i in hurt], [reference[i] for i in hurt]

    t0 = time.perf_counter()
    product = InProcess().distances(core, quantized, [[], *groups], lambda m, names: revert(m, names, biases),
                                    spec.device, config, inputs, reference, lambda f: None, None)
    product_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    compiled = core.compile_model(switched(quantized, groups, biases), spec.device, config)
    compile_s = time.perf_counter() - t0
    request = compiled.create_infer_request()

    def distance(g: int) -> float:
        flags = {f"switch{j}": np.array(j == g) for j in range(len(groups))}
        got = [np.array(request.infer({**x, **flags}, share_inputs=False)[0], dtype=np.float64) for x in inputs]
        return float(np.mean([np.sum((a - r) ** 2) / (np.sum(r ** 2) + 1e-12) for a, r in zip(got, reference)]))

    simulated = [distance(-1)] + [distance(g) for g in range(len(groups))]
    switch_s = time.perf_counter() - t0

    ours, theirs = scores(product), scores(simulated)
    print(f"{len(groups)} groups, 16 samples; product ranking {product_s:.1f} s; switched ranking {switch_s:.1f} s "
          f"(its one compile {compile_s:.2f} s)")
    print(f"all-INT8 output error: product {product[0]:.4f}, switched {simulated[0]:.4f}")
    print(f"Spearman over all groups: {spearmanr(ours, theirs).statistic:+.2f}")
    a, b = np.argsort(-ours), np.argsort(-theirs)
    print("top-k overlap: " + ", ".join(f"{k}: {len(set(a[:k]) & set(b[:k]))}" for k in (5, 10, 20, 40)))


if __name__ == "__main__":
    main()
