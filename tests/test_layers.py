"""The house rules, read from the source: which room may import what.

Each rule is a (room, forbidden import prefixes) pair checked over every module of the room, so
adding e.g. `import pygls` to any file under calibration/ fails here with the file and line.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("calibration", "daemon", "editor_client")
MAX_LINES = 400

# room (a folder, or one module as a path) -> imports it must never make
FORBIDDEN = {
    "calibration": ("int8wb.daemon", "int8wb.editor_client", "pygls", "lsprotocol", "pytest", "rich"),
    "daemon": ("int8wb.editor_client", "openvino", "nncf"),
    "editor_client/cli": ("int8wb.daemon", "int8wb.editor_client.pytest_plugin", "int8wb.editor_client.gate_items",
                          "int8wb.editor_client.gate_state", "pygls", "lsprotocol"),
    **{f"editor_client/{plugin}.py": ("int8wb.daemon", "int8wb.editor_client.cli", "pygls", "lsprotocol")
       for plugin in ("pytest_plugin", "gate_items", "gate_state")},
}
# (module, import) -> why this one crossing is allowed
ALLOWED = {("calibration/methods/nncf.py", "rich"): "NNCF draws its progress bars on rich's global console; "
                                               "the engine only silences them"}


def modules(room: str) -> list[Path]:
    path = ROOT / room
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("room", ROOMS)
def test_no_module_is_over_the_size_of_one_concept(room):
    long = {str(p.relative_to(ROOT)): n for p in modules(room) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names) for every import in `path`, relative ones resolved."""
    package = ["int8wb", *path.relative_to(ROOT).parent.parts]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((node.lineno, module, [a.name for a in node.names]))
    return out


def offences(room: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in modules(room):
        for line, module, _ in imports(path):
            allowed = (str(path.relative_to(ROOT)), module) in ALLOWED
            if not allowed and any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("room", FORBIDDEN)
def test_room_imports_nothing_forbidden(room):
    assert offences(room, FORBIDDEN[room]) == []


def test_the_rule_catches_a_forbidden_import(tmp_path, monkeypatch):
    """The checker itself: a planted `import pygls` in an engine module is reported with its line."""
    room = tmp_path / "calibration"
    room.mkdir()
    (room / "planted.py").write_text("import os\nfrom pygls.lsp.server import LanguageServer\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert offences("calibration", FORBIDDEN["calibration"]) == ["calibration/planted.py:2 imports pygls.lsp.server"]


@pytest.mark.parametrize("room", ROOMS)
def test_our_modules_are_imported_by_their_installed_name(room):
    """`import calibration` would pick up any other package of that name (or a workspace folder)."""
    bad = [f"{p.relative_to(ROOT)}:{line} imports {module}" for p in modules(room)
           for line, module, _ in imports(p) if module.split(".")[0] in ROOMS]
    assert bad == []


@pytest.mark.parametrize("room", ROOMS)
def test_no_private_name_crosses_a_module(room):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name} from {module}" for p in modules(room)
           for line, module, names in imports(p) if module.startswith("int8wb.")
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert bad == []


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"int8wb." + ".".join(init.parent.relative_to(ROOT).parts)
             for room in ROOMS for init in (ROOT / room).rglob("__init__.py")}
    assert found == set(config["packages"])
    assert {f"int8wb.{room}": room for room in ROOMS}.items() <= config["package-dir"].items()


def test_installs_beside_python_daemon(tmp_path):
    """PyPI's python-daemon owns the import name `daemon`; ours is `int8wb.daemon`, and the language
    server starts from a folder that holds a `daemon/` of its own."""
    import subprocess
    import sys

    (tmp_path / "daemon").mkdir()
    (tmp_path / "daemon" / "__init__.py").write_text("raise SystemExit('the workspace daemon/ was imported')\n")
    code = ("import daemon, daemon.pidfile, int8wb.daemon.server as ours; "
            "print(daemon.DaemonContext.__name__, ours.__name__)")
    run = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["DaemonContext", "int8wb.daemon.server"]


def test_the_language_server_stays_small():
    """The daemon answers from plain data: numpy, scipy and OpenVINO load only in its worker and
    checker processes (scipy.stats alone would more than double its memory)."""
    code = ("import sys, int8wb.daemon.server; "
            "print(sorted(m for m in ('numpy', 'scipy', 'openvino', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
