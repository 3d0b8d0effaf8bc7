"""Image preprocessing gives exactly the reference formula, (float(pixel) - mean) / scale, in every layout."""
import numpy as np
import pytest
from PIL import Image

from int8wb.calibration.inspection import TensorInfo
from int8wb.calibration.preprocessing import ImagePreprocessor
from int8wb.calibration.spec import PreprocessingSpec


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color, mean, scale", [("RGB", [1.5, 2, 3], [255, 2, 0.5]), ("BGR", [7], [3]),
                                                ("GRAY", [100], [58.5])])
def test_pixels_become_the_reference_values(tmp_path, layout, color, mean, scale):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    channels = 1 if color == "GRAY" else 3
    shape = [1, channels, 12, 20] if layout == "NCHW" else [1, 12, 20, channels]
    prep = ImagePreprocessor(PreprocessingSpec(layout=layout, color=color, mean=mean, scale=scale,
                                               interpolation="pillow-bilinear"),  # the reference decodes with Pillow
                             TensorInfo("x", shape, "f32"))
    with Image.open(tmp_path / "a.png") as img:
        ref = np.asarray(img.convert("L" if color == "GRAY" else "RGB"), dtype=np.float32)
    ref = ref[..., None] if ref.ndim == 2 else ref[..., ::-1] if color == "BGR" else ref
    ref = (ref - np.asarray(mean, np.float32)) / np.asarray(scale, np.float32)
    ref = ref.transpose(2, 0, 1) if layout == "NCHW" else ref
    got = prep(str(tmp_path / "a.png"))
    assert got.shape == tuple(shape) and got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got[0], ref)
