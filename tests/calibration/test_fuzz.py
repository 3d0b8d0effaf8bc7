"""Malformed input never raises out of the checker: each case yields problems, not a traceback."""
import re

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from int8wb.calibration import CalibrationError, inspect_model
from int8wb.calibration.checker import check_model, check_spec
from int8wb.calibration.problems import Problem
from conftest import conv_net, save

BUDGET = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

SPEC = """model = "model.xml"
device = "CPU"
[dataset]
kind = "imagenet"
path = "data"
subset = "50%"
[preprocessing]
resize = [16, 16]
mean = [0.0]
[accuracy]
metric = "top1"
[calibration]
method = "default"
[inference]
batch = 1
"""
VALUES = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(repr),
                   st.text(max_size=8).map(lambda s: '"' + s.replace('"', "").replace("\\", "") + '"'),
                   st.sampled_from(["true", "[1, 2]", "{}", '"auto"', '"50%"', '"accuracy_aware"', "[", '"', ""]))
KEYS = st.sampled_from(["model", "device", "kind", "path", "subset", "seed", "resize", "mean", "scale", "metric",
                        "method", "batch", "streams", "duration", "max_drop", "unknown", "custom", "[x]"])


def _valid(problems):
    assert isinstance(problems, list)
    for p in problems:
        assert isinstance(p, Problem) and p.message and p.rule
        assert p.line is None or p.line >= 1


@BUDGET
@given(st.lists(st.tuples(st.integers(0, 20), KEYS, VALUES), max_size=4), st.integers(0, 20))
def test_spec_mutations(tmp_path_factory, edits, drop):
    folder = tmp_path_factory.mktemp("spec")
    save(conv_net(), folder / "model.xml")
    lines = SPEC.splitlines()
    if drop < len(lines):
        del lines[drop]
    for at, key, value in edits:
        lines.insert(min(at, len(lines)), f"{key} = {value}")
    _valid(check_spec(folder / "s.calibration.toml", "\n".join(lines)))


@BUDGET
@given(st.text(max_size=300))
def test_spec_arbitrary_text(tmp_path_factory, text):
    _valid(check_spec(tmp_path_factory.mktemp("t") / "s.calibration.toml", text))


@pytest.fixture(scope="module")
def pristine_ir(tmp_path_factory) -> tuple[bytes, bytes]:
    """One saved model for every example: OpenVINO numbers auto-named nodes with a process-wide
    counter, so a model saved per example differs in length and hypothesis could not replay."""
    xml = save(conv_net(), tmp_path_factory.mktemp("pristine") / "m.xml")
    return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


@BUDGET
@given(st.data())
def test_xml_mutations(tmp_path_factory, pristine_ir, data):
    folder = tmp_path_factory.mktemp("xml")
    xml, raw = folder / "m.xml", bytearray(pristine_ir[0])
    (folder / "m.bin").write_bytes(pristine_ir[1])
    kind = data.draw(st.sampled_from(["flip", "truncate", "attr", "delete"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif kind == "attr":  # well-formed XML with nonsense attribute values
        values = list(re.finditer(rb'="([^"]*)"', raw))
        for _ in range(data.draw(st.integers(1, 10))):
            m = values[data.draw(st.integers(0, len(values) - 1))]
            new = data.draw(st.sampled_from([b"", b"-1", b"x", b"99999999999", b"f16", b"?,?", b"&amp;"]))
            raw = raw[: m.start(1)] + new + raw[m.end(1):]
            values = list(re.finditer(rb'="([^"]*)"', raw))
    else:  # drop whole elements
        for tag in data.draw(st.lists(st.sampled_from([b"edges", b"output", b"input", b"data", b"port"]), max_size=3)):
            raw = re.sub(rb"<" + tag + rb"[\s>].*?</" + tag + rb">", b"", bytes(raw), count=1, flags=re.S)
    xml.write_bytes(bytes(raw))
    _valid(check_model(xml))
    try:
        inspect_model(xml)
    except CalibrationError as exc:
        assert exc.problems[0].rule == "corrupt-model"
