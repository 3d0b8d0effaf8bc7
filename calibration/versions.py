"""Versions that make a result what it is; light (no OpenVINO import), so caches can key on them."""
from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

VERSIONED = ("int8-workbench", "openvino", "nncf")


@functools.cache  # package metadata does not change while we run; reading it is not free
def _read() -> tuple:
    out = []
    for dist in VERSIONED:
        try:
            out.append((dist, version(dist)))
        except PackageNotFoundError:
            out.append((dist, None))
    return tuple(out)


def versions() -> dict:
    return dict(_read())
