"""Lazy .npz reading: the same tensors as np.load, data left unread until asked for, bad files named."""
import zipfile

import numpy as np
import pytest

from int8wb.calibration import CalibrationError, datasets, inspect_model, load_spec
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.npz import NpzFile

ODD = {
    "f16": np.arange(2 * 3 * 5, dtype=np.float16).reshape(2 * 3, 5) / 7,
    "big_endian": np.arange(24, dtype=">f4").reshape(6, 2, 2),
    "i64": np.arange(-9, 9, dtype=np.int64).reshape(6, 3),
    "flags": np.arange(12).reshape(6, 2) % 3 == 0,
    "complex": (np.arange(6) + 1j * np.arange(6)).astype(np.complex64),
    "record": np.array([(i, i / 2) for i in range(6)], dtype=[("a", "<i2"), ("b", "<f8")]),
    "fortran": np.asfortranarray(np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3)),
    "empty_rows": np.zeros((6, 0), np.float32),
}


def spec_for(tmp_path, model_xml, dataset: str):
    (tmp_path / "s.calibration.toml").write_text(f'model = "{model_xml}"\n[dataset]\n{dataset}\n')
    return load_spec(tmp_path / "s.calibration.toml")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_match_np_load_for_stored_and_compressed_files(tmp_path, save):
    save(tmp_path / "d.npz", **ODD)
    expected = dict(np.load(tmp_path / "d.npz"))
    lazy = NpzFile(tmp_path / "d.npz").arrays
    assert set(lazy) == set(expected)
    for name, want in expected.items():
        arr = lazy[name]
        assert (arr.shape, arr.dtype) == (want.shape, want.dtype)
        assert arr.read().tobytes() == np.ascontiguousarray(want).tobytes(), name
        for i in (0, 3, 1, 5, 2):  # out of order: a compressed stream must go back
            got = arr.rows(i, i + 1)
            assert got.flags.c_contiguous and got.flags.writeable and np.array_equal(got, want[i:i + 1]), (name, i)
        assert np.array_equal(arr.rows(4, 99), want[4:])


def test_a_large_array_stays_unread_until_its_rows_are_asked_for(tmp_path, model_xml):
    """Only headers are parsed at scan: a member whose data is damaged beyond its first rows opens
    and serves those rows; np.load of the same file fails."""
    x = np.random.default_rng(0).standard_normal((64, 3, 16, 16)).astype(np.float32)
    unused = np.random.default_rng(1).standard_normal((200_000,)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez_compressed(path, inputs=x, unused=unused)
    with zipfile.ZipFile(path) as zf:
        spans = {i.filename: (i.header_offset, i.compress_size) for i in zf.infolist()}
    raw = bytearray(path.read_bytes())
    for name in ("inputs.npy", "unused.npy"):  # wreck the second half of each member's deflated data
        start, size = spans[name]
        raw[start + 200 + size // 2: start + size] = b"\0" * (size - size // 2 - 200)
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception):
        dict(np.load(path))
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    assert len(ds) == 64 and np.array_equal(ds.load(0)["image"], x[:1])
    with pytest.raises(CalibrationError) as exc:
        ds.load(63)
    problem = exc.value.problems[0]
    assert problem.rule == "dataset-format" and problem.path == str(path) and "inputs" in problem.message


def test_stored_rows_are_read_through_a_map_of_the_rows_alone(tmp_path):
    """A stored member's rows come from its data offset in the zip, past the local header's extra field."""
    x = np.arange(5 * 7, dtype=np.int32).reshape(5, 7)
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo("inputs.npy")
        info.extra = b"\xfe\xca\x04\x00abcd"  # an extra field only in the local header's copy
        with zf.open(info, "w") as fh:
            np.lib.format.write_array(fh, x)
    arr = NpzFile(path).arrays["inputs"]
    assert arr.stored and np.array_equal(arr.rows(2, 4), x[2:4]) and np.array_equal(arr.read(), x)


@pytest.mark.parametrize("case, message", [
    ("not_a_zip", "not a zip file"),
    ("truncated", "truncated"),
    ("objects", "Python objects"),
    ("scalar_input", "no sample axis"),
    ("scalar_labels", "unsized"),
])
def test_unreadable_npz_files_are_named(tmp_path, model_xml, case, message):
    path = tmp_path / "d.npz"
    x = np.zeros((2, 3, 16, 16), np.float32)
    if case == "not_a_zip":
        np.save(tmp_path / "d.npy", x)
        (tmp_path / "d.npy").rename(path)
    elif case == "truncated":
        with zipfile.ZipFile(path, "w") as zf:
            with zf.open("inputs.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (2, 3, 16, 16)})
                fh.write(x[:1].tobytes())
    elif case == "objects":
        np.savez(path, inputs=x, labels=np.array([None, 1], dtype=object))
    elif case == "scalar_input":
        np.savez(path, inputs=np.float32(1))
    else:
        np.savez(path, inputs=x, labels=np.int64(3))
    with pytest.raises(CalibrationError) as exc:
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    problem = exc.value.problems[0]
    assert problem.rule == "dataset-format" and problem.path == str(path) and message in problem.message


def test_sample_counts_that_disagree_are_refused(tmp_path, model_xml):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((3, 3, 16, 16), np.float32), labels=np.arange(4))
    with pytest.raises(CalibrationError, match=r"disagree on the sample count: \[3, 4\]"):
        open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))


def test_npz_samples_are_cast_to_the_input_type(tmp_path, model_xml):
    x = np.arange(2 * 3 * 16 * 16, dtype=np.uint16).reshape(2, 3, 16, 16)
    np.savez_compressed(tmp_path / "d.npz", image=x, labels=np.array([4, 2], np.int8))
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    got = ds.load(1)["image"]
    assert got.dtype == np.float32 and np.array_equal(got, x[1:].astype(np.float32)) and ds.label(1) == 2


def test_only_a_dataset_that_fits_the_budget_is_cached(tmp_path, model_xml, monkeypatch):
    np.savez(tmp_path / "d.npz", inputs=np.ones((4, 3, 16, 16), np.float32))
    sample = 3 * 16 * 16 * 4
    spec, info = spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml)
    monkeypatch.setattr(datasets, "CACHE_BYTES", 4 * sample)
    small = open_dataset(spec, info)
    assert small.preload([0, 2]) and small.load(2) is small.load(2)
    monkeypatch.setattr(datasets, "CACHE_BYTES", 3 * sample)  # three fit, but not the whole dataset
    large = open_dataset(spec, info)
    assert not large.preload([0, 2]) and large.load(0) is not large.load(0)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_text_labels_stay_text(tmp_path, model_xml, save):
    """An OCR or captioning set keeps its words: a unicode `labels` array gives str labels, as written."""
    words = np.array(["cat", "dog house", "émigré"])
    save(tmp_path / "d.npz", inputs=np.zeros((3, 3, 16, 16), np.float32), labels=words)
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    assert ds.annotated and [ds.label(i) for i in range(3)] == ["cat", "dog house", "émigré"]
    assert all(type(ds.label(i)) is str for i in range(3))
    np.savez(tmp_path / "d.npz", inputs=np.zeros((2, 3, 16, 16), np.float32), labels=np.array([3, 7]))
    ds = open_dataset(spec_for(tmp_path, model_xml, 'kind = "npz"\npath = "d.npz"'), inspect_model(model_xml))
    assert [ds.label(0), ds.label(1)] == [3, 7] and type(ds.label(0)) is int
