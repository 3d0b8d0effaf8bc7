"""calibration.jobs.protocol: every message and request survives its trip; anything else is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from int8wb.calibration.jobs.protocol import (WORKER_MODULE, Calibrate, Compare, Failure, Progress, ProtocolError,
                                              Result, command, decode, encode, messages, parse_request)
from int8wb.calibration.problems import Problem

PROBLEM = Problem("unknown key", path="/w/a.calibration.toml", line=7, key="calibration.methd", rule="spec",
                  severity="error", fix="method")


@pytest.mark.parametrize("msg", [
    Progress(0.0, "checking"), Progress(42.5, None), Progress(100, "done"),
    Result({"drop": 0.01, "output": {"report": "/w/r.html"}, "notes": ["ü"], "nested": [1, {"a": None}]}),
    Failure("cancelled"), Failure(str(PROBLEM), (PROBLEM, Problem("second"))),
])
def test_messages_round_trip(msg):
    line = encode(msg)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert decode(line) == msg == decode(line.encode())


def test_values_json_does_not_know_travel_as_strings():
    assert decode(encode(Result({"path": Path("/w/m.xml")}))) == Result({"path": "/w/m.xml"})


def test_encode_refuses_anything_else():
    with pytest.raises(TypeError):
        encode({"progress": 1})


@pytest.mark.parametrize("line", [
    "", "not json", "42", '["progress"]', "null", '{"kind": "mystery"}', '{"progress": 50, "phase": "x"}',
    '{"kind": "progress"}', '{"kind": "progress", "percent": "abc"}', '{"kind": "progress", "percent": true}',
    '{"kind": "progress", "percent": 5, "phase": 3}', '{"kind": "result", "data": [1]}', '{"kind": "result"}',
    '{"kind": "failure"}', '{"kind": "failure", "error": "x", "problems": [{"nope": 1}]}',
    '{"kind": "failure", "error": "x", "problems": ["text"]}',
])
def test_a_line_that_is_not_a_message_is_refused(line):
    with pytest.raises(ProtocolError):
        decode(line)


def test_a_stream_skips_what_it_cannot_read():
    lines = ["garbage\n", encode(Progress(5, "a")), '{"kind": "mystery"}\n', encode(Result({})), "42\n"]
    assert list(messages(lines)) == [Progress(5, "a"), Result({})]


@pytest.mark.parametrize("request_", [
    Calibrate("/w/a.calibration.toml"), Calibrate("/w/with space.toml", trust=True),
    Compare("/w/a.xml", "/w/b.xml"), Compare("-a.xml", "b.xml", "-r.html", "GPU", 4, 0.25, False),
    Calibrate("-x.toml", trust=True), Calibrate("/w/a.toml", journal="/w/.int8wb/commits/-j.json"),
])
def test_requests_round_trip_through_the_command_line(request_):
    argv = command("/usr/bin/python3", request_)
    assert argv[:4] == ["/usr/bin/python3", "-I", "-m", WORKER_MODULE]
    assert parse_request(argv[4:]) == request_


@pytest.mark.parametrize("argv", [[], ["dance"], ["calibrate"], ["compare", "a.xml"],
                                  ["compare", "--batch=x", "--", "a", "b"]])
def test_a_command_line_that_is_not_a_request_is_refused(argv):
    with pytest.raises(ProtocolError):
        parse_request(argv)


def test_the_wire_is_plain_json_objects():
    line = encode(Progress(3, "calibrating"))
    assert json.loads(line) == {"kind": "progress", "percent": 3.0, "phase": "calibrating"}
