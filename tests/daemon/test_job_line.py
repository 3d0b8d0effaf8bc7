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
