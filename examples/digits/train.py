"""Train the shipped "digits" example model and write its data files.

Produces, next to this file:
  model.xml / model.bin        FP32 OpenVINO IR (v11), input "image" [?,1,32,32],
                               output "logits" [?,10]
  data/test/<label>/<i>.png    the whole test split, one folder per class
  data/calibration/<label>/<i>.png
                               300-image stratified sample of the TRAIN split
                               (calibration must never see test images)
  data/test_list.txt           "test/<label>/<i>.png <label>" per line, the
                               same test set in image-list form

<i> is the sample's index in sklearn.datasets.load_digits(), so every file can
be traced back to the original data.

Run from anywhere:  python examples/digits/train.py
Needs requirements-train.txt (torch is only needed here, not by the product).
The script is deterministic: re-running it rewrites the same images and
should give the same model.
"""

import shutil
import time
from pathlib import Path

import numpy as np
import openvino as ov
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
INPUT_SIZE = 32  # the model input is 32x32; the 8x8 digits are upscaled
N_CALIBRATION = 300
EPOCHS = 35
BATCH = 64
SEED = 0


def to_png_image(img8x8: np.ndarray) -> Image.Image:
    """8x8 digit with values 0..16 -> 8-bit grayscale PIL image (0..255)."""
    return Image.fromarray(np.round(img8x8 * 255 / 16).astype(np.uint8), mode="L")


def preprocess(img: Image.Image) -> np.ndarray:
    """Exactly what the product feeds the model: grayscale, bilinear resize
    to 32x32, float32 in [0, 1], CHW. Training goes through this same
    function so there is no train/serve skew."""
    img = img.convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0)[None, :, :]


def write_class_folders(root: Path, images: np.ndarray, labels: np.ndarray,
                        indices: np.ndarray) -> list[str]:
    """Write <root>/<label>/<index>.png; return paths relative to data/."""
    shutil.rmtree(root, ignore_errors=True)  # clean re-runs: no stale files
    rel_paths = []
    for img, label, idx in zip(images, labels, indices):
        path = root / str(int(label)) / f"{int(idx)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        to_png_image(img).save(path)
        rel_paths.append(path.relative_to(DATA).as_posix())
    return rel_paths


def load_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read class-per-folder PNGs back from disk through `preprocess`."""
    xs, ys = [], []
    for path in sorted(root.glob("*/*.png")):
        with Image.open(path) as img:
            xs.append(preprocess(img))
        ys.append(int(path.parent.name))
    return np.stack(xs), np.array(ys)


class DigitsCNN(nn.Module):
    """Small conv net; BN after every conv so the IR has the usual
    conv(+folded BN)+ReLU pattern that INT8 calibration deals with."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 32, 1),    # 32x32
            *block(32, 64, 2),   # 16x16
            *block(64, 64, 1),
            *block(64, 128, 2),  # 8x8
        )
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by up to +-max_shift pixels (zero fill = background).
    Digits in load_digits are not perfectly centred, so this helps a bit."""
    n = x.shape[0]
    padded = F.pad(x, [max_shift] * 4)
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = offs[i].tolist()
        out[i] = padded[i, :, dy:dy + INPUT_SIZE, dx:dx + INPUT_SIZE]
    return out


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    indices = np.arange(len(digits.target))
    idx_train, idx_test = train_test_split(
        indices, test_size=0.3, stratify=digits.target, random_state=SEED)
    y_train, y_test = digits.target[idx_train], digits.target[idx_test]
    idx_calib, _ = train_test_split(
        idx_train, train_size=N_CALIBRATION, stratify=y_train, random_state=SEED)

    # --- data files -------------------------------------------------------
    DATA.mkdir(exist_ok=True)
    test_paths = write_class_folders(
        DATA / "test", digits.images[idx_test], y_test, idx_test)
    write_class_folders(DATA / "calibration", digits.images[idx_calib],
                        digits.target[idx_calib], idx_calib)
    (DATA / "test_list.txt").write_text(
        "".join(f"{p} {int(l)}\n" for p, l in zip(test_paths, y_test)))

    # --- training -----------------------------------------------------------
    # Same uint8 -> PIL "L" -> preprocess path as the PNGs on disk (PNG is
    # lossless, so this equals reading the files back).
    x_train = torch.from_numpy(
        np.stack([preprocess(to_png_image(im)) for im in digits.images[idx_train]]))
    t_train = torch.from_numpy(y_train).long()

    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = (len(x_train) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, epochs=EPOCHS, steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)

    t0 = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for s in range(0, len(perm), BATCH):
            b = perm[s:s + BATCH]
            xb = random_shift(x_train[b], gen)
            loss = F.cross_entropy(model(xb), t_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(b)
        if (epoch + 1) % 5 == 0 or epoch == 0:
            print(f"epoch {epoch + 1:2d}/{EPOCHS}  loss {total_loss / len(perm):.4f}")
    train_seconds = time.perf_counter() - t0
    print(f"training took {train_seconds:.1f} s")

    # --- evaluate torch model on the PNGs read back from disk ---------------
    x_test, t_test = load_folder(DATA / "test")
    model.eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    print(f"torch test accuracy: {accuracy(torch_logits, t_test):.4f} "
          f"({len(t_test)} images)")

    # --- export to OpenVINO IR ----------------------------------------------
    ov_model = ov.convert_model(model, example_input=torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE))
    # Dynamic batch so the product can calibrate/benchmark with any batch size.
    ov_model.reshape({0: ov.PartialShape([-1, 1, INPUT_SIZE, INPUT_SIZE])})
    ov_model.inputs[0].get_tensor().set_names({"image"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    # compress_to_fp16=False: the example must be a plain FP32 IR, the
    # reference the INT8 result is compared against.
    ov.save_model(ov_model, str(HERE / "model.xml"), compress_to_fp16=False)

    # --- evaluate the saved IR with OpenVINO in f32 -------------------------
    core = ov.Core()
    compiled = core.compile_model(core.read_model(HERE / "model.xml"), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    ov_logits = compiled({"image": x_test})["logits"]
    print(f"OpenVINO IR (CPU, f32) test accuracy: {accuracy(ov_logits, t_test):.4f}")
    print(f"max |torch - IR| logit difference: {np.abs(ov_logits - torch_logits).max():.2e}")
    print(f"wrote {len(test_paths)} test and {len(idx_calib)} calibration images to {DATA}")


if __name__ == "__main__":
    main()
