"""AccuracyAware keeps its promise: on a model that Default quantization breaks, it reverts the
layer that breaks it, meets the budget on validation data, and says so honestly when it cannot."""
import json
import shutil

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from int8wb.calibration import CalibrationError, inspect_model, load_spec
from int8wb.calibration.workflow import calibrate
from conftest import outlier_mlp

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return outlier_mlp(tmp_path_factory.mktemp("aa"))


def write_spec(folder, name, calibration, accuracy='metric = "top1"'):
    path = folder / f"{name}.calibration.toml"
    path.write_text(f"""model = "mlp.xml"
[dataset]
kind = "npz"
path = "calibration.npz"
[validation]
kind = "npz"
path = "validation.npz"
[evaluation]
kind = "npz"
path = "heldout.npz"
[accuracy]
{accuracy}
[calibration]
{calibration}
[inference]
duration = 0.2
[output]
dir = "out-{name}"
""")
    return load_spec(path)


def independent_accuracy(xml, npz):
    data = np.load(npz)
    compiled = ov.Core().compile_model(str(xml), "CPU")
    logits = compiled(data["x"], share_inputs=False)[0]
    return float(np.mean(np.argmax(logits, axis=1) == data["labels"]))


@pytest.fixture(scope="module")
def default_result(project):
    return calibrate(write_spec(project, "default", 'method = "default"'))


@pytest.fixture(scope="module")
def aa_result(project):
    return calibrate(write_spec(project, "aa", 'method = "accuracy_aware"\nmax_drop = 0.005'))


def test_default_loses_accuracy_here(default_result):
    assert default_result["fp32"]["accuracy"] > 0.9
    assert default_result["drop"] > 0.05


def test_accuracy_aware_meets_the_budget(aa_result, default_result):
    assert aa_result["budget"]["met"] and aa_result["drop"] <= 0.005
    assert aa_result["fp32"]["accuracy"] == default_result["fp32"]["accuracy"]
    assert aa_result["int8"]["accuracy"] >= aa_result["fp32"]["accuracy"] - 0.005


def test_it_reverts_the_layer_with_the_outlier_input_first(aa_result):
    layers = aa_result["fp32_layers"]
    assert layers and layers[0]["rank"] == 1 and layers[0]["type"] == "MatMul"
    assert len(layers) < aa_result["accuracy_aware"]["quantized_layers"]  # not everything went back to FP32
    assert all(layer["score"] >= 0 and layer["reason"] for layer in layers)


def test_reported_numbers_match_an_independent_evaluation(aa_result, project):
    xml = aa_result["output"]["model"]
    assert inspect_model(xml).quantized
    assert independent_accuracy(xml, project / "validation.npz") == pytest.approx(aa_result["int8"]["accuracy"])
    assert independent_accuracy(xml, project / "heldout.npz") == pytest.approx(aa_result["heldout"]["int8"])
    assert json.loads(open(aa_result["output"]["result"]).read())["budget"]["met"] is True


def test_reverted_layers_run_in_float_in_the_runtime_table(aa_result):
    # The runtime fuses layers under new names, so count: every quantized MatMul runs INT8
    # (FullyConnected u8/i8) except the ones AccuracyAware put back in FP32.
    fc = [r for r in aa_result["layers"]["int8"] if r["type"] == "FullyConnected"]
    in_float = [r for r in fc if r["runtimePrecision"] not in ("u8", "i8")]
    assert len(fc) == aa_result["accuracy_aware"]["quantized_layers"]
    assert len(in_float) == len(aa_result["fp32_layers"]) and in_float[0]["outputPrecisions"] in ("f32", "bf16")


def test_lower_is_better_metric_with_relative_drop(project):
    (project / "errors.py").write_text(
        "import numpy as np\n"
        "def error(output, label):\n"
        "    return float(int(np.argmax(output)) != label)\n")
    spec = write_spec(project, "rel", 'method = "accuracy_aware"\nmax_drop = 0.5\ndrop_type = "relative"',
                      'metric = "custom"\ncustom = "errors.py:error"\nhigher_is_better = false')
    with pytest.raises(CalibrationError) as exc:
        calibrate(spec)  # user code runs only when trusted
    assert exc.value.problems[0].rule == "untrusted-metric"
    res = calibrate(spec, trust_custom_metrics=True)
    fp32_err, int8_err = res["fp32"]["accuracy"], res["int8"]["accuracy"]
    assert res["budget"]["met"] and res["budget"]["drop_type"] == "relative"
    assert res["drop"] == pytest.approx(int8_err - fp32_err)          # worse means a higher error
    assert res["budget"]["measured"] == pytest.approx((int8_err - fp32_err) / fp32_err)
    assert res["budget"]["measured"] <= 0.5


def test_unreachable_budget_fails_and_keeps_the_best_attempt_aside(project):
    # A metric no quantized model can satisfy: it scores the FP32 baseline run (its first
    # calls) perfect and everything after it zero.
    (project / "adversary.py").write_text(
        "calls = [0]\n"
        "def score(output, label):\n"
        "    calls[0] += 1\n"
        "    return 1.0 if calls[0] <= 250 else 0.0\n")
    spec = write_spec(project, "never", 'method = "accuracy_aware"\nmax_drop = 0.01',
                      'metric = "custom"\ncustom = "adversary.py:score"\nneeds_labels = false')
    with pytest.raises(CalibrationError) as exc:
        calibrate(spec, trust_custom_metrics=True)
    problem = exc.value.problems[0]
    assert problem.rule == "budget-unreachable" and problem.key == "calibration.max_drop"
    assert "required drop ≤ 0.01 cannot be reached; best found: 1 (bound judged: 1) with" in problem.message
    out = project / "out-never"
    assert not (out / "mlp.int8.xml").exists() and not (out / "mlp.int8.json").exists()
    kept = json.loads((out / "mlp.int8.over-budget.json").read_text())
    assert kept["budget"]["met"] is False and (out / "mlp.int8.over-budget.xml").exists()


def test_int8_float_layers_can_run_strict_f32(project, aa_result):
    """With int8_float_precision = "f32" the INT8 model's float layers are measured in f32, not the
    device default (bf16 on AMX CPUs), and the search holds its budget in that configuration."""
    spec = write_spec(project, "aaf32", 'method = "accuracy_aware"\nmax_drop = 0.005')
    spec.inference.int8_float_precision = "f32"
    res = calibrate(spec)
    assert res["budget"]["met"] and res["settings"]["int8_float_precision"] == "f32"
    floats = {r["runtimePrecision"] for r in res["layers"]["int8"]
              if r["type"] == "FullyConnected" and r["runtimePrecision"] not in ("u8", "i8")}
    assert floats == {"f32"}
    default_floats = {r["runtimePrecision"] for r in aa_result["layers"]["int8"]
                      if r["type"] == "FullyConnected" and r["runtimePrecision"] not in ("u8", "i8")}
    assert default_floats == {aa_result["device_default_precision"]}


def test_a_reverted_layer_gets_its_uncorrected_bias_back():
    """Bias correction shifts a quantized layer's bias to cancel its INT8 error; in FP32 that shift
    is pure error, so reverting the layer must restore the original bias and compute FP32 exactly."""
    from int8wb.calibration.methods.accuracy_aware import corrected_biases, revert

    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)

    def build(quantized: bool) -> ov.Model:
        x = ops.parameter([2, 8], np.float32, name="x")
        fq = lambda v, r: ops.fake_quantize(v, -r, r, -r, r, 256) if quantized else v  # noqa: E731
        mm = ops.matmul(fq(x, 3.0), fq(ops.constant(w), 3.0), False, False)
        mm.set_friendly_name("mm")
        add = ops.add(mm, ops.constant(b + 0.25 if quantized else b))
        add.set_friendly_name("bias")
        return ov.Model([add], [x], "m")

    fp32, quantized = build(False), build(True)
    biases = corrected_biases(fp32, quantized)
    assert list(biases) == ["bias"] and np.array_equal(biases["bias"], b)
    core, x = ov.Core(), rng.normal(size=(2, 8)).astype(np.float32)
    run = lambda m: core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]  # noqa: E731
    np.testing.assert_allclose(run(revert(quantized, {"mm"}, biases, compress=False)), run(fp32), rtol=1e-5, atol=1e-5)
    assert not np.allclose(run(revert(quantized, {"mm"}, compress=False)), run(fp32), atol=0.1)


def test_it_ships_the_cheapest_passing_answer_it_measured(aa_result):
    probes = aa_result["accuracy_aware"]["probes"]
    passing = [p for p in probes if p["ok"]]
    shipped = sum(layer["macs"] for layer in aa_result["fp32_layers"])
    assert passing and shipped <= min(p["macs"] for p in passing)
    assert all(layer["macs"] > 0 for layer in aa_result["fp32_layers"])


def test_layers_reading_one_quantized_tensor_go_back_to_fp32_together():
    """`x - mean(x)` over one INT8 x: its errors cancel; reverting only the mean breaks that."""
    from int8wb.calibration.methods.accuracy_aware import _groups

    x = ops.parameter([1, 16], np.float32, name="x")
    fq = ops.fake_quantize(x, -1.0, 1.0, -1.0, 1.0, 256)
    mean = ops.reduce_mean(fq, ops.constant(np.array([1])), True)
    mean.set_friendly_name("mean")
    centred = ops.subtract(fq, mean)
    centred.set_friendly_name("centred")
    w = ops.fake_quantize(ops.constant(np.ones((16, 4), np.float32)), -1.0, 1.0, -1.0, 1.0, 255)
    fq2 = ops.fake_quantize(centred, -2.0, 2.0, -2.0, 2.0, 256)
    mm = ops.matmul(fq2, w, False, False)
    mm.set_friendly_name("mm")
    groups = _groups(ov.Model([mm], [x], "m"))
    assert sorted(map(sorted, groups)) == [["centred", "mean"], ["mm"]]


def test_layer_cost_comes_from_the_shapes_a_real_sample_gives():
    from int8wb.calibration.methods.accuracy_aware import layer_macs

    x = ops.parameter([-1, 3, -1, -1], np.float32, name="x")    # dynamic: the graph alone cannot say
    conv = ops.convolution(x, ops.constant(np.ones((8, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
    conv.set_friendly_name("conv")
    flat = ops.reshape(conv, ops.constant(np.array([0, -1])), True)
    mm = ops.matmul(flat, ops.constant(np.ones((8 * 10 * 12, 5), np.float32)), False, False)
    mm.set_friendly_name("fc")
    macs = layer_macs(ov.Core(), ov.Model([mm], [x], "m"), {"x": np.ones((2, 3, 10, 12), np.float32)})
    assert macs["conv"] == 2 * 8 * 10 * 12 * (3 * 3 * 3)
    assert macs["fc"] == 2 * 5 * (8 * 10 * 12)
    assert layer_macs(ov.Core(), ov.Model([mm], [x], "m"), {"x": np.ones((2, 3, 10, 12), np.float32)},
                      {"fc"}) == {"fc": macs["fc"]}   # only what was asked for (+ what it needs)


def _judged(confidence: float, wrong: int, n: int = 300, max_drop: float = 0.005) -> tuple[bool, float]:
    from types import SimpleNamespace

    from int8wb.calibration.evaluation import Evaluation
    from int8wb.calibration.methods import accepts
    from int8wb.calibration.metrics import TopK

    spec = SimpleNamespace(calibration=SimpleNamespace(drop_type="absolute", max_drop=max_drop, confidence=confidence))
    base = Evaluation(1.0, np.ones(n))
    cand = np.ones(n)
    cand[:wrong] = 0
    return accepts(spec, TopK(1), base, Evaluation(float(cand.mean()), cand))


def test_a_candidate_is_judged_by_the_upper_bound_of_its_drop():
    """One sample lost of 300 is a drop of 0.33 pp, inside a 0.5 pp budget as measured; but the
    data cannot rule out a drop of about 1 pp, so at 95 % confidence it is not accepted."""
    assert _judged(0.0, 1) == (True, pytest.approx(1 / 300))
    ok, bound = _judged(0.95, 1)
    assert not ok and bound > 0.005
    assert _judged(0.95, 0) == (True, 0.0)  # nothing changed: the bound is 0
    ok, bound = _judged(0.95, 1, n=3000)  # ten times the samples resolve it
    assert ok and 1 / 3000 <= bound <= 0.005


def test_the_result_states_the_guarantee_and_how_the_search_ended(aa_result):
    budget, search = aa_result["budget"], aa_result["search"]
    assert budget["confidence"] == 0.95 and budget["bound"] >= aa_result["drop"] and budget["met"]
    assert budget["bound"] <= 0.005 and "95% confidence" in budget["guarantee"]
    assert search["cut_short"] is False and search["untried_groups"] == 0
    assert search["validations"] == len(aa_result["accuracy_aware"]["probes"]) <= search["max_validations"]
    assert all(p["ok"] == (p["drop_bound"] <= 0.005 + 1e-9) for p in aa_result["accuracy_aware"]["probes"])


def test_a_search_cut_short_says_so(project, monkeypatch, aa_result):
    """The give-back pass stops at the validation cap: the answer is within budget but not minimal."""
    from int8wb.calibration.methods import accuracy_aware

    monkeypatch.setattr(accuracy_aware, "MAX_VALIDATIONS", 1)  # the give-back pass gets no validation
    result = calibrate(write_spec(project, "cut", 'method = "accuracy_aware"\nmax_drop = 0.005'))
    assert result["budget"]["met"] and result["search"]["cut_short"] is True
    assert result["search"]["untried_groups"] == len({layer["rank"] for layer in result["fp32_layers"]}) > 0
    assert any("not minimal" in note for note in result["notes"])
    assert len(result["fp32_layers"]) >= len(aa_result["fp32_layers"])


def test_no_layer_set_is_validated_twice(aa_result):
    probes = aa_result["accuracy_aware"]["probes"]
    sets = [tuple(p["groups"]) for p in probes]
    assert len(sets) == len(set(sets)) and aa_result["search"]["validations"] == len(probes)


def test_a_layer_set_asked_again_is_answered_from_memory(project, monkeypatch):
    from int8wb.calibration.methods import accuracy_aware

    search = accuracy_aware._search
    monkeypatch.setattr(accuracy_aware, "_search",  # every candidate asked for twice
                        lambda n, passes, tick: search(n, lambda k: passes(k) and passes(k), tick))
    result = calibrate(write_spec(project, "twice", 'method = "accuracy_aware"\nmax_drop = 0.005'))
    sets = [tuple(p["groups"]) for p in result["accuracy_aware"]["probes"]]
    assert len(sets) == len(set(sets)) and result["search"]["repeats_avoided"] > 0


def test_the_ranking_runs_fewer_samples_when_they_are_large(aa_result):
    """16 small samples, fewer large ones (at least 4): every probe runs them all, and a page holds
    the evidence of dozens of word crops."""
    from int8wb.calibration.methods.accuracy_aware import ranking_samples

    crop, page = np.zeros((1, 3, 48, 320), np.float32), np.zeros((1, 3, 736, 960), np.float32)
    assert ranking_samples({"x": crop}) == 16 and ranking_samples({"x": page}) == 4
    assert ranking_samples({"x": np.zeros((1, 3, 640, 640)), "scale": np.zeros((1, 2))}) == 6
    assert aa_result["search"]["ranking_samples"] == 16  # the MLP's samples are small


def give_back_run(needed: set[int], groups: int, cap: int | None = None, ok=None):
    """The give-back pass over `groups` groups (all in float at first) where the budget holds while
    every group of `needed` stays in float (or `ok(chosen)` says so)."""
    from int8wb.calibration.methods.accuracy_aware import give_back

    chosen, calls = set(range(groups)), []
    holds = ok or (lambda kept: needed <= kept)

    def without(chunk):
        calls.append(list(chunk))
        if holds(chosen - set(chunk)):
            chosen.difference_update(chunk)
            return True
        return False

    untried = give_back(list(range(groups)), without, lambda: cap is not None and len(calls) >= cap)
    return chosen, untried, calls


def test_give_back_finds_the_few_groups_the_budget_needs_in_few_validations():
    kept, untried, calls = give_back_run({3, 50, 51}, 100)
    assert kept == {3, 50, 51} and untried == 0
    assert len(calls) <= 40  # one at a time: 100
    assert all(len(c) == 1 for c in calls[:1])  # the costliest group is tried alone


def test_give_back_keeps_every_group_when_none_can_go():
    kept, untried, calls = give_back_run(set(range(20)), 20)
    assert kept == set(range(20)) and untried == 0 and len(calls) == 20 and all(len(c) == 1 for c in calls)


def test_give_back_does_not_trust_that_errors_add_up_one_group_at_a_time():
    """Each group alone fits the budget, any two together do not: exactly one goes back to INT8."""
    kept, untried, calls = give_back_run(set(), 12, ok=lambda chosen: len(chosen) >= 11)
    assert len(kept) == 11 and untried == 0 and len(calls) == 13  # one failed pair, then one at a time


def test_give_back_says_how_many_groups_it_never_tried():
    kept, untried, calls = give_back_run(set(range(30)), 30, cap=5)
    assert len(calls) == 5 and untried == 25 and kept == set(range(30))


def test_an_answer_over_budget_on_the_held_out_set_is_set_aside(project, tmp_path):
    """The held-out samples confirm the answer: here they come from elsewhere (inputs 4x the range
    calibration saw, which the INT8 input quantizer clips), so the answer that keeps the budget on
    validation loses far more on them. Its promise does not hold on unseen data: it is set aside,
    and the error says which data broke it."""
    for name in ("mlp.xml", "mlp.bin", "calibration.npz", "validation.npz"):
        shutil.copy(project / name, tmp_path / name)
    held = np.load(project / "heldout.npz")
    np.savez(tmp_path / "heldout.npz", x=held["x"] * 4, labels=held["labels"])
    spec = write_spec(tmp_path, "shifted", 'method = "accuracy_aware"\nmax_drop = 0.005')
    with pytest.raises(CalibrationError) as exc:
        calibrate(spec)
    problem = exc.value.problems[0]
    assert problem.rule == "budget-not-confirmed" and problem.key == "calibration.max_drop"
    assert "on the validation samples but not on the held-out ones: over the budget on the" in problem.message
    kept = json.loads((tmp_path / "out-shifted" / "mlp.int8.over-budget.json").read_text())
    assert kept["budget"]["heldout"] == "exceeded" and kept["budget"]["met"] is False
    assert kept["drop"] <= 0.005 and kept["heldout"]["drop_ci"][0] > 0.005  # validation fine, held-out not
    assert not (tmp_path / "out-shifted" / "mlp.int8.xml").exists()
    from int8wb.calibration.report import summary_rows

    assert ("budget", "max_drop 0.005", f"bound {kept['budget']['bound']:.4g}", "NOT met (held-out: exceeded)") \
        in summary_rows(kept)
    page = " ".join((tmp_path / "out-shifted" / "mlp.int8.over-budget.report.html").read_text(encoding="utf-8").split())
    assert "holds on the validation set but not on the held-out set: over the budget on the" in page
    assert 'data-field="budget.heldout">held-out: exceeded' in page


def test_the_held_out_set_confirms_a_kept_promise(aa_result):
    assert aa_result["budget"]["heldout"] in ("met", "undecided")
    assert "held-out samples (drop 95 % interval" in aa_result["budget"]["guarantee"]


def test_the_from_float_search_gives_layers_back_without_a_ranking(project, aa_result):
    """search = "from_float": no ranking; after all-INT8 fails, every group starts in FP32 and goes back to
    INT8 costliest first. The layer the ranked search reverts first stays in float, and each layer left
    in float says why."""
    res = calibrate(write_spec(project, "fromfloat", 'method = "accuracy_aware"\nmax_drop = 0.005\n'
                                                     'search = "from_float"'))
    assert res["budget"]["met"] and res["drop"] <= 0.005
    assert res["search"]["strategy"] == "from_float" and res["search"]["ranking_samples"] == 0
    assert aa_result["search"]["strategy"] == "ranked"
    quantized, probes = res["accuracy_aware"]["quantized_layers"], res["accuracy_aware"]["probes"]
    assert [p["fp32_layers"] for p in probes[:2]] == [0, quantized]  # all INT8, then all in float
    layers = res["fp32_layers"]
    assert 0 < len(layers) < quantized
    assert aa_result["fp32_layers"][0]["name"] in {layer["name"] for layer in layers}
    assert all("rank" not in layer and layer["score"] is None for layer in layers)
    tried = "back in INT8 it broke the budget" if not res["search"]["cut_short"] else "INT8"
    assert all(tried in layer["reason"] for layer in layers)
