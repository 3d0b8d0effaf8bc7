"""Whether to ship INT8: only when it beats, on evidence, the FP32 model as the device runs it by
default (bf16 on AMX CPUs), the model the user already has. The evidence is the interleaved rounds'
speed-ups (performance.py); which of them count is `[calibration] faster_in`."""
from __future__ import annotations

from . import performance
from .runtime import DEFAULT, INT8
from .spec import Spec


def counted(faster_in: str, vs_default: dict, latency_vs: dict | None) -> dict[str, dict]:
    """The speed-ups the recommendation rests on, by name (`[calibration] faster_in`); results
    without per-round latencies have only the throughput."""
    both = {"its throughput": vs_default, **({"its batch-1 speed": latency_vs} if latency_vs else {})}
    keep = {"throughput": "its throughput", "latency": "its batch-1 speed"}.get(faster_in)
    return {keep: both[keep]} if keep in both else both


def undecided(speed: dict[str, dict], faster_in: str = "either") -> bool:
    """Whether the rounds so far leave the recommendation without evidence either way: INT8 neither
    faster nor slower than FP32-as-run on the measures it rests on."""
    measures = counted(faster_in, performance.speedup(speed, INT8, DEFAULT), performance.latency_speedup(speed, INT8, DEFAULT))
    return not {m["verdict"] for m in measures.values()} & {"faster", "slower"}


def recommend(spec: Spec, vs_default: dict, speed: dict, device_default: str, latency_vs: dict | None = None) -> dict:
    """INT8 only when it is faster, on evidence, than the FP32 model as the device runs it by default
    (bf16 on AMX CPUs): the model the user already has. Faster in throughput (requests in flight) or in
    batch-1 latency (one request), and slower in neither: a model served one request at a time gains
    from the latency alone (or on the one measure `[calibration] faster_in` names). Otherwise: keep
    the FP32 model."""
    latency = {k: round(speed[k]["latency_ms"]["median"], 3) for k in (DEFAULT, INT8)}
    against = f"FP32 as {spec.device} runs it by default ({device_default})"
    shown = counted("either", vs_default, latency_vs)
    figures = "; ".join(f"{m['value']:.2f}x {name} (95 % interval {m['ci'][0]:.2f}-{m['ci'][1]:.2f}x)"
                        for name, m in shown.items())
    if speed[INT8].get("looks", 1) > 1:
        figures += f" (over {vs_default['rounds']} rounds: the first {spec.inference.rounds} decided nothing)"
    measures = counted(spec.calibration.faster_in, vs_default, latency_vs)
    if len(measures) < len(shown):
        figures += f"; judged on {next(iter(measures))} alone ([calibration] faster_in = \"{spec.calibration.faster_in}\")"
    verdicts = {m["verdict"] for m in measures.values()}
    if "faster" in verdicts and "slower" not in verdicts:
        choice, reason = "int8", f"INT8 is faster than {against}: {figures}"
    else:
        what = ("faster on one measure and slower on the other than" if "faster" in verdicts else
                "slower than" if "slower" in verdicts else "not measurably faster than")
        choice, reason = "keep-fp32", f"INT8 does not pay on this device: {what} {against}, {figures}; keep the FP32 model"
        reason += ("; the INT8 model is set aside as .int8.not-faster (write it as the answer anyway: "
                   "[calibration] only_if_faster = false)" if spec.calibration.only_if_faster else
                   "; the INT8 model is written as the answer all the same, as [calibration] only_if_faster = false asks")
    answer = choice == "int8" or not spec.calibration.only_if_faster
    return {"choice": choice, "reason": reason, "answer": answer, "speedup_vs_default": vs_default,
            "latency_vs_default": latency_vs, "latency_ms": latency}
