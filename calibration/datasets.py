"""The dataset kinds a spec can name, behind one interface: a list of samples that load lazily.

Decoding is lazy (a folder can be larger than memory). A dataset whose decoded samples all fit in
a small budget is cached, because the workflow reads the same samples for the FP32 baseline,
calibration and the INT8 run; a larger one streams, so memory does not grow with the dataset.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .annotations import Boxes, read_coco, read_voc, voc_split
from .inspection import ModelInfo
from .npz import NpzError, NpzFile
from .preprocessing import IMAGE_SUFFIXES, ImagePreprocessor, check_shape
from .problems import CalibrationError, Cancelled, Problem
from .segmentation import mask_label
from .spec import DatasetSpec, Spec

# Per dataset. Caching buys little once decoding is a small share of a sample's cost (large inputs)
# and would hold what a large dataset cannot afford: see BENCHMARKS.md, "Peak memory".
CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class Entry:
    source: str            # image file, or "file.npz[i]"
    label: int | str | Boxes | None  # str for text labels (e.g. OCR words); Boxes: detection


class Dataset:
    kind: str = ""
    annotated: bool = False
    generated: bool = False

    def __init__(self, entries: list[Entry], spec: Spec, model: ModelInfo, role: str = "dataset"):
        self.entries = entries
        self.spec = spec
        self.model = model
        self.role = role                      # the spec table it comes from
        self.table: DatasetSpec = getattr(spec, role)
        self._cache: dict = {}  # index -> what `_decode` gave
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def label(self, index: int) -> int | None:
        return self.entries[index].label

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Model inputs of one sample (batch dimension 1), checked against the model's shapes."""
        if index in self._cache:
            return self._inputs(self._cache[index])
        kept = self._decode(index)
        inputs = self._inputs(kept)
        for info in self.model.inputs:
            check_shape(inputs[info.name], info, self.entries[index].source, self.model.path)
        size = self._bytes(kept)
        # All or nothing: a partly cached large dataset would hold the budget and save a few decodes.
        if size * len(self) <= CACHE_BYTES and self._cached_bytes + size <= CACHE_BYTES:
            self._cache[index] = kept
            self._cached_bytes += size
        return inputs

    def _decode(self, index: int):
        """The sample in the form the cache keeps: here the model inputs themselves."""
        return self._load(index)

    def _inputs(self, kept) -> dict[str, np.ndarray]:
        """Model inputs from what `_decode` gave."""
        return kept

    def _bytes(self, kept) -> int:
        return sum(a.nbytes for a in kept.values())

    def _load(self, index: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def preload(self, indices: list[int], cancel=None) -> bool:
        """Decodes `indices` into the cache up front when the dataset is cached: decoding between
        NNCF's short inferences costs more than decoding in one go. False (one sample decoded) when not."""
        if not indices:
            return True
        self.load(indices[0])
        if indices[0] not in self._cache:
            return False
        for i in indices[1:]:
            if cancel and cancel():
                raise Cancelled()
            self.load(i)
        return True

    def subset_indices(self) -> list[int]:
        """The deterministic calibration subset, in dataset order."""
        size = self.table.subset_size(len(self))
        if size == 0:
            raise CalibrationError(self.spec.problem(
                f"subset {self.table.subset} of {len(self)} samples selects no sample",
                self.role, "subset", rule="subset-too-small", fix="raise the percent or give a count"))
        if size >= len(self):
            return list(range(len(self)))
        rng = np.random.default_rng(self.table.seed)
        return sorted(int(i) for i in rng.choice(len(self), size=size, replace=False))


class _ImageDataset(Dataset):
    def __init__(self, entries, spec, model, role="dataset"):
        super().__init__(entries, spec, model, role)
        if len(model.inputs) != 1:
            raise CalibrationError(spec.problem(
                f"an image dataset feeds one input; the model has {len(model.inputs)}",
                role, "kind", rule="multi-input-unannotated", fix='use kind = "npz" with one array per input'))
        self.preprocess = ImagePreprocessor(spec.preprocessing, model.inputs[0])

    # The cache keeps the decoded 8-bit picture, not the float tensor: a quarter of the bytes, so four
    # times the samples fit its budget (1,200 word crops of 48x320), and normalising one costs a
    # tenth of decoding it again.
    def _decode(self, index):
        return self.preprocess.decoded(self.entries[index].source)

    def _inputs(self, kept):
        return {self.model.inputs[0].name: self.preprocess.tensor(*kept)}

    def _bytes(self, kept):
        return kept[0].nbytes


class ClassFolderDataset(_ImageDataset):
    """ImageNet style: one sub-folder per class. Numeric folder names are the labels;
    otherwise the label is the folder's index in sorted order (as torchvision's ImageFolder)."""
    kind, annotated = "imagenet", True

    @classmethod
    def scan(cls, root: Path, spec, model, role):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        numeric = bool(classes) and all(c.isdigit() for c in classes)
        entries = [Entry(str(f), int(c) if numeric else i)
                   for i, c in enumerate(classes) for f in _images(root / c)]
        return cls(entries, spec, model, role)


class ImageListDataset(_ImageDataset):
    """A text file of `path label` lines; paths relative to the file; `#` starts a comment.
    Integer labels are classes; any other label is text (tab-separated when it holds spaces)."""
    kind, annotated = "image_list", True

    @classmethod
    def scan(cls, list_file: Path, spec, model, role):
        entries = []
        for number, parts in image_list_lines(list_file):
            if len(parts) != 2 or not parts[1]:
                raise CalibrationError(Problem("expected `path label` (or `path<TAB>label`)",
                                               path=str(list_file), line=number, rule="dataset-format"))
            image = (list_file.parent / parts[0]).resolve()
            if not image.is_file():
                raise CalibrationError(Problem(f"image not found: {parts[0]}", path=str(list_file),
                                               line=number, rule="dataset-missing"))
            label = parts[1].strip()
            entries.append(Entry(str(image), int(label) if label.lstrip("-").isdigit() else label))
        return cls(entries, spec, model, role)


def image_list_lines(list_file: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each entry of an image list: `path label`, or `path<TAB>label` when
    the label holds spaces; `#` starts a comment except on a tab-separated line. Fields are not
    checked (one field: a path with no label). Raises OSError/UnicodeDecodeError as reading does."""
    lines = []
    for number, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip() if "\t" in raw else raw.split("#", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append((number, line.split("\t", 1) if "\t" in line else line.rsplit(maxsplit=1)))
    return lines


class ImageFolderDataset(_ImageDataset):
    """Unannotated images in a folder (and its sub-folders with `recursive = true`): enough for Default
    calibration."""
    kind, annotated = "images", False

    @classmethod
    def scan(cls, root: Path, spec, model, role):
        return cls([Entry(str(f), None) for f in _images(root, recursive=getattr(spec, role).recursive)],
                   spec, model, role)


class SegmentationDataset(_ImageDataset):
    """Semantic segmentation: `images/` and `masks/` in the folder, paired by file stem (a.jpg <-> a.png);
    the label is the mask's path (the usage's metrics read it at the output's size)."""
    kind, annotated = "segmentation", True

    @classmethod
    def scan(cls, root: Path, spec, model, role):
        images, masks = root / "images", root / "masks"
        if not (images.is_dir() and masks.is_dir()):
            raise CalibrationError(spec.problem(f"a segmentation folder holds images/ and masks/: {root}", role,
                                                "path", rule="dataset-format",
                                                fix="put the pictures in images/ and their masks in masks/"))
        by_stem = {m.stem: m for m in _images(masks)}
        entries, missing = [], []
        for image in _images(images):
            mask = by_stem.get(image.stem)
            (entries.append(Entry(str(image), str(mask))) if mask else missing.append(image.name))
        if missing:
            raise CalibrationError(spec.problem(f"{len(missing)} image(s) without a mask of the same name in masks/, "
                                                f"e.g. {missing[0]}", role, "path", rule="dataset-format",
                                                fix="give every image a mask (same stem, .png)"))
        ds = cls(entries, spec, model, role)
        place = ds.preprocess
        if place.spec.letterbox and place.size:  # the picture fills part of the input: its masks say which
            ds.entries = [replace(e, label=mask_label(e.label, e.source, place)) for e in ds.entries]
        return ds


class DetectionDataset(_ImageDataset):
    """Object detection: a folder of images and their boxes (`annotations`: a COCO instances JSON, or a
    folder of Pascal VOC XML files; or with `split` a VOCdevkit year folder). The label is the image's Boxes, with where the preprocessing puts
    the image in the model input (what maps the boxes a model finds back to the original image)."""
    annotated = True

    @classmethod
    def scan(cls, root: Path, spec, model, role):
        table: DatasetSpec = getattr(spec, role)
        if not (table.annotations or table.split):
            raise CalibrationError(spec.problem(
                f"kind {table.kind!r} needs annotations", role, "kind", rule="dataset-missing",
                fix='set annotations = "instances.json" (coco) or "Annotations" (voc: a folder of XML files), '
                    'or split = "val" (voc: path is a VOCdevkit year folder)'))
        where = spec.resolve(table.annotations) if table.annotations else root / "Annotations"
        if not (where.is_file() if table.kind == "coco" else where.is_dir()):
            raise CalibrationError(spec.problem(
                f"annotations not found: {where}", role, "annotations" if table.annotations else "path",
                rule="dataset-missing", fix=None if table.annotations else "point path at a VOCdevkit year folder "
                "(Annotations/, JPEGImages/, ImageSets/Main/), or set annotations"))
        pairs, names = (read_coco(where, root, table.classes) if table.kind == "coco"
                        else read_voc(where, _voc_images(root, where, spec, role), table.classes))
        ds = cls([Entry(image, boxes) for image, boxes in pairs], spec, model, role)
        ds.kind, ds.classes = table.kind, names
        ds.annotated = any(len(boxes.boxes) for _, boxes in pairs)
        place = ds.preprocess
        ds.entries = [replace(e, label=replace(e.label, input_size=place.size or e.label.size,
                                               placement=place.placement(*e.label.size))) for e in ds.entries]
        return ds


class NpzDataset(Dataset):
    """Ready tensors: one array per model input (or `inputs` for a single-input model),
    first axis = samples; optional `labels` (integers, or text: a unicode array). Read lazily (see
    `npz`): only the labels are read whole; a compressed .npz is slower than a stored one when samples
    are read out of order."""
    kind = "npz"

    @classmethod
    def scan(cls, file: Path, spec, model, role):
        try:
            arrays = dict(NpzFile(file).arrays)
            names = [t.name for t in model.inputs]
            if len(names) == 1 and names[0] not in arrays and "inputs" in arrays:
                arrays[names[0]] = arrays.pop("inputs")
            missing = [n for n in names if n not in arrays]
            if missing:
                raise CalibrationError(Problem(
                    f"no array for model input(s) {missing}; arrays present: {sorted(arrays)}",
                    path=str(file), rule="dataset-format", fix="name the arrays after the model inputs"))
            counts = {len(arrays[n]) for n in names}
            labels = arrays["labels"].read() if "labels" in arrays else None
            if labels is not None:
                counts.add(len(labels))
        except (NpzError, TypeError) as exc:  # TypeError: len() of scalar labels
            raise CalibrationError(Problem(f"cannot read the .npz: {exc}", path=str(file),
                                           rule="dataset-format")) from None
        if len(counts) != 1:
            raise CalibrationError(Problem(f"arrays disagree on the sample count: {sorted(counts)}",
                                           path=str(file), rule="dataset-format"))
        n = counts.pop()
        ds = cls([Entry(f"{file}[{i}]", None if labels is None else _label(labels[i])) for i in range(n)],
                 spec, model, role)
        ds.file, ds.arrays = file, {k: arrays[k] for k in names}
        ds.annotated = labels is not None
        return ds

    def _load(self, index):
        try:
            return {k: np.ascontiguousarray(a.rows(index, index + 1), dtype=_dtype(self.model, k))
                    for k, a in self.arrays.items()}
        except NpzError as exc:
            raise CalibrationError(Problem(f"cannot read the .npz: {exc}", path=str(self.file),
                                           rule="dataset-format")) from None


class GeneratedDataset(Dataset):
    """Random tensors shaped like the inputs: honest for speed, meaningless for calibration."""
    kind, generated = "generated", True

    @classmethod
    def scan(cls, spec, model, role):
        table = getattr(spec, role)
        return cls([Entry(f"generated[{i}]", None) for i in range(table.count)], spec, model, role)

    def _load(self, index):
        rng = np.random.default_rng(self.table.seed + index)
        return {t.name: rng.standard_normal([max(d, 1) for d in t.shape]).astype(_dtype(self.model, t.name))
                for t in self.model.inputs}


def _label(value) -> int | str:
    """An npz label as written: integers are classes, text (a unicode or bytes array) stays text."""
    if isinstance(value, (np.str_, str)):
        return str(value)
    if isinstance(value, (np.bytes_, bytes)):
        return bytes(value).decode("utf-8", "replace")
    return int(value)


def _dtype(model: ModelInfo, name: str):
    et = next((t.element_type for t in model.inputs if t.name == name), "f32")
    return {"f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8, "boolean": np.bool_}.get(et, np.float32)


SCAN_LIMIT = 500_000  # entries looked at below one dataset folder: `path = "/"` must not walk a whole disk


class TooManyFiles(ValueError):
    pass


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (and below it, without entering hidden folders or following links)."""
    found, seen = [], 0
    for here, dirs, files in os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]:
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        seen += len(files) + len(dirs)
        if seen > SCAN_LIMIT:
            raise TooManyFiles(f"more than {SCAN_LIMIT:,} files and folders below {folder}")
        found += [Path(here) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(f for f in found if f.is_file())


def _voc_images(root: Path, xml: Path, spec: Spec, role: str) -> list[Path]:
    """A voc dataset's images: those of the folder, or with `split` those its VOCdevkit year folder's
    ImageSets/Main/<split>.txt lists, from JPEGImages/."""
    split = getattr(spec, role).split
    if split is None:
        return _images(root)
    main, images = root / "ImageSets" / "Main", root / "JPEGImages"
    listing = main / f"{split}.txt"
    if not listing.is_file():
        present = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
        raise CalibrationError(spec.problem(
            f"split {split!r} not found: no {listing}" + (f" (splits there: {', '.join(present[:8])})" if present
                                                          else ""), role, "split", rule="dataset-missing",
            fix="name one of ImageSets/Main's lists, without .txt" if present else
                "point path at a VOCdevkit year folder (Annotations/, JPEGImages/, ImageSets/Main/)"))
    if not images.is_dir():
        raise CalibrationError(spec.problem(f"no JPEGImages/ folder in {root}", role, "path", rule="dataset-missing",
                                            fix="point path at a VOCdevkit year folder"))
    return voc_split(listing, images, xml)


def open_dataset(spec: Spec, model: ModelInfo, role: str = "dataset") -> Dataset:
    """One of the spec's dataset tables (dataset, validation, evaluation), scanned but not decoded;
    refuses missing paths and empty datasets."""
    ds: DatasetSpec = getattr(spec, role)
    if ds.kind == "generated":
        return GeneratedDataset.scan(spec, model, role)
    if not ds.path:
        raise CalibrationError(spec.problem(f"kind {ds.kind!r} needs a path", role, "path",
                                            rule="dataset-missing"))
    path = spec.resolve(ds.path)
    wants_dir = ds.kind in ("imagenet", "images", "segmentation", "coco", "voc")
    if not (path.is_dir() if wants_dir else path.is_file()):
        what = "folder" if wants_dir else "file"
        raise CalibrationError(spec.problem(f"dataset {what} not found: {path}", role, "path",
                                            rule="dataset-missing", fix=f"point path at an existing {what}"))
    scanner = {"imagenet": ClassFolderDataset, "image_list": ImageListDataset,
               "images": ImageFolderDataset, "npz": NpzDataset, "segmentation": SegmentationDataset,
               "coco": DetectionDataset, "voc": DetectionDataset}[ds.kind]
    try:
        dataset = scanner.scan(path, spec, model, role)
    except TooManyFiles as exc:
        raise CalibrationError(spec.problem(f"dataset folder too large to scan: {exc}", role, "path",
                                            rule="dataset-too-large",
                                            fix="point path at the folder that holds the images")) from None
    except OSError as exc:  # unreadable folder, a NUL in a name, a symlink loop
        raise CalibrationError(spec.problem(f"cannot read the dataset: {exc}", role, "path",
                                            rule="dataset-missing")) from None
    if not len(dataset):
        raise CalibrationError(spec.problem(f"dataset has no samples: {path}", role, "path",
                                            rule="dataset-empty", fix="add images or fix the path"))
    return dataset
