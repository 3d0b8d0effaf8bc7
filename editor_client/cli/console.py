"""The command line's two consoles (results on stdout, progress and problems on stderr) and the
way problems are printed: shared by every command."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from int8wb.calibration import CalibrationError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_problems(exc: CalibrationError) -> None:
    for p in exc.problems:
        err.print(f"[bold red]error[/]: {p}" if p.severity == "error" else f"{p.severity}: {p}", markup=True,
                  soft_wrap=True)


def progress_columns() -> list:
    """The progress bar of a long command (calibrate, compare): phase, bar, percent, time."""
    return [TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn()]


def print_table(title: str, columns: tuple[str, ...], rows, **column_options) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, **column_options)
    for row in rows:
        table.add_row(*row)
    out.print(table)
