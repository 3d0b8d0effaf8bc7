"""Hostile inputs for benchmarks/bench_fuzz_daemon.py, made by code (nothing large is committed):
malformed spec texts (`spec_case`) and malformed IR pairs (`pair_case`). Every maker takes a
`random.Random` and returns a case; fuzz_steps.py puts them on disk.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"


@dataclass
class SpecCase:
    kind: str                  # the maker's name
    text: str                  # the spec as an editor buffer holds it (may hold NUL and lone surrogates)
    raw: bytes | None = None   # the bytes on disk when they are not text's UTF-8 (invalid UTF-8, huge files)
    entry: str | None = None   # a special disk entry instead: fifo | dir | loop | link:<target>
    policy: bool = False       # a drop policy (calibration.toml) in a nested folder rather than a spec
    heavy: bool = False        # asks more time or memory than a check is allowed, or reads /proc/self: its
                               # engine answer is not computed here (rewritten before the final comparison)

    def data(self) -> bytes:
        return self.raw if self.raw is not None else self.text.encode("utf-8", "surrogateescape")


@dataclass
class PairCase:
    kind: str
    xml: bytes | str | None    # bytes, or a special entry (fifo | dir | loop | link:<target>), None: absent
    bin: bytes | str | None
    halves: bool = False       # the .bin arrives in two writes (a copy in progress)
    rename: bool = False       # written under a hidden name, then renamed into place


# -- the valid starting points -----------------------------------------------------------------------
def base_spec(rel: str) -> str:
    """The shipped example's spec, its paths made relative to a folder `rel` (e.g. "../../digits")."""
    text = (EXAMPLE / "digits.calibration.toml").read_text()
    text = text.replace('model = "model.xml"', f'model = "{rel}/model.xml"')
    text = text.replace('path = "data/', f'path = "{rel}/data/')
    return text.replace("duration = 3.0", "duration = 0.3").replace("#:schema ../../calibration/schema/"
                                                                    "calibration.schema.json\n", "")


def base_pair() -> tuple[bytes, bytes]:
    return (EXAMPLE / "model.xml").read_bytes(), (EXAMPLE / "model.bin").read_bytes()


# -- specs ---------------------------------------------------------------------------------------------
TOKENS = ["[", "]", '"', "'", "'''", '"""', "=", "{", "}", ",", "#", "\\", "\n", "\x00", "0x", "inf", "nan",
          "-0", "1979-05-27T07:32:00Z", "[dataset]\n", "[[dataset]]\n", "a.b.c = 1\n", "\t", "\r", "\ufeff",
          "model = 1\n", 'kind = "npz"\n', "subset = 0\n", "[preprocessing]\nresize = [0]\n", "é", "\u202e"]
KEYS = ["model", "device", "kind", "path", "subset", "seed", "count", "resize", "layout", "color", "mean",
        "scale", "metric", "k", "method", "preset", "max_drop", "batch", "duration", "dir"]
HOSTILE_PATHS = ["/", "/dev/zero", "/dev/stdin", "/proc/self/fd/0", "/proc/kcore", "/proc/self/mem",
                 "../hostile/fifo", "../hostile/loop", "../hostile/dir.xml", "../hostile/root", "a" * 5000,
                 "../" * 300, "\\u0000", "x\\u0000.xml", "~", "C:\\\\con", "//server/share", "file:///etc/passwd",
                 "", " ", "\\n", "../hostile/fifo.xml", "../hostile/zero.xml", "../hostile/bomb.npz",
                 "../pairs/p00.xml", "../pairs/p01.xml", "../pairs/p02.xml", "../pairs/p03.xml"]
HEAVY_TARGETS = {"/", "../" * 300, "../hostile/root", "../hostile/bomb.npz", "~",
                 "/dev/stdin", "/proc/self/fd/0", "/proc/self/mem"}  # the last: what they are depends on the process


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        i = rng.randrange(len(text) + 1)
        if op == 0 and text:
            text = text[:i] + text[i + rng.randint(1, 40):]
        elif op == 1:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op == 2:
            lines = text.splitlines(keepends=True)
            if lines:
                j = rng.randrange(len(lines))
                lines.insert(rng.randrange(len(lines) + 1), lines[j])
            text = "".join(lines)
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
            text = "".join(lines)
        elif op == 4:  # a value of another type
            key = rng.choice(KEYS)
            value = rng.choice(["true", "-1", "0", "1e400", '"x"', "[]", "{}", "[1, \"a\"]", "1979-05-27", "nan"])
            text = re.sub(rf"(?m)^{key}\s*=.*$", lambda _: f"{key} = {value}", text, count=1)
        else:
            text = text[:i]
    return text


def spec_case(rng: random.Random, base: str) -> SpecCase:
    kind = rng.choices(list(_SPEC_MAKERS), weights=[w for w, _ in _SPEC_MAKERS.values()])[0]
    return _SPEC_MAKERS[kind][1](rng, base)


def light_spec_case(rng: random.Random, base: str) -> SpecCase:
    """A spec case whose engine answer is cheap enough to compute in the benchmark itself."""
    while (case := spec_case(rng, base)).heavy or case.policy:
        pass
    return case


def _nested(rng, base):
    depth = rng.choice([500, 1000, 5000, 20_000, 100_000])
    open_, close = rng.choice([("[", "]"), ("{a=", "}"), ("[{a=", "}]")])
    body = open_ * depth + "1" + (close * depth if rng.random() < 0.5 else "")
    return SpecCase("nested", base + f"x = {body}\n" if rng.random() < 0.5 else f"x = {body}\n" + base)


def _huge_number(rng, base):
    digits = rng.choice([4301, 10_000, 100_000, 1_000_000])
    value = rng.choice(["9" * digits, "-" + "1" * digits, "0x" + "f" * digits, "1e" + "9" * 50, "1." + "5" * digits,
                        "inf", "-nan", str(2 ** 64), str(-2 ** 63 - 1)])
    key = rng.choice(["seed", "count", "subset", "batch", "duration", "k", "max_drop", "streams"])
    text = re.sub(rf"(?m)^{key}\s*=.*$", lambda _: f"{key} = {value}", base, count=1)
    if text == base:
        text = base.replace("[dataset]\n", f"[dataset]\n{key} = {value}\n", 1)
    return SpecCase("huge-number", text)


def _backtracking(rng, base):
    n = rng.choice([2_000, 64_000, 500_000])
    body = rng.choice([f"x = [[{' ' * n}", '"' * n, "'''" + "'" * n, 'x = "' + "\\" * n, "#" * n,
                       "a" + ".a" * (n // 8) + " = 1", "x = [" + "1," * (n // 2), "[" + "a." * (n // 4) + "a]",
                       "x = " + "{a=1," * (n // 8), " " * n + "=" + " " * n, "\t\r" * n])
    # tomllib is quadratic in the parts of a dotted key or table name: 62,500 parts take minutes
    return SpecCase("backtracking", base + "bogus = 1\n" + body + "\n", heavy=n > 2_000 and body[:2] in ("a.", "[a"))


def _unknown_keys(rng, base):
    n = rng.choice([1000, 3000, 10_000])
    near = KEYS + ["modell", "devic", "kindd", "pathh", "subsett"]
    lines = [f"{rng.choice(near)}{i} = {i}" for i in range(n)]
    table = rng.choice(["", "[dataset]\n", "[calibration]\n", "[gate]\n"])
    text = base.replace(table, table + "\n".join(lines) + "\n", 1) if table else "\n".join(lines) + "\n" + base
    return SpecCase("unknown-keys", text)


def _nul(rng, base):
    text = base
    for _ in range(rng.randint(1, 20)):
        i = rng.randrange(len(text) + 1)
        text = text[:i] + "\x00" * rng.randint(1, 3) + text[i:]
    if rng.random() < 0.3:
        text = text.replace('model.xml"', 'model.xml\\u0000"', 1)
    return SpecCase("nul", text)


def _bad_utf8(rng, base):
    data = bytearray(base.encode())
    for _ in range(rng.randint(1, 10)):
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xfe\xff"])
    if rng.random() < 0.2:
        data = base.encode(rng.choice(["utf-16", "utf-32", "utf-16-be"]))
    raw = bytes(data)
    return SpecCase("bad-utf8", raw.decode("utf-8", "surrogateescape"), raw=raw)


def _hostile_path(rng, base):
    target = rng.choice(HOSTILE_PATHS)
    text = base
    key = rng.choice(["model", "dataset", "validation", "output", "custom"])
    if key == "model":
        text = re.sub(r'(?m)^model = .*$', lambda _: f'model = "{target}"', text, count=1)
    elif key == "output":
        text = text.replace('dir = "calibrated"', f'dir = "{target}"')
    elif key == "custom":
        text = text.replace('metric = "top1"', f'metric = "custom"\ncustom = "{target}:fn"')
    else:
        kind = rng.choice(["imagenet", "images", "image_list", "npz"])
        text = re.sub(rf'(?s)(\[{key}\][^\[]*?)kind = "\w+"(.*?)path = "[^"]*"',
                      lambda m: f'{m.group(1)}kind = "{kind}"{m.group(2)}path = "{target}"', text, count=1)
    return SpecCase("hostile-path", text, heavy=target in HEAVY_TARGETS)


def _huge_values(rng, base):
    """Valid TOML whose values ask for a lot of work or memory: a billion generated samples, a huge
    resize, thousands of channels."""
    choice = rng.randrange(4)
    if choice == 0:
        text = re.sub(r'(?s)\[dataset\].*?(?=\n\[)', f'[dataset]\nkind = "generated"\ncount = {10 ** rng.randint(6, 12)}',
                      base, count=1)
    elif choice == 1:
        n = rng.choice([10_000, 100_000])
        text = base.replace("resize = [32, 32]", f"resize = [{n}, {n}]")
    elif choice == 2:
        text = base.replace("mean = [0.0]", "mean = [" + ", ".join(["0.0"] * 100_000) + "]")
    else:
        text = base.replace('subset = "100%"', f"subset = {10 ** 15}")
    return SpecCase("huge-values", text, heavy=True)


def _random_bytes(rng, base):
    raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
    return SpecCase("random-bytes", raw.decode("utf-8", "surrogateescape"), raw=raw)


def _long(rng, base):
    n = rng.choice([1 << 20, 4 << 20])
    body = rng.choice(["# " + "x" * n + "\n", ("# comment\n" * (n // 10)), 'x = "' + "y" * n + '"\n'])
    return SpecCase("long", base + body)


def _too_large(rng, base):
    """Over the 16 MB text limit, on disk or in a buffer."""
    return SpecCase("too-large", base + "# " + "z" * (17 << 20) + "\n")


def _entry(rng, base):
    entry = rng.choice(["fifo", "dir", "loop", "link:/", "link:/dev/zero", "link:/proc/self/fd/0",
                        "link:/proc/kcore", "link:hostile/fifo"])
    return SpecCase("entry", base, entry=entry, heavy="/proc/self" in entry)


def _policy(rng, base):
    text = re.sub(r'(?m)^model = .*\n', "", base).replace('[output]\ndir = "calibrated"\n', "")
    if rng.random() < 0.5:
        text = _mutate(rng, text)
    return SpecCase("policy", text + '\n[drop]\noutbox = "../out"\n', policy=True)


_SPEC_MAKERS = {  # name -> (weight, maker)
    "mutate": (30, lambda rng, base: SpecCase("mutate", _mutate(rng, base))),
    "nested": (7, _nested), "huge-number": (6, _huge_number), "backtracking": (7, _backtracking),
    "unknown-keys": (6, _unknown_keys), "nul": (6, _nul), "bad-utf8": (6, _bad_utf8),
    "hostile-path": (12, _hostile_path), "huge-values": (5, _huge_values), "random-bytes": (4, _random_bytes),
    "long": (2, _long), "too-large": (1, _too_large), "entry": (6, _entry), "policy": (2, _policy),
}


# -- IR pairs ------------------------------------------------------------------------------------------
def _flip(rng, data: bytes, n: int) -> bytes:
    out = bytearray(data)
    for _ in range(n):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def many_constants(xml: bytes, weights: bytes, n: int = 40_000) -> tuple[bytes, bytes]:
    """The digits model with `n` extra INT8 constants (a known slow path of the reader), their bytes
    appended to its weights."""
    const = ('<layer id="{i}" name="extra{i}" type="Const" version="opset1"><data element_type="i8" shape="4" '
             'offset="{o}" size="4"/><output><port id="0" precision="I8"><dim>4</dim></port></output></layer>')
    extra = "\n".join(const.format(i=10_000 + i, o=len(weights) + 4 * i) for i in range(n))
    return xml.replace(b"<layers>", b"<layers>\n" + extra.encode(), 1), weights + bytes(4 * n)


def pair_case(rng: random.Random, xml: bytes, weights: bytes) -> PairCase:
    kind = rng.choices(list(_PAIR_MAKERS), weights=[w for w, _ in _PAIR_MAKERS.values()])[0]
    case = _PAIR_MAKERS[kind][1](rng, xml, weights)
    case.kind = kind
    case.rename = case.rename or (isinstance(case.xml, bytes) and rng.random() < 0.15)
    return case


def _encoding(rng, xml, weights):
    text = xml.decode()
    choice = rng.randrange(5)
    if choice == 0:
        data = text.encode(rng.choice(["utf-16", "utf-32", "utf-16-le"]))
    elif choice == 1:
        data = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="EBCDIC-US"?>').encode()
    elif choice == 2:
        data = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>').encode()
    elif choice == 3:
        data = b"\xef\xbb\xbf" + text.replace("Model0", "Mod\u00e9le\u202e").encode("latin-1", "replace")
    else:
        data = text.encode("cp037")
    return PairCase("", data, weights)


def _entity(rng, xml, weights):
    doctype = rng.choice([
        '<!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">' + "".join(
            f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(9)) + "]>",
        '<!DOCTYPE net [<!ENTITY x SYSTEM "/dev/zero">]>', '<!DOCTYPE net [<!ENTITY x SYSTEM "hostile/fifo">]>',
        '<!DOCTYPE net SYSTEM "http://127.0.0.1:9/x.dtd">'])
    ref = rng.choice(["&j;", "&x;", ""])
    text = xml.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0"?>' + doctype, 1)
    return PairCase("", text.replace('name="Model0"', f'name="M{ref}"', 1).encode(), weights)


def _deep(rng, xml, weights):
    n = rng.choice([10_000, 200_000])
    text = xml.decode().replace("<layers>", "<layers>" + "<x>" * n + "</x>" * n, 1)
    return PairCase("", text.encode(), weights)


def _many_layers(rng, xml, weights):
    n = rng.choice([20_000, 100_000])
    extra = "".join(f'<layer id="{1000 + i}" name="p{i}" type="Parameter" version="opset1"/>' for i in range(n))
    return PairCase("", xml.replace(b"<layers>", b"<layers>" + extra.encode(), 1), weights)


def _huge_attr(rng, xml, weights):
    n = rng.choice([1 << 20, 8 << 20])
    return PairCase("", xml.replace(b'name="Model0"', b'name="' + b"N" * n + b'"', 1), weights)


def _shape_bomb(rng, xml, weights):
    """Valid XML declaring absurd shapes and offsets."""
    text = xml.decode()
    text = text.replace('shape="?,1,32,32"', rng.choice(['shape="1000000,1000000,1000000,1000000"',
                                                          'shape="-5,1,32,32"', 'shape="18446744073709551617"']), 1)
    text = re.sub(r'offset="0" size="1152"', rng.choice(['offset="18446744073709551615" size="1152"',
                                                          'offset="0" size="999999999999999"',
                                                          'offset="-1" size="-1"']), text, count=1)
    return PairCase("", text.encode(), weights)


_PAIR_MAKERS = {  # name -> (weight, maker(rng, xml, bin))
    "valid": (6, lambda rng, x, w: PairCase("", x, w)),
    "truncated-xml": (10, lambda rng, x, w: PairCase("", x[:rng.randrange(len(x))], w)),
    "truncated-bin": (8, lambda rng, x, w: PairCase("", x, w[:rng.randrange(len(w))])),
    "bitflip-xml": (10, lambda rng, x, w: PairCase("", _flip(rng, x, rng.randint(1, 30)), w)),
    "bitflip-bin": (4, lambda rng, x, w: PairCase("", x, _flip(rng, w, rng.randint(1, 30)))),
    "encoding": (8, _encoding),
    "bin-missing": (5, lambda rng, x, w: PairCase("", x, None)),
    "bin-empty": (3, lambda rng, x, w: PairCase("", x, b"")),
    "half-written": (4, lambda rng, x, w: PairCase("", x, w, halves=True)),
    "fifo-xml": (3, lambda rng, x, w: PairCase("", "fifo", w)),
    "fifo-bin": (3, lambda rng, x, w: PairCase("", x, "fifo")),
    "dir-xml": (2, lambda rng, x, w: PairCase("", "dir", None)),
    "loop-xml": (2, lambda rng, x, w: PairCase("", "loop", w)),
    "loop-bin": (2, lambda rng, x, w: PairCase("", x, "loop")),
    "link-special": (3, lambda rng, x, w: PairCase("", rng.choice(["link:/dev/zero", "link:/proc/self/fd/0",
                                                                 "link:/", "link:/proc/kcore"]), w)),
    "link-special-bin": (2, lambda rng, x, w: PairCase("", x, rng.choice(["link:/dev/zero", "link:/proc/kcore"]))),
    "entities": (4, _entity),
    "deep-xml": (2, _deep),
    "many-layers": (2, _many_layers),
    "huge-attr": (2, _huge_attr),
    "shape-bomb": (4, _shape_bomb),
    "40k-constants": (1, lambda rng, x, w: PairCase("", *many_constants(x, w))),
    "random-net": (4, lambda rng, x, w: PairCase("", b"<net" + rng.randbytes(rng.randrange(1, 5000)), w)),
    "not-ir": (3, lambda rng, x, w: PairCase("", b'<?xml version="1.0"?>\n<svg/>\n', None)),
    "deleted": (3, lambda rng, x, w: PairCase("", None, None)),
}
