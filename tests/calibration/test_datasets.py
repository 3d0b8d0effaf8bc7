import numpy as np
import pytest
from PIL import Image

from int8wb.calibration import CalibrationError, inspect_model, load_spec
from int8wb.calibration.datasets import open_dataset


def make_images(folder, n, size=(16, 16), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"{i:03d}.png")


def spec_for(tmp_path, model_xml, dataset: str, extra: str = ""):
    path = tmp_path / "s.calibration.toml"
    path.write_text(f'model = "{model_xml}"\n[dataset]\n{dataset}\n{extra}')
    return load_spec(path)


def test_class_folders_numeric_and_named(tmp_path, model_xml):
    for name in ("cat", "dog"):
        make_images(tmp_path / "named" / name, 3)
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "imagenet"\npath = "named"'), inspect_model(model_xml))
    assert len(ds) == 6 and [ds.label(i) for i in range(6)] == [0, 0, 0, 1, 1, 1] and ds.annotated
    make_images(tmp_path / "num" / "7", 2)
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "imagenet"\npath = "num"'), inspect_model(model_xml))
    assert {ds.label(i) for i in range(len(ds))} == {7}


def test_preprocessing_resize_mean_scale_layout(tmp_path, model_xml):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 51)).save(folder / "a.png")
    spec = spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"',
                    '[preprocessing]\ncolor = "BGR"\nmean = [0, 0, 51]\nscale = [255, 1, 2]\n')
    x = open_dataset(spec, inspect_model(model_xml)).load(0)["image"]
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32  # resized to the model input
    assert np.allclose(x[0, :, 5, 5], [51 / 255, 0, (255 - 51) / 2])    # BGR, then per-channel mean/scale


def test_subset_is_deterministic_and_sized(tmp_path, model_xml):
    make_images(tmp_path / "imgs", 20)
    info = inspect_model(model_xml)
    pick = lambda seed: open_dataset(spec_for(  # noqa: E731
        tmp_path, model_xml, f'kind = "images"\npath = "imgs"\nsubset = "25%"\nseed = {seed}'), info).subset_indices()
    assert pick(1) == pick(1) and len(pick(1)) == 5 and pick(1) != pick(2)
    with pytest.raises(CalibrationError) as exc:
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"\nsubset = "1%"'),
                     info).subset_indices()
    assert exc.value.problems[0].rule == "subset-too-small" and exc.value.problems[0].line == 5


def test_image_list_with_bad_line(tmp_path, model_xml):
    make_images(tmp_path / "imgs", 2)
    (tmp_path / "list.txt").write_text("# comment\nimgs/000.png 3\nimgs/001.png\n")
    with pytest.raises(CalibrationError) as exc:
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "image_list"\npath = "list.txt"'),
                     inspect_model(model_xml))
    p = exc.value.problems[0]
    assert p.path.endswith("list.txt") and p.line == 3


def test_npz_inputs_and_labels(tmp_path, model_xml):
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=x, labels=np.arange(5))
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    assert ds.annotated and ds.label(4) == 4 and np.array_equal(ds.load(2)["image"][0], x[2])
    np.savez(tmp_path / "bad.npz", something=x)
    with pytest.raises(CalibrationError, match="no array for model input"):
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "bad.npz"'), inspect_model(model_xml))


def test_missing_and_empty_dataset(tmp_path, model_xml):
    info = inspect_model(model_xml)
    with pytest.raises(CalibrationError) as exc:
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "imagenet"\npath = "nope"'), info)
    assert exc.value.problems[0].rule == "dataset-missing" and exc.value.problems[0].key == "dataset.path"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError) as exc:
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "images"\npath = "empty"'), info)
    assert exc.value.problems[0].rule == "dataset-empty"


def test_undecodable_image_names_the_file(tmp_path, model_xml):
    make_images(tmp_path / "imgs", 1)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"'), inspect_model(model_xml))
    with pytest.raises(CalibrationError) as exc:
        ds.load(1)
    assert exc.value.problems[0].path.endswith("broken.png")


def test_input_shape_mismatch(tmp_path, model_xml):
    x = np.zeros((2, 3, 8, 8), np.float32)
    np.savez(tmp_path / "d.npz", inputs=x)
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    with pytest.raises(CalibrationError) as exc:
        ds.load(0)
    assert exc.value.problems[0].rule == "input-shape-mismatch" and "[?,3,16,16]" in exc.value.problems[0].message


def test_generated_dataset(tmp_path, model_xml):
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "generated"\ncount = 4'), inspect_model(model_xml))
    assert ds.generated and len(ds) == 4 and ds.load(0)["image"].shape == (1, 3, 16, 16)


def test_an_images_folder_reads_its_sub_folders_only_when_asked(tmp_path, model_xml):
    """A folder of 5 pages whose sub-folder held 3 masks gave 8 samples, and nothing said so."""
    make_images(tmp_path / "imgs", 5)
    make_images(tmp_path / "imgs" / "masks", 3)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    info = inspect_model(model_xml)
    flat = open_dataset(spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"'), info)
    deep = open_dataset(spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"\nrecursive = true'), info)
    assert len(flat) == 5 and len(deep) == 8
    assert not any("masks" in e.source for e in flat.entries)


@pytest.mark.parametrize("extra", ["", '[preprocessing]\nletterbox = true\npad_value = "mean"\nmean = [10, 20, 30]\n'
                                      'scale = [2, 3, 4]\n'])
def test_the_cache_keeps_8_bit_pictures_and_gives_what_decoding_gives(tmp_path, model_xml, monkeypatch, extra):
    """A cached image dataset keeps each decoded picture in 8 bits (a quarter of its float tensor, so
    four times the samples fit the budget) and builds the tensor on every load: the same values as
    decoding again, and a fresh array each time, so a caller writing into one changes no other load."""
    from int8wb.calibration import datasets

    make_images(tmp_path / "imgs", 5, size=(20, 12))
    spec = spec_for(tmp_path, model_xml, 'kind = "images"\npath = "imgs"', extra)
    ds = open_dataset(spec, inspect_model(model_xml))
    first = [ds.load(i)["image"].copy() for i in range(5)]
    assert ds._cached_bytes == 5 * 16 * 16 * 3  # uint8 pixels, not 4-byte floats
    again = ds.load(2)["image"]
    again[...] = -1.0
    assert all(np.array_equal(ds.load(i)["image"], first[i]) for i in range(5))
    fresh = open_dataset(spec, inspect_model(model_xml))
    monkeypatch.setattr(datasets, "CACHE_BYTES", 0)  # nothing cached: every load decodes
    assert all(np.array_equal(fresh.load(i)["image"], first[i]) for i in range(5)) and not fresh._cache
