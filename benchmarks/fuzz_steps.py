"""One step of a fuzz campaign (benchmarks/bench_fuzz_daemon.py), made and written in a separate process:
a case of fuzz_cases.py put on disk (the pools of spec files and model pairs, the hostile folder) and what
the editor does next (a Step). The same seed and step number give the same step.
"""
from __future__ import annotations

import functools
import json
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from fuzz_cases import PairCase, base_pair, base_spec, light_spec_case, pair_case, spec_case


def hostile_uris(fuzz: Path, i: int) -> list[str]:
    """Document URIs an editor (or a broken client) may send: no file, no path, a FIFO, a loop, '/'."""
    from pygls.uris import from_fs_path

    hostile = fuzz / "hostile"
    return [f"untitled:Untitled-{i}.calibration.toml", "file:///.calibration.toml",
            "file:///" + "a" * 5000 + ".calibration.toml", from_fs_path(str(fuzz / "buffers")) + f"/b%00{i}.calibration.toml",
            "file://server/share/x.calibration.toml", from_fs_path(str(fuzz / "buffers" / f"b {i}%.calibration.toml")),
            *(from_fs_path(str(hostile / name)) for name in ("fifo.calibration.toml", "loop.calibration.toml",
                                                           "dir.calibration.toml", "root.calibration.toml"))]


# -- one step of a campaign: made and written in a separate process -------------------------------------
SPEC_POOL, PAIR_POOL = 64, 32   # spec files and model pairs that the steps keep rewriting


@dataclass
class Step:
    """What a step wrote, and what the editor does next (the benchmark's own process sends it)."""
    kind: str
    path: str | None = None        # the pool file written, if any
    heavy: bool = False            # its engine answer is not computed by the benchmark
    uri: str | None = None         # a buffer to open, or to change if it is open
    text: str | bytes | None = None    # bytes: the text already encoded as a JSON string (a big one)
    change: str | bytes | None = None  # a further edit of one of the open buffers
    ask: int | None = None         # the editor then asks about the buffer at this line: hover, lenses, fixes

    def encoded(self) -> Step:
        """Big texts travel as JSON already, so that the editor's side spends no time encoding them."""
        for name in ("text", "change"):
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > 1 << 20:
                setattr(self, name, json.dumps(value).encode())
        return self


@functools.lru_cache(maxsize=None)
def _bases() -> tuple[str, bytes, bytes]:
    return (base_spec("../../digits"), *base_pair())


def _rng(seed: int, i: int) -> random.Random:
    return random.Random(seed * 1_000_003 + i)


def spec_step(seed: int, i: int, fuzz: str) -> Step:
    """Step `i`: a malformed spec written into the pool, opened as a buffer, or both (a buffer whose
    file on disk says something else)."""
    from pygls.uris import from_fs_path

    rng, fuzz_dir, (base, _, _) = _rng(seed, i), Path(fuzz), _bases()
    case = spec_case(rng, base)
    if case.policy:  # a drop policy in a nested folder: not a spec, but the daemon must keep watching
        folder = fuzz_dir / "nested" / f"n{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        put(folder / "calibration.toml", case.data())
        return Step(case.kind)
    channel = "file" if case.entry else rng.choice(["buffer", "file", "file", "both"])
    step = Step(case.kind, change=spec_case(rng, base).text if rng.random() < 0.5 else None)
    asks = rng.random() < 0.5
    if channel == "buffer":
        path = fuzz_dir / "buffers" / f"b{i}.calibration.toml"  # never on disk
        step.uri = rng.choice(hostile_uris(fuzz_dir, i)) if rng.random() < 0.1 else from_fs_path(str(path))
        step.text = case.text
    else:
        path = fuzz_dir / "specs" / f"s{rng.randrange(SPEC_POOL):02d}.calibration.toml"
        put(path, case.entry or case.data())
        step.path, step.heavy = str(path), case.heavy
        if channel == "both":
            step.uri, step.text = from_fs_path(str(path)), spec_case(rng, base).text
    if step.text is not None and asks:
        step.ask = next((n for n, row in enumerate(step.text.split("\n")[:200]) if row.lstrip().startswith("model")),
                        rng.randrange(50))
    return step.encoded()


def pair_step(seed: int, i: int, fuzz: str) -> Step:
    rng, (_, xml, weights) = _rng(seed, i), _bases()
    case = pair_case(rng, xml, weights)
    path = Path(fuzz) / "pairs" / f"p{rng.randrange(PAIR_POOL):02d}.xml"
    write_pair(path, case)
    return Step("pair:" + case.kind, str(path))


def rewrite(seed: int, path: str) -> None:
    """The last state of a spec file whose last case was heavy: one the benchmark can judge."""
    rng = _rng(seed, zlib.crc32(path.encode()))
    put(Path(path), light_spec_case(rng, _bases()[0]).data())


def write_pair(xml: Path, case: PairCase) -> None:
    weights = xml.with_suffix(".bin")
    if case.rename and isinstance(case.xml, bytes):
        hidden = xml.with_name("." + xml.name + ".part")
        put(hidden, case.xml)
        put(weights, case.bin)
        put(xml, None)
        os.replace(hidden, xml)
        return
    put(xml, case.xml)
    if case.halves and isinstance(case.bin, bytes):
        put(weights, None)
        with open(weights, "wb") as fh:
            fh.write(case.bin[: len(case.bin) // 2])
            fh.flush()
            time.sleep(0.3)
            fh.write(case.bin[len(case.bin) // 2:])
    else:
        put(weights, case.bin)


# -- on disk -------------------------------------------------------------------------------------------
def hostile_folder(folder: Path) -> None:
    """The targets hostile paths name: a FIFO, a symlink loop, a folder named .xml, a link to '/', a
    FIFO and /dev/zero named like models, a compressed .npz of 400 MB of zeros; and a FIFO, a loop, a
    folder and a link to '/' named like specs (an editor may open them)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo")
    os.mkfifo(folder / "fifo.xml")
    os.mkfifo(folder / "fifo.calibration.toml")
    (folder / "loop.calibration.toml").symlink_to(folder / "loop.calibration.toml")
    (folder / "dir.calibration.toml").mkdir()
    (folder / "root.calibration.toml").symlink_to("/")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dir.xml").mkdir()
    (folder / "root").symlink_to("/")
    (folder / "zero.xml").symlink_to("/dev/zero")
    np.savez_compressed(folder / "bomb.npz", inputs=np.zeros((100_000, 1, 32, 32), np.float32),
                        labels=np.zeros(100_000, np.int64))


def remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a symlink loop: is_dir() raised; unlink the link itself
        os.unlink(path)


def put(path: Path, what: bytes | str | None) -> None:
    """Replaces whatever is at `path` by `what`: bytes, a special entry, or nothing (None)."""
    remove(path)
    if what is None:
        return
    if isinstance(what, bytes):
        path.write_bytes(what)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "dir":
        path.mkdir()
    elif what == "loop":
        path.symlink_to(path)
    elif what.startswith("link:"):
        target = what[5:]
        path.symlink_to(target if target.startswith("/") else path.parents[1] / target)
    else:
        raise ValueError(what)
