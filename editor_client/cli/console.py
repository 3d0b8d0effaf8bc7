"""The command line's two consoles (results on stdout, progress and problems on stderr) and the
way problems are printed: shared by every command."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from int8wb.calibration import CalibrationError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_problems(exc: CalibrationError) -> None:
    """Each problem on its line; its text is escaped (a table name like `[dataset]` is not markup)."""
    for p in exc.problems:
        text = escape(str(p))
        err.print(f"[bold red]error[/]: {text}" if p.severity == "error" else f"{p.severity}: {text}", markup=True,
                  soft_wrap=True)


def progress_columns() -> list:
    """The progress bar of a long command (calibrate, compare): phase, bar, percent, time."""
    return [TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn()]


def print_table(title: str, columns: tuple[str, ...], rows, **column_options) -> None:
    table = Table(title=escape(title))
    for col in columns:
        table.add_column(col, **column_options)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # figures and names, never markup
    out.print(table)
