"""A small progress interface so services report long work without knowing the UI."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int) -> None:
        """Begin a stage of `total` units (rows, patients)."""

    def advance(self, done: int) -> None:
        """`done` more units of the current stage are finished."""


class NoProgress:
    """Progress that shows nothing (tests, scripts, services without a terminal)."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass
