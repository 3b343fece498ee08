"""The bedside examination of one joint in one save (issue 16, web): the signs and
the range of motion of several movements, stored together in one transaction.

`records.add_exam` and `records.add_range_of_motion` each commit on their own; a
form that records both must store both or neither, so this checks and writes them
with the same primitives (`record_store`) inside one `engine.begin()`. Problems are
named as the form names its inputs: `swelling`, `pain`, `measurements[1].degrees`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.errors import Problem, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.protocol import Protocol
from tracker.services.record_checks import check_rows
from tracker.services.record_store import (
    EXAM,
    ROM,
    Saved,
    flat_path,
    follow_record,
    patient_by_mrn,
    refuse_unknown_in_rows,
    rows_path,
    store_rows,
    stored_together,
)

EXAM_FIELDS = (*vocab.EXAM_SIGNS, "pain", "notes")
ROM_FIELDS = ("movement", "degrees")


def add_examination(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    site: Any,
    side: Any,
    exam: Mapping[str, Any],
    measurements: Sequence[Mapping[str, Any]] = (),
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> tuple[Saved, ...]:
    """Store the examination (`exam`: swelling, warmth, erythema, pain, notes; left out
    when all are blank) and the range-of-motion `measurements` (movement, degrees) of
    one joint on one day: all of them, or none. Nothing given at all is refused."""
    given_today, today = today, today or dt.date.today()
    examined = {k: exam.get(k) for k in EXAM_FIELDS}
    has_exam = any(v not in (None, "") for v in examined.values())
    if not has_exam and not measurements:
        raise ValidationFailed(
            [
                Problem(
                    EXAM.entity,
                    None,
                    vocab.EXAM_SIGNS[0],
                    "nothing to save: record a sign, the pain, a note or a movement's degrees",
                )
            ]
        )
    refuse_unknown_in_rows(ROM, measurements, ROM_FIELDS, "measurements")
    joint = {"date": date, "site": site, "side": side}
    path = rows_path("measurements", ("date", "site", "side"))
    saved: list[Saved] = []
    problems: list[Problem] = []
    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            checked_exam: dict[str, Any] | None = None
            checked_rom: list[dict[str, Any]] = []
            # check both before writing either, so every problem is named at once
            if has_exam:
                try:
                    (checked_exam,) = check_rows(
                        fmt=fmt.EXAMS,
                        rows=[{**examined, **joint, "mrn": owner.mrn}],
                        field_path=flat_path,
                        source=EXAM.entity,
                        birth_date=owner.birth_date,
                        today=today,
                    )
                except ValidationFailed as failed:
                    problems.extend(failed.problems)
            if measurements:
                try:
                    checked_rom = check_rows(
                        fmt=fmt.ROM,
                        rows=[
                            {**{k: row.get(k) for k in ROM_FIELDS}, **joint, "mrn": owner.mrn}
                            for row in measurements
                        ],
                        field_path=path,
                        source=ROM.entity,
                        birth_date=owner.birth_date,
                        today=today,
                    )
                except ValidationFailed as failed:
                    # the joint's own fields are named once, by the exam if it has them
                    shared = {(p.field, p.reason) for p in problems}
                    problems.extend(p for p in failed.problems if (p.field, p.reason) not in shared)
            if problems:
                raise ValidationFailed(problems)
            if checked_exam is not None:
                saved += store_rows(
                    conn, EXAM, [checked_exam], owner=owner, actor=actor, named=lambda _: "date"
                )
            saved += store_rows(
                conn, ROM, checked_rom, owner=owner, actor=actor, named=lambda i: path(i, "degrees")
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    return follow_record(tuple(saved), engine=engine, protocol=protocol, today=given_today)
