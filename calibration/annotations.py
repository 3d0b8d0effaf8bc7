"""Object detection annotations: a COCO instances JSON, or one Pascal VOC XML file per image (a folder of
images and one of XML files, or a VOCdevkit year folder whose ImageSets/Main/<split>.txt lists the images),
read into the boxes of each image. Every error names the file and the key (and the line, where the format
says).

Class indices follow `classes` when the spec gives it (the model's order), else COCO's categories by id
(COCO's 80 classes in the order detectors are trained on) or VOC's names sorted (VOC's 20 classes in
their usual order). Crowd (COCO) and difficult (VOC) objects neither count as a hit nor as a miss.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .guarded import TEXT_LIMIT, XML_LIMIT, read_bytes
from .problems import CalibrationError, Problem


@dataclass(frozen=True, eq=False)
class Boxes:
    """One image's annotation, the label of its dataset entry."""
    image_id: int
    size: tuple[int, int]       # original (height, width)
    boxes: np.ndarray           # [N, 4] x1, y1, x2, y2 in original pixels
    classes: np.ndarray         # [N] class index, in the model's order
    ignore: np.ndarray          # [N] crowd or difficult
    input_size: tuple[int, int] | None = None             # the model input's (height, width)
    placement: tuple[float, float, int, int] = (1.0, 1.0, 0, 0)  # see ImagePreprocessor.placement
    # per object, COCO's segmentation polygons ([x1, y1, x2, y2, ...] each, original pixels) or None
    # (a bbox alone, or a crowd's RLE): rotated boxes are scored against them; None: no object has any
    polygons: tuple | None = None

    def __repr__(self) -> str:
        return f"Boxes(image_id={self.image_id}, size={self.size}, objects={len(self.boxes)})"


def _fail(path: Path, key: str | None, message: str, line: int | None = None, fix: str | None = None):
    raise CalibrationError(Problem(message, path=str(path), line=line, key=key, rule="dataset-format", fix=fix))


def _get(path: Path, obj, key: str, where: str, kind, optional=False, default=None):
    """obj[key] of the type `kind`, or a located error."""
    if not isinstance(obj, dict):
        _fail(path, where, f"expected an object, got {type(obj).__name__}")
    name = f"{where}.{key}" if where else key
    if key not in obj:
        if optional:
            return default
        _fail(path, name, "required key is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        _fail(path, name, f"expected {getattr(kind, '__name__', 'a number')}, got {value!r:.60}")
    return value


def _class_index(path: Path, names: list[str], classes: list[str] | None, key: str) -> dict[str, int]:
    order = classes or names
    missing = [n for n in names if n not in order]
    if missing:
        _fail(path, key, f"class {missing[0]!r} is not in [dataset] classes",
              fix="add it to classes (in the model's order)")
    return {n: i for i, n in enumerate(order)}


def read_coco(json_path: Path, images: Path, classes: list[str] | None) -> tuple[list[tuple[str, Boxes]], list[str]]:
    """(image file, boxes) of every image the JSON lists, and the class names in index order."""
    try:
        data = json.loads(read_bytes(json_path, XML_LIMIT))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(json_path, "annotations", f"cannot read the annotations: {exc}")
    except ValueError as exc:
        _fail(json_path, "annotations", f"invalid JSON: {exc}", line=getattr(exc, "lineno", None))
    if not isinstance(data, dict):
        _fail(json_path, "annotations", "a COCO instances file is a JSON object with images, annotations, "
                                        "categories")
    listed = {k: _get(json_path, data, k, "", list, optional=k == "annotations", default=[])
              for k in ("images", "annotations", "categories")}
    by_id = {_get(json_path, cat, "id", f"categories[{i}]", int): _get(json_path, cat, "name", f"categories[{i}]", str)
             for i, cat in enumerate(listed["categories"])}
    names = [by_id[k] for k in sorted(by_id)]
    index = _class_index(json_path, names, classes, "categories")
    found: dict[int, list] = {}
    for i, ann in enumerate(listed["annotations"]):
        where = f"annotations[{i}]"
        image_id, cat = _get(json_path, ann, "image_id", where, int), _get(json_path, ann, "category_id", where, int)
        box = _get(json_path, ann, "bbox", where, list)
        if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box) \
                or box[2] < 0 or box[3] < 0:
            _fail(json_path, f"{where}.bbox", f"expected [x, y, width, height] (width, height >= 0), got {box!r:.80}")
        if cat not in by_id:
            _fail(json_path, f"{where}.category_id", f"category {cat} is not in categories")
        crowd = _get(json_path, ann, "iscrowd", where, int, optional=True, default=0)
        found.setdefault(image_id, []).append((box[0], box[1], box[0] + box[2], box[1] + box[3],
                                               index[by_id[cat]], bool(crowd), _polygons(json_path, ann, where)))
    out, ids = [], set()
    for i, img in enumerate(listed["images"]):
        where = f"images[{i}]"
        image_id, name = _get(json_path, img, "id", where, int), _get(json_path, img, "file_name", where, str)
        height, width = _get(json_path, img, "height", where, int), _get(json_path, img, "width", where, int)
        if height < 1 or width < 1:
            _fail(json_path, f"{where}.height", f"image size {width}x{height} is empty")
        file = images / name
        if not file.is_file():
            _fail(json_path, f"{where}.file_name", f"image not found: {file}",
                  fix="point [dataset] path at the folder that holds the JSON's file_name entries")
        ids.add(image_id)
        out.append((str(file), _boxes(image_id, (height, width), found.get(image_id, []))))
    stray = sorted(set(found) - ids)
    if stray:
        _fail(json_path, "annotations", f"annotations of image_id {stray[0]}, which images does not list")
    return out, list(index)


def _polygons(path: Path, ann: dict, where: str) -> tuple | None:
    """An annotation's segmentation polygons; None without them (an RLE, a crowd's, is not a polygon)."""
    shapes = ann.get("segmentation")
    if shapes is None or isinstance(shapes, dict) or shapes == []:
        return None
    if not isinstance(shapes, list) or not all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p) for p in shapes):
        _fail(path, f"{where}.segmentation", f"expected polygons [[x1, y1, x2, y2, x3, y3, ...], ...] (3 points "
                                             f"or more) or an RLE object, got {shapes!r:.80}")
    return tuple(tuple(float(v) for v in p) for p in shapes)


def _boxes(image_id: int, size: tuple[int, int], rows: list) -> Boxes:
    table = np.asarray([r[:4] for r in rows], np.float64).reshape(-1, 4)
    polygons = tuple(r[6] if len(r) > 6 else None for r in rows)
    return Boxes(image_id, size, table, np.asarray([r[4] for r in rows], np.int64),
                 np.asarray([r[5] for r in rows], bool), polygons=polygons if any(polygons) else None)


def read_voc(folder: Path, images: list[Path], classes: list[str] | None) -> tuple[list[tuple[str, Boxes]], list[str]]:
    """(image file, boxes) of every image, from the XML file of the same stem in `folder`."""
    parsed, missing = [], []
    for image in images:
        xml = folder / f"{image.stem}.xml"
        (parsed.append((image, xml, _voc_objects(xml))) if xml.is_file() else missing.append(image.name))
    if missing:
        _fail(folder, "annotations", f"{len(missing)} image(s) without an XML file of the same name, e.g. "
                                     f"{missing[0]}", fix="give every image its VOC XML (same stem, .xml)")
    index = _class_index(folder, sorted({o[0] for _, _, (_, objs) in parsed for o in objs}), classes, "annotations")
    out = []
    for image_id, (image, xml, (size, objs)) in enumerate(parsed):
        if size is None:  # VOC files may leave <size> out or at 0: the image's header says
            with Image.open(image) as im:
                size = (im.size[1], im.size[0])
        out.append((str(image), _boxes(image_id, size, [(*o[1:5], index[o[0]], o[5]) for o in objs])))
    return out, list(index)


VOC_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # JPEGImages/ holds .jpg; other trees reuse the layout


def voc_split(listing: Path, images: Path, xml: Path) -> list[Path]:
    """The images a VOCdevkit ImageSets/Main/<split>.txt lists (one image id a line), in its order; an
    id without its image in `images` or its XML file in `xml` is an error at its line."""
    try:
        text = read_bytes(listing, TEXT_LIMIT).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(listing, None, f"cannot read the split list: {exc}")
    found, seen = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:  # e.g. a class's list (`id 1`/`id -1`) instead of the split's
            _fail(listing, None, f"expected one image id, got {line.strip()!r:.60}", line=number,
                  fix="set split to a list of ids alone (ImageSets/Main/<split>.txt, not <class>_<split>.txt)")
        name = fields[0]
        if name in seen:
            _fail(listing, None, f"image id {name} is listed twice (first at line {seen[name]})", line=number)
        seen[name] = number
        image = next((images / (name + s) for s in VOC_IMAGE_SUFFIXES if (images / (name + s)).is_file()), None)
        if image is None:
            _fail(listing, None, f"image {name} not found: no {name}.jpg in {images}", line=number,
                  fix="list only the images the VOCdevkit folder holds")
        if not (xml / f"{name}.xml").is_file():
            _fail(listing, None, f"annotation {name}.xml not found in {xml}", line=number,
                  fix="list only the images that have their VOC XML file")
        found.append(image)
    return found


def _voc_objects(xml: Path) -> tuple[tuple[int, int] | None, list[tuple]]:
    """(size or None, [(name, x1, y1, x2, y2, difficult)]) of one VOC file."""
    try:
        root = ET.fromstring(read_bytes(xml, 16 << 20))
    except OSError as exc:
        _fail(xml, "annotation", f"cannot read the annotation: {exc}")
    except ET.ParseError as exc:
        _fail(xml, "annotation", f"invalid XML: {exc}", line=exc.position[0])
    if root.tag != "annotation":
        _fail(xml, root.tag, "a VOC file's root element is <annotation>")

    def number(node, key: str, kind=float):
        text = node.findtext(key)
        try:
            return kind(float(text))
        except (TypeError, ValueError):
            _fail(xml, f"{where}/{key}", "required element is missing" if text is None else
                  f"expected a number, got {text.strip()!r:.40}")

    where = "annotation/size"
    size = None
    if root.find("size") is not None:
        height, width = number(root.find("size"), "height", int), number(root.find("size"), "width", int)
        size = (height, width) if height > 0 and width > 0 else None
    objs = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k}]"
        name = (obj.findtext("name") or "").strip()
        if not name:
            _fail(xml, f"{where}/name", "required element is missing")
        if obj.find("bndbox") is None:
            _fail(xml, f"{where}/bndbox", "required element is missing")
        difficult = obj.findtext("difficult")
        box = obj.find("bndbox")
        where = f"object[{k}]/bndbox"
        corners = [number(box, key) for key in ("xmin", "ymin", "xmax", "ymax")]
        if corners[2] < corners[0] or corners[3] < corners[1]:
            _fail(xml, where, f"xmax/ymax below xmin/ymin: {corners}")
        objs.append((name, *corners, (difficult or "0").strip() not in ("0", "")))
    return size, objs
