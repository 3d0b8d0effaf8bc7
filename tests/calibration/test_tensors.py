"""`int8wb tensors` writes exactly what the tool feeds: bit-identical to cv2.resize (opencv-*) or to
Pillow (pillow-*) followed by the spec's colour order, mean, scale and layout, on images of odd sizes."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from int8wb.calibration import load_spec
from int8wb.calibration.spec import INTERPOLATIONS
from int8wb.calibration.tensors import write_tensors
from conftest import conv_net, save

CV = {"opencv-linear": cv2.INTER_LINEAR, "opencv-area": cv2.INTER_AREA, "opencv-nearest": cv2.INTER_NEAREST,
      "opencv-cubic": cv2.INTER_CUBIC}
PIL = {"pillow-bilinear": Image.BILINEAR, "pillow-bicubic": Image.BICUBIC, "pillow-lanczos": Image.LANCZOS}
MEAN, SCALE = np.array([10.0, 20.0, 30.0], np.float32), np.array([2.0, 3.0, 4.0], np.float32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.integers(0, 255, (41, 53, 3), dtype=np.uint8), (5, 5), 0)
    Image.fromarray(smooth).save(folder / "a.png")                                      # shrunk to 16×16
    Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)).save(folder / "b.png")  # enlarged
    Image.fromarray(smooth[:37, :29]).save(folder / "c.jpg", quality=85)               # JPEG decoding too
    return folder


def spec_for(tmp_path, folder, interpolation: str, color: str):
    save(conv_net(), tmp_path / "model.xml")  # input [?, 3, 16, 16]
    spec = tmp_path / "t.calibration.toml"
    spec.write_text(f'model = "model.xml"\n[dataset]\nkind = "images"\npath = "{folder}"\n'
                    f'[preprocessing]\ninterpolation = "{interpolation}"\ncolor = "{color}"\n'
                    'mean = [10.0, 20.0, 30.0]\nscale = [2.0, 3.0, 4.0]\n')
    return spec


def expected(path, interpolation: str, color: str) -> np.ndarray:
    if interpolation in CV:
        img = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (16, 16), interpolation=CV[interpolation])
        img = img[..., ::-1] if color == "RGB" else img  # OpenCV decodes BGR
    else:
        img = np.asarray(Image.open(path).convert("RGB").resize((16, 16), PIL[interpolation]))
        img = img[..., ::-1] if color == "BGR" else img
    return ((img.astype(np.float32) - MEAN) / SCALE).transpose(2, 0, 1)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_tensors_are_bit_identical_to_the_named_library(tmp_path, images, interpolation, color):
    out = tmp_path / "t.npz"
    summary = write_tensors(load_spec(spec_for(tmp_path, images, interpolation, color)), "calibration", out)
    data = np.load(out)
    assert summary["samples"] == 3 and summary["inputs"] == {"image": [3, 3, 16, 16]}
    assert [p.rsplit("/", 1)[1] for p in data["paths"]] == ["a.png", "b.png", "c.jpg"]  # dataset order
    for tensor, path in zip(data["image"], data["paths"]):
        assert tensor.dtype == np.float32 and np.array_equal(tensor, expected(path, interpolation, color)), path


def test_the_modes_differ_where_they_should(tmp_path, images):
    """Not a vacuous comparison: the implementations give different tensors on the shrunk image."""
    got = {}
    for mode in ("opencv-linear", "pillow-bilinear", "opencv-area"):
        write_tensors(load_spec(spec_for(tmp_path, images, mode, "RGB")), "calibration", tmp_path / f"{mode}.npz")
        got[mode] = np.load(tmp_path / f"{mode}.npz")["image"][0]
    assert not np.array_equal(got["opencv-linear"], got["pillow-bilinear"])
    assert not np.array_equal(got["opencv-linear"], got["opencv-area"])


def test_the_command_line_writes_a_split_and_never_replaces_a_file_unasked(tmp_path, images):
    spec = spec_for(tmp_path, images, "opencv-linear", "RGB")
    out = tmp_path / "v.npz"
    cli = [sys.executable, "-m", "int8wb.editor_client.cli", "tensors", str(spec), "--split", "validation",
           "--out", str(out), "--limit", "2", "--json", "-q"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["samples"] == 2 and np.load(out)["image"].shape == (2, 3, 16, 16)
    before = out.read_bytes()
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "exists" in again.stderr and out.read_bytes() == before
    held = subprocess.run(cli[:5] + ["--split", "evaluation", "--out", str(tmp_path / "e.npz")],
                          capture_output=True, text=True, timeout=120)
    assert held.returncode == 1 and "no [evaluation] table" in held.stderr
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("align", ["center", "top-left"])
@pytest.mark.parametrize("pad", ["114", '"mean"'])
def test_letterbox_keeps_the_aspect_and_pads(tmp_path, images, align, pad):
    """a.png is 53×41: shrunk to 16×12 (same aspect) and padded to 16×16 as a detector's loader does."""
    spec = spec_for(tmp_path, images, "opencv-linear", "RGB")
    spec.write_text(spec.read_text() + f'letterbox = true\npad_value = {pad}\nalign = "{align}"\n')
    write_tensors(load_spec(spec), "calibration", tmp_path / "l.npz")
    got = np.load(tmp_path / "l.npz")["image"][0]
    img = cv2.imread(str(images / "a.png"), cv2.IMREAD_COLOR)
    inner = cv2.resize(img, (16, 12), interpolation=cv2.INTER_LINEAR)[..., ::-1]  # 41 * 16/53 = 12.4 -> 12
    top = 2 if align == "center" else 0
    canvas = np.full((16, 16, 3), 0 if pad == '"mean"' else 114, np.uint8)
    canvas[top:top + 12] = inner
    want = ((canvas.astype(np.float32) - MEAN) / SCALE).transpose(2, 0, 1)
    if pad == '"mean"':
        want[:, :top], want[:, top + 12:] = 0.0, 0.0
    assert np.array_equal(got, want)
