"""The engine's one TOML writer: spec dicts written as TOML read back the same."""
from __future__ import annotations

import tomllib

import pytest

from int8wb.calibration.toml_writer import overlay, to_toml


def test_keyword_specs_are_written_as_toml():
    text = to_toml({"model": "m.xml", "dataset": {"kind": "npz", "path": "d.npz", "subset": 10},
                    "preprocessing": {"mean": [0.5, 1.0]}, "inference": {"duration": 0.3}})
    assert tomllib.loads(text) == {"model": "m.xml", "dataset": {"kind": "npz", "path": "d.npz", "subset": 10},
                                   "preprocessing": {"mean": [0.5, 1.0]}, "inference": {"duration": 0.3}}
    assert text.splitlines()[0] == 'model = "m.xml"'


def test_overrides_merge_tables_and_none_removes():
    base = {"model": "m.xml", "dataset": {"kind": "npz", "path": "d.npz"}, "gate": {"max_drop": 0.01}}
    assert overlay(base, {"dataset": {"path": None, "subset": 5}, "gate": None, "device": "GPU"}) == \
        {"model": "m.xml", "dataset": {"kind": "npz", "subset": 5}, "device": "GPU"}
    assert base["dataset"] == {"kind": "npz", "path": "d.npz"}  # the base is left as it was


def test_values_toml_cannot_hold_are_refused():
    with pytest.raises(TypeError, match=r"\[dataset\] x cannot be a table"):
        to_toml({"dataset": {"x": {"y": 1}}})
    with pytest.raises(TypeError, match="cannot write"):
        to_toml({"model": object()})
