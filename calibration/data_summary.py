"""What a dataset table holds: how many samples, of which sizes and channel counts.

`kind = "images"` once swept a sub-folder of 300 masks into 100 pages unnoticed; a summary per table,
and a warning when channel counts mix (grayscale masks among colour photos), make that visible.
Image headers only: nothing is decoded.
"""
from __future__ import annotations

from collections import Counter

from PIL import Image

from .problems import Problem
from .spec import Spec

HEADER_LIMIT = 20_000  # headers read per table: a summary must stay quick on a huge folder


def image_shapes(sources: list[str]) -> tuple[Counter, Counter, int]:
    """(Counter of (width, height), Counter of channel counts, headers read) of image files."""
    sizes, channels, read = Counter(), Counter(), 0
    for path in sources[:HEADER_LIMIT]:
        try:
            with Image.open(path) as img:
                sizes[img.size] += 1
                channels[len(img.getbands())] += 1
                read += 1
        except (OSError, ValueError, SyntaxError):
            continue  # the dataset itself reports images it cannot decode
    return sizes, channels, read


def summary_problems(spec: Spec, dataset, summaries: bool = True) -> list[Problem]:
    """An info finding with the table's sample count, sizes and channels (when `summaries`), and a
    warning when its images mix channel counts."""
    role, n = dataset.role, len(dataset)
    used = len(dataset.subset_indices())
    count = f"{n} samples" + (f" (subset: {used})" if used < n else "")
    if dataset.kind in ("npz", "generated"):
        shapes = {name: list(a.shape) for name, a in dataset.load(0).items()}
        info = f"[{role}] {count} of {', '.join(f'{k} {v}' for k, v in shapes.items())}"
        return [spec.problem(info, role, "path", rule="dataset-summary", severity="info")] if summaries else []
    sizes, channels, read = image_shapes([e.source for e in dataset.entries])
    out = []
    if len(channels) > 1:
        mix = ", ".join(f"{c} channel(s): {k}" for c, k in sorted(channels.items()))
        out.append(spec.problem(f"[{role}] images mix channel counts ({mix}); all are converted to the spec's "
                                "color, so masks or grayscale scans would pass as samples", role, "path",
                                rule="mixed-channels", severity="warning",
                                fix="keep one kind of image in the dataset folder (or set recursive = false)"))
    if summaries:
        common = ", ".join(f"{w}×{h} ({k})" for (w, h), k in sizes.most_common(5))
        more = f" and {len(sizes) - 5} other sizes" if len(sizes) > 5 else ""
        scope = f" (headers of the first {read})" if read < n else ""
        out.append(spec.problem(f"[{role}] {count}{scope}; sizes (w×h): {common}{more}; channels: "
                                f"{', '.join(str(c) for c in sorted(channels))}", role, "path",
                                rule="dataset-summary", severity="info"))
    return out
