"""The bedside examination form (issue 16): one joint, its signs and pain, and a row
per movement of that joint, each with the last value recorded there beside it.

The rows are `measurements[i].movement` (hidden, the movement the row is for) and
`measurements[i].degrees`; a row left without degrees is skipped when saving
(`saving.add_examination`). A form shown again after a refusal keeps its rows as
they were sent, so each problem stays beside its input; a new form, or one whose
joint was changed ("Show this joint's movements"), lists the joint's movements
(`formspec.movements_of`), keeping the degrees typed for a movement it still lists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker import labels, vocab
from tracker.store.story import load_story
from tracker.web.formspec import EXAM, movements_of, row_count

ROWS = "measurements"


@dataclass(frozen=True)
class MovementRow:
    index: int
    movement: str
    last: str  # "last: 100° on 1 Feb 2026", or ""


short_day = labels.day  # "1 Feb 2026", the one day format of the pages and reminders


def _degrees(value: float) -> str:
    return f"{value:g}°"


def posted_rows(values: dict[str, str]) -> list[tuple[int, str]]:
    """(index, movement) of each row the form sent, in order."""
    rows = []
    for i in range(row_count(values, EXAM, None)):
        movement = values.get(f"{ROWS}[{i}].movement", "")
        if movement or values.get(f"{ROWS}[{i}].degrees"):
            rows.append((i, movement))
    return rows


def relist(values: dict[str, str]) -> dict[str, str]:
    """The values with the rows of the joint's movements, degrees already typed for a
    movement kept (a row of another movement with degrees is kept after them)."""
    typed = {m: values.get(f"{ROWS}[{i}].degrees", "") for i, m in posted_rows(values)}
    kept = {k: v for k, v in values.items() if not k.startswith(f"{ROWS}[")}
    listed = list(movements_of(values.get("site")))
    listed += [m for m, d in typed.items() if d and m not in listed]
    for i, movement in enumerate(listed):
        kept[f"{ROWS}[{i}].movement"] = movement
        if typed.get(movement):
            kept[f"{ROWS}[{i}].degrees"] = typed[movement]
    return kept


def needs_listing(values: dict[str, str]) -> bool:
    """A new form, or one asked to list the chosen joint's movements."""
    asked = "more_rows" in values and "save" not in values
    return asked or not posted_rows(values)


def last_values(engine: Engine, mrn: str, site: str, side: str) -> dict[str, str]:
    """What was last recorded at this joint, by input name: 'last: yes on 1 Feb 2026'
    beside each sign and the pain, 'last: 100° on 1 Feb 2026' by movement."""
    if not site or not side:
        return {}
    with Session(engine) as session:
        story = load_story(session, mrn)
    said: dict[str, str] = {}
    for exam in story.exams:  # oldest first: later ones overwrite
        if exam.site != site or exam.side != side:
            continue
        for name in (*vocab.EXAM_SIGNS, "pain"):
            value: Any = getattr(exam, name)
            if value is not None:
                said[name] = f"last: {labels.words(value)} on {short_day(exam.date)}"
    for rom in story.range_of_motion:
        if rom.site == site and rom.side == side:
            said[f"movement:{rom.movement}"] = (
                f"last: {_degrees(rom.degrees)} on {short_day(rom.date)}"
            )
    return said


def rows_to_show(values: dict[str, str], last: dict[str, str]) -> list[MovementRow]:
    return [
        MovementRow(i, movement, last.get(f"movement:{movement}", ""))
        for i, movement in posted_rows(values)
    ]


def context(engine: Engine, mrn: str, values: dict[str, str]) -> dict[str, Any]:
    """What exam_form.j2 needs beyond the record form's own context."""
    site, side = values.get("site", ""), values.get("side", "")
    last = last_values(engine, mrn, site, side)
    return {
        "joint": labels.place(site, side) if site and side else "",
        "last": last,
        "movement_rows": rows_to_show(values, last),
        "signs": vocab.EXAM_SIGNS,
    }


def messages(said: list[Any], values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Each refusal (`labels.field_errors`) beside its input and in the summary, as a
    sentence naming the input: 'Right hip flexion: degrees 250 is outside 0 to 200'."""
    joint = labels.place(values.get("site"), values.get("side")) or "joint"
    by_field: dict[str, str] = {}
    for error in said:
        path, says = error.path, error.says
        if "nothing to save" in says:
            says = "Nothing to save" + says.split("nothing to save", 1)[1]
        elif path.startswith(f"{ROWS}[") and "]." in path:
            at = path.split("]", 1)[0] + "]"
            movement = labels.words(values.get(f"{at}.movement")) or "movement"
            says = f"{joint[:1].upper()}{joint[1:]} {movement}: {says[:1].lower()}{says[1:]}"
        by_field[path] = f"{by_field[path]}; {says}" if path in by_field else says
    return by_field, list(dict.fromkeys(by_field.values()))


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def joint_words(story: Any, as_of: dt.date) -> list[dict[str, Any]]:
    """The latest examination and range of motion of each examined joint up to
    `as_of`, in words, for the patient page: 'Swelling and warmth at the right hip on
    10 Feb 2026 (pain 6 of 10)', 'Hip flexion 100° → 70° (−30%) since 1 Feb 2026'."""
    joints: dict[tuple[str, str], dict[str, Any]] = {}

    def joint(site: str, side: str) -> dict[str, Any]:
        return joints.setdefault(
            (site, side),
            {"site": site, "side": side, "exam": "", "rom": [], "last": dt.date.min},
        )

    for exam in story.exams:  # oldest first: the latest wins
        if exam.date > as_of:
            continue
        j = joint(exam.site, exam.side)
        where = labels.place(exam.site, exam.side)
        seen = [labels.words(s) for s in vocab.EXAM_SIGNS if getattr(exam, s) == "yes"]
        absent = [labels.words(s) for s in vocab.EXAM_SIGNS if getattr(exam, s) == "no"]
        if seen:
            said = f"{_joined(seen).capitalize()} at the {where}"
        elif absent:
            said = f"No {_joined(absent).replace(' and ', ' or ')} at the {where}"
        else:
            said = f"Examined at the {where}"
        said += f" on {short_day(exam.date)}"
        if exam.pain is not None:
            said += f" (pain {exam.pain} of 10)"
        j["exam"], j["last"] = said, max(j["last"], exam.date)
    measured: dict[tuple[str, str, str], list[Any]] = {}
    for rom in story.range_of_motion:
        if rom.date <= as_of:
            measured.setdefault((rom.site, rom.side, rom.movement), []).append(rom)

    def order(key: tuple[str, str, str]) -> tuple[str, str, int]:
        listed = movements_of(key[0])
        return (key[0], key[1], listed.index(key[2]) if key[2] in listed else len(listed))

    for site, side, movement in sorted(measured, key=order):
        series = measured[(site, side, movement)]
        j = joint(site, side)
        first, latest = series[0], series[-1]
        name = f"{labels.words(site).capitalize()} {labels.words(movement)}"
        if latest is first or not first.degrees:
            said = f"{name} {_degrees(latest.degrees)} on {short_day(latest.date)}"
        else:
            change = round(100 * (latest.degrees - first.degrees) / first.degrees)
            sign = "+" if change > 0 else ("−" if change < 0 else "")
            said = (
                f"{name} {_degrees(first.degrees)} → {_degrees(latest.degrees)} "
                f"({sign}{abs(change)}%) since {short_day(first.date)}"
            )
        j["rom"].append(said)
        j["last"] = max(j["last"], latest.date)
    return sorted(joints.values(), key=lambda j: (j["last"], j["site"], j["side"]), reverse=True)
