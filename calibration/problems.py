"""One vocabulary for everything that can be wrong with a model, a spec or a dataset.

Every front end (CLI, language server, pytest, drop folder) shows the same `Problem`,
so each carries the file, the 1-based line and the key it concerns.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    message: str
    path: str | None = None
    line: int | None = None
    key: str | None = None
    rule: str = "spec"
    severity: str = "error"  # error | warning | info
    fix: str | None = None

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line:
            where += f":{self.line}"
        head = f"{where}: {self.key}: " if self.key else f"{where}: "
        tail = f" (fix: {self.fix})" if self.fix else ""
        return f"{head}{self.message}{tail}"

    def to_dict(self) -> dict:
        return asdict(self)


class CalibrationError(Exception):
    """Raised with one or more problems; nothing has been written when it is raised."""

    def __init__(self, problems: Problem | list[Problem] | str):
        if isinstance(problems, str):
            problems = Problem(problems)
        self.problems: list[Problem] = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Cancelled(Exception):
    """The caller asked to stop; partial outputs were removed."""
