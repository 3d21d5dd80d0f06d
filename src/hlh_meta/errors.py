"""Exceptions raised by hlh-meta: one module so callers can catch them in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is and what is wrong."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class InputError(ValueError):
    """Bad input given to the Python API (an argument, a column, a prior): the caller's
    mistake, reported in one line. :class:`DataError` and :class:`SpecError` are kinds of it."""


class DataError(InputError):
    """Bad input data. Collects every problem found, each with file, row and column.

    Row numbers count lines of the file as a spreadsheet shows them: the header is
    row 1, the first data row is row 2.
    """

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("<input>", None, None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the input:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


class SpecError(InputError):
    """A bad analysis specification (TOML): names the file and the key."""

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key = file, key
        super().__init__(f"{file}: [{key}] {message}")
