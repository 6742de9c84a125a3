"""Everything the tests and benchmarks need lives in the repository.

Two guards. A static one reads every tracked Python file and refuses a path that climbs out
of the repository root (`Path(__file__).parents[k]` past the root, `ROOT.parent`, a `..` in a
path literal). A live one does what someone who clones the project does: `git clone` of HEAD
into an empty folder with nothing beside it, then test collection, one fast test and one
benchmark there, with an audit hook listing every file opened outside the clone.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_files(*patterns: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *patterns], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


# --------------------------------------------------------------------------------------------
# Static: no path expression climbs above the repository root
# --------------------------------------------------------------------------------------------


@dataclass
class Escape:
    file: str
    line: int
    what: str


class _PathLevels(ast.NodeVisitor):
    """Follows `__file__`-based path expressions and how far up they climb.

    A level is the number of directories above the file: `Path(__file__).parent` is 1, its
    `.parents[k]` is k + 1; the repository root is `depth + 1` for a file `depth` folders
    deep. Names bound at module level to such expressions (ROOT = ...) are followed too.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.rel = file.relative_to(ROOT).as_posix()
        self.root_level = len(file.relative_to(ROOT).parts)  # the file itself is level 0
        self.names: dict[str, int] = {}
        self.escapes: list[Escape] = []

    def level(self, node: ast.expr) -> int | None:
        """Levels above the file for a path expression, or None if it is not one."""
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return 0
            return self.names.get(node.id)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("Path", "PurePath") and node.args:
                return self.level(node.args[0])
            if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute",
                                                                "expanduser"):
                return self.level(func.value)
            if (isinstance(func, ast.Attribute) and func.attr in ("dirname", "abspath",
                                                                  "realpath")
                    and node.args):
                inner = self.level(node.args[0])
                if inner is None:
                    return None
                return inner + 1 if func.attr == "dirname" else inner
            return None
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self.level(node.value)
            return None if inner is None else inner + 1
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parents" and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, int):
            inner = self.level(node.value.value)
            return None if inner is None else inner + node.slice.value + 1
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inner = self.level(node.left)
            if inner is None:
                return None
            if isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
                parts = [p for p in node.right.value.split("/") if p not in ("", ".")]
                for part in parts:
                    inner = inner + 1 if part == ".." else inner - 1
                    self._check(node, inner)
                return inner
            return inner - 1  # one unknown component further down
        return None

    def _check(self, node: ast.AST, level: int) -> None:
        if level > self.root_level:
            self.escapes.append(Escape(self.rel, getattr(node, "lineno", 0),
                                       f"{ast.unparse(node)} climbs {level - self.root_level}"
                                       " level(s) above the repository root"))

    def visit_Assign(self, node: ast.Assign) -> None:
        level = self.level(node.value)
        if level is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.names[target.id] = level
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr):
            level = self.level(node)
            if level is not None:
                self._check(node, level)
        if isinstance(node, ast.Call) and _opens_a_path(node.func):
            for arg in node.args:
                self._check_literal(arg)
        super().generic_visit(node)

    def _check_literal(self, node: ast.expr) -> None:
        """`open("../x")`, `Path("../x")`: relative to the working directory, which is the
        repository root when the tests and benchmarks run, so `..` leaves it."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and ".." in node.value.replace("\\", "/").split("/"):
            self.escapes.append(Escape(self.rel, node.lineno,
                                       f"path literal {node.value!r} climbs with '..'"))


def _opens_a_path(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("open", "Path", "PurePath", "join", "chdir", "listdir", "scandir",
                    "read_text", "read_bytes")


def find_escapes(file: Path) -> list[Escape]:
    visitor = _PathLevels(file)
    visitor.visit(ast.parse(file.read_text(), filename=str(file)))
    return visitor.escapes


def test_the_static_check_sees_paths_that_leave_the_repository(tmp_path: Path) -> None:
    """The scanner itself: each way of climbing out is caught, staying inside is not."""
    probe = Path(__file__)
    samples = {
        'A = Path(__file__).resolve().parents[2].parent / "shared"': 1,
        'A = Path(__file__).resolve().parents[3] / "shared" / "fixtures"': 1,
        "ROOT = Path(__file__).resolve().parent.parent.parent\nB = ROOT.parent": 1,
        'A = Path(__file__).resolve().parents[2] / "tests" / "fixtures"': 0,
        'A = Path(__file__).parent / "../../../x"': 1,
        'A = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))': 1,
        'open("../shared/fixtures/sops/x.json")': 1,
        'A = "tests/fixtures/sops"': 0,
    }
    for source, expected in samples.items():
        visitor = _PathLevels(probe)
        visitor.visit(ast.parse(source))
        assert len(visitor.escapes) >= expected, source
        if not expected:
            assert visitor.escapes == [], source


def test_no_tracked_python_file_reads_outside_the_repository() -> None:
    escapes = [e for file in tracked_files("*.py") for e in find_escapes(file)]
    assert escapes == [], "\n".join(f"{e.file}:{e.line}: {e.what}" for e in escapes)


def test_no_script_climbs_out_of_the_repository() -> None:
    """Shell scripts and the Makefile may go to the repository root, never above it."""
    problems = []
    for file in tracked_files("*.sh", "Makefile", "*.mk"):
        depth = len(file.relative_to(ROOT).parts) - 1  # folders between the root and it
        for number, line in enumerate(file.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            climbs = code.count("../") + code.count('/.."') + code.count("/..)")
            if code.rstrip().endswith("/.."):
                climbs += 1
            if climbs > depth:
                problems.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Live: a lone clone collects, runs a fast test and a benchmark
# --------------------------------------------------------------------------------------------

# Runs inside the clone: records every file or folder opened outside it, then runs pytest.
_AUDITED = r"""
import json, os, sys
clone = os.path.realpath(os.getcwd())
opened = set()
def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        path = args[0]
        if isinstance(path, int):
            return
        path = os.fsdecode(os.fspath(path))
        opened.add(os.path.realpath(os.path.join(clone, path)))
sys.addaudithook(hook)
import runpy
try:
    sys.argv = sys.argv[2:]
    if sys.argv[0] == "-m":
        sys.argv = sys.argv[1:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    with open(os.environ["OPENED_LOG_FILE"], "w") as out:
        json.dump(sorted(opened), out)
sys.exit(code)
"""


def _inside(path: str, folder: Path) -> bool:
    return path == str(folder) or path.startswith(str(folder) + os.sep)


@pytest.fixture(scope="module")
def lone_clone() -> Path:
    """HEAD cloned into an empty temporary folder: the clone is all there is beside it."""
    parent = Path(tempfile.mkdtemp(prefix="aef-lone-")).resolve()
    clone = parent / "aef"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
                   check=True, capture_output=True)
    assert [p.name for p in parent.iterdir()] == ["aef"]
    yield clone
    subprocess.run(["rm", "-rf", str(parent)], check=False)


def run_in_clone(clone: Path, *argv: str, timeout: float = 600) -> tuple[str, list[str]]:
    """Run `python argv...` in the clone; returns its output and every path it opened."""
    handle, name = tempfile.mkstemp(prefix="aef-opened-", suffix=".json")
    os.close(handle)
    log = Path(name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["OPENED_LOG_FILE"] = str(log)
    result = subprocess.run([sys.executable, "-c", _AUDITED, "--", *argv], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    opened = json.loads(log.read_text())
    log.unlink()
    return output, opened


# What a Python process may read besides its project: the interpreter, the system, temp files.
SYSTEM = [Path(p) for p in ("/dev", "/proc", "/sys", "/etc", "/usr", "/lib", "/lib64", "/run")]


def foreign(opened: list[str], clone: Path) -> list[str]:
    """Paths read that are neither the clone's, the interpreter's, the system's nor temporary
    files; what lies beside the clone (its empty parent) counts as foreign."""
    allowed = [clone, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), *SYSTEM,
               Path.home() / ".cache"]
    temp = Path(tempfile.gettempdir()).resolve()
    return [p for p in opened if not any(_inside(p, folder) for folder in allowed)
            and not (_inside(p, temp) and not _inside(p, clone.parent))]


def test_a_lone_clone_collects_every_test(lone_clone: Path) -> None:
    output, opened = run_in_clone(lone_clone, "-m", "pytest", "--collect-only", "-q",
                                  "-p", "no:cacheprovider")
    assert " tests collected" in output or " test collected" in output, output[-3000:]
    assert "error" not in output.splitlines()[-1].lower(), output[-3000:]
    assert any(_inside(p, lone_clone / "tests") for p in opened)  # the hook saw the clone
    assert foreign(opened, lone_clone) == []


def test_a_lone_clone_runs_a_fixture_test_and_a_benchmark(lone_clone: Path) -> None:
    output, opened = run_in_clone(
        lone_clone, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/unit/test_transform_models.py::"
        "test_source_models_read_the_fixtures_and_keep_unknown_fields")
    assert "1 passed" in output, output[-3000:]
    fixture = lone_clone / "tests" / "fixtures" / "sops" / "investor-crm-sop-v0.8.json"
    assert str(fixture) in opened
    assert foreign(opened, lone_clone) == []

    output, opened = run_in_clone(lone_clone, "bench/bench_transform.py", "--samples", "1",
                                  "--batch", "1")
    assert "ratio transform / baseline" in output, output
    assert str(fixture) in opened
    assert foreign(opened, lone_clone) == []
