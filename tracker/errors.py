"""The errors a user can cause, as one readable hierarchy.

The CLI maps them to exit code 2 and one sentence on stderr; the web app maps them
to HTTP statuses. Each carries enough to name the bad field and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tracker import labels


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One bad value: where it is and why it is refused.

    `source` is a file name (CSV import) or a form/API path; `line` is the 1-based
    line in that file (the header is line 1), or None when there is no file.
    """

    source: str
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        # file, line and column as the CSV spells them: the user finds the cell by them
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.field}: {self.reason}"

    def sentence(self, values: Mapping[str, str] | None = None) -> str:
        """The problem as a person says it, for a page: "Finding 2 (right hip): HO is
        required" (`values`, the submitted form, name the row by its site and side)."""
        said = str(labels.field_error(self.field, self.reason, values=values))
        if self.line is not None:
            return f"{self.source} line {self.line}: {said}"
        return said


class ValidationFailed(TrackerError):
    """Input was refused; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.source, p.line or 0, p.field, p.reason))
        count = len(self.problems)
        first = str(self.problems[0]) if self.problems else "no details"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{labels.count(count, 'problem')} found: {first}{more}")

    def sentences(self, values: Mapping[str, str] | None = None) -> list[str]:
        """Every problem in words (see `Problem.sentence`)."""
        return [problem.sentence(values) for problem in self.problems]


class NotFound(TrackerError):
    """A record the user named does not exist."""


class Conflict(TrackerError):
    """The change clashes with what is stored (for example someone saved first)."""


class StaleRecord(Conflict):
    """Someone changed the record since it was opened (its version moved on)."""

    def __init__(self, changed: str) -> None:
        self.changed = changed  # who changed which record, and when
        super().__init__(f"{changed}; reload and re-apply your change.")


class ProtocolError(TrackerError):
    """The clinic protocol file is invalid; the message names the key."""


class DatabaseNotReady(TrackerError):
    """The database schema is missing or behind the code: run `ho-tracker db upgrade`."""
