"""The one line an editor shows when a job ends: drop with its interval, speed-up, and what to ship."""
from __future__ import annotations

from int8wb.daemon.commands import job_line


def done(**summary) -> dict:
    return {"state": "done", "summary": {"drop": 0.0012, "drop_ci": [-0.001, 0.003], "speedup_vs_default": 0.82,
                                         "speedup_verdict": "slower", **summary}}


def test_the_line_says_what_to_ship_and_where_a_slower_model_went():
    line = job_line(done(recommendation={"choice": "keep-fp32", "answer": False}))
    assert line == ("done: drop 0.12 pp (95 % interval -0.10 to 0.30 pp), 0.82x vs FP32 default (slower), "
                    "keep FP32: INT8 does not pay here (INT8 model set aside as .int8.not-faster)")
    assert job_line(done(recommendation={"choice": "keep-fp32", "answer": True})).endswith("does not pay here")
    assert job_line(done(recommendation={"choice": "int8", "answer": True})).endswith(", ship INT8")
    assert job_line({"state": "cancelled", "error": "cancelled; nothing was written"}) == \
        "cancelled: nothing was written"


def test_the_budget_hover_judges_the_held_out_drop_too():
    """On a `max_drop` line: each drop against that budget, the held-out one (data the search never
    saw) after the validation one; the summary carries it from the result."""
    from int8wb.calibration.jobs.ending import summarise
    from int8wb.daemon.hover import drop_text

    result = {"drop": 0.001, "drop_ci": [-0.002, 0.004],
              "heldout": {"fp32": 0.9, "int8": 0.87, "drop": 0.03, "size": 600, "drop_ci": [0.02, 0.04]}}
    text = drop_text(summarise(result), 0.01)
    validation, held = text.split("\n\n")
    assert validation == "**Last result**: drop 0.10 pp, 95 % interval -0.20 to 0.40 pp: within this budget on evidence"
    assert held == ("**Held out** (600 samples): drop 3.00 pp, 95 % interval 2.00 to 4.00 pp: "
                    "over this budget on evidence")
    assert "Held out" not in drop_text(summarise({**result, "heldout": None}), 0.01)
    assert drop_text({}, 0.01) is None


def test_the_line_gives_the_held_out_drop_after_the_validation_drop():
    line = job_line(done(heldout={"drop": 0.005, "drop_ci": [-0.002, 0.012], "size": 600}))
    assert line.startswith("done: drop 0.12 pp (95 % interval -0.10 to 0.30 pp), "
                           "held-out drop 0.50 pp (95 % interval -0.20 to 1.20 pp), 0.82x vs FP32 default (slower)")
    assert "held-out" not in job_line(done(heldout=None))
