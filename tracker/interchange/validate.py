"""Column-wise validation of interchange CSV files with pandas.

Every check works on whole columns at once and yields a frame of problems
(line, field, reason), so a million-row import is validated without a Python
loop over rows. Line numbers count the header as line 1.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tracker import values, vocab
from tracker.errors import Problem
from tracker.interchange.csv_format import (
    STUDY_KEY,
    TEXT_KINDS,
    Column,
    FileFormat,
    format_number,
    number_texts,
)

PROBLEM_COLUMNS = ["line", "field", "reason"]
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_PARSER_LINE = re.compile(r"line (\d+)")


@dataclass
class FileCheck:
    """One file read and checked: typed rows (index = line number) and problems."""

    fmt: FileFormat
    rows: pd.DataFrame
    problems: list[pd.DataFrame] = field(default_factory=list)

    def add(self, mask: pd.Series, field_name: str, reason: str | pd.Series) -> None:
        """Record `reason` for every row where `mask` is true."""
        if not mask.any():
            return
        lines = self.rows.index[mask.to_numpy()]
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        frame = pd.DataFrame({"line": lines, "field": field_name, "reason": reasons})
        self.problems.append(frame.reset_index(drop=True))

    def problem_list(self) -> list[Problem]:
        if not self.problems:
            return []
        frame = pd.concat(self.problems, ignore_index=True)
        return [
            Problem(self.fmt.name, int(line), str(field_name), str(reason))
            for line, field_name, reason in frame[PROBLEM_COLUMNS].itertuples(index=False)
        ]

    def bad_lines(self) -> pd.Index:
        if not self.problems:
            return pd.Index([], dtype=int)
        return pd.Index(pd.concat(self.problems)["line"].unique())


def read_csv(path: Path, fmt: FileFormat) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read a file as text columns; report encoding, shape and header problems."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        byte = raw[error.start : error.start + 1].hex()
        return None, [
            Problem(fmt.name, line, "file", f"is not UTF-8 (byte 0x{byte}); save it as UTF-8 CSV")
        ]
    if not text.strip():
        return None, [Problem(fmt.name, 1, "file", "is empty; it needs at least a header row")]
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, engine="c"
        )
    except pd.errors.ParserError as error:
        found = _PARSER_LINE.search(str(error))
        line = int(found.group(1)) if found else 1
        return None, [Problem(fmt.name, line, "file", f"cannot be read as CSV: {error}")]
    frame.columns = [str(c).strip() for c in frame.columns]
    problems = [
        Problem(fmt.name, 1, name, "required column is missing")
        for name in fmt.required
        if name not in frame.columns
    ]
    allowed = set(fmt.column_names)
    problems += [
        Problem(fmt.name, 1, str(name), f"unknown column; allowed: {', '.join(fmt.column_names)}")
        for name in frame.columns
        if name not in allowed
    ]
    duplicated = frame.columns[frame.columns.duplicated()]
    problems += [Problem(fmt.name, 1, str(n), "column appears twice") for n in duplicated]
    if problems:
        return None, problems
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    return frame, []


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).str.strip()


def check_columns(frame: pd.DataFrame, fmt: FileFormat, today: dt.date) -> FileCheck:
    """Type every column of `fmt` and record problems; blanks become missing values."""
    typed = pd.DataFrame(index=frame.index)
    check = FileCheck(fmt, typed)
    for column in fmt.columns:
        raw = _text(frame[column.name]) if column.name in frame.columns else None
        if raw is None:
            raw = pd.Series("", index=frame.index, dtype=object)
        blank = raw == ""
        if column.required:
            check.add(blank, column.name, "is required")
        typed[column.name] = _typed_column(check, column, raw, blank, today)
    return check


def _typed_column(
    check: FileCheck, column: Column, raw: pd.Series, blank: pd.Series, today: dt.date
) -> pd.Series:
    present = ~blank
    name = column.name
    if column.kind == "enum":
        assert column.enum is not None
        allowed = vocab.values(column.enum)
        bad = present & ~raw.isin(allowed)
        check.add(bad, name, "'" + raw + "' is not one of " + ", ".join(allowed))
        return raw.where(present & ~bad, None)
    if column.kind in TEXT_KINDS:
        return _text_column(check, column, raw, present)
    if column.kind == "date":
        return _date_column(check, column, raw, present, today)
    numbers = pd.to_numeric(raw.where(present, None), errors="coerce")
    bad = present & (numbers.isna() | ~np.isfinite(numbers.fillna(0.0)))
    kind = "a whole number" if column.kind == "int" else "a number"
    check.add(bad, name, "'" + raw + f"' is not {kind}")
    ok = present & ~bad
    huge = ok & (numbers.abs() > values.NUMBER_LIMIT)
    check.add(huge, name, values.NUMBER_OUTSIDE)
    ok &= ~huge
    if column.kind == "int":
        fractional = ok & (numbers.fillna(0.0) % 1 != 0)
        check.add(fractional, name, "'" + raw + "' is not a whole number")
        ok &= ~fractional
    if column.positive:
        not_positive = ok & (numbers <= 0)
        check.add(not_positive, name, raw + " must be greater than 0")
        ok &= ~not_positive
    if column.low is not None and column.high is not None:
        outside = ok & ((numbers < column.low) | (numbers > column.high))
        bounds = f"{format_number(column.low)} to {format_number(column.high)}"
        check.add(outside, name, raw + f" is outside {bounds}")
        ok &= ~outside
    elif column.high is not None:
        above = ok & (numbers > column.high)
        check.add(above, name, raw + f" is more than {format_number(column.high)}")
        ok &= ~above
    kept = numbers.where(ok)
    return kept.astype("Int64") if column.kind == "int" else kept.astype(float)


def _text_column(check: FileCheck, column: Column, raw: pd.Series, present: pd.Series) -> pd.Series:
    """Identifiers and text hold no control character, notes none but line breaks
    (tracker.values); each has its length limit. The value is kept only if it passes,
    so nothing a later check reads (or the database stores) holds one."""
    pattern = values.CONTROL_IN_NOTE if column.kind == "note" else values.CONTROL
    found = raw.where(present, "").str.extract(f"([{pattern}])", expand=False)
    control = present & found.notna()
    check.add(control, column.name, found.map(values.control_reason, na_action="ignore"))
    ok = present & ~control
    if column.kind == "identifier" and column.name == "mrn":
        slashed = ok & raw.str.contains(values.MRN_FORBIDDEN, regex=False)
        check.add(slashed, column.name, values.MRN_FORBIDDEN_REASON)
        ok &= ~slashed
    if column.max_length is not None:
        long = ok & (raw.str.len() > column.max_length)
        check.add(long, column.name, values.longer_reason(column.max_length))
        ok &= ~long
    return raw.where(ok, None)


def _date_column(
    check: FileCheck, column: Column, raw: pd.Series, present: pd.Series, today: dt.date
) -> pd.Series:
    """A date in the form YYYY-MM-DD from values.EARLIEST_DATE to today (or the bounded
    future). ISO text compares as the dates do, so the bounds are checked on the text,
    before parsing, and a year the parser cannot hold (0001, 9999) gets the words of
    the bound it breaks rather than "not a date"."""
    name = column.name
    shaped = present & raw.str.match(_DATE_RE)
    early = shaped & (raw < values.EARLIEST_DATE.isoformat())
    late = shaped & (raw > values.latest_date(today, future=column.future).isoformat())
    check.add(early, name, values.early_reason(raw))
    check.add(late, name, values.late_reason(raw, future=column.future))
    within = shaped & ~early & ~late
    parsed = pd.to_datetime(raw.where(within, None), format="%Y-%m-%d", errors="coerce")
    bad = present & ~early & ~late & (~shaped | parsed.isna())
    check.add(bad, name, "'" + raw + "' is not a date in the form YYYY-MM-DD")
    return raw.where(within & ~bad, None)


def check_rules(check: FileCheck) -> None:
    """Rules across columns of one row (model-spec sections 1 and 2)."""
    rows, name = check.rows, check.fmt.name
    if name == "treatments.csv":
        start = pd.to_datetime(rows["start_date"])
        end = pd.to_datetime(rows["end_date"])
        reason = (
            rows["end_date"].fillna("") + " is before start_date " + rows["start_date"].fillna("")
        )
        check.add(end < start, "end_date", reason)
        lone = rows["site"].isna() != rows["side"].isna()
        check.add(lone, "side", "site and side must be given together (or both left blank)")
    elif name == "bone_scans.csv":
        _check_ratio(check)
    elif name == "imaging.csv":
        uptake_ok = rows["modality"].isin([m.value for m in vocab.UPTAKE_MODALITIES])
        check.add(
            rows["uptake"].notna() & rows["modality"].notna() & ~uptake_ok,
            "uptake",
            "is recorded only for bone_scan, spect and pet studies",
        )
        _check_study_indication(check)
    elif name == "labs.csv":
        inverted = rows["ref_low"] > rows["ref_high"]
        check.add(inverted, "ref_low", "is greater than ref_high")
        _check_unit(check)


def _check_study_indication(check: FileCheck) -> None:
    """The rows of one study (mrn, date, modality, accession) share its indication
    (model-spec v2, section 2): a row that says otherwise than the study's first row
    is refused, naming that line."""
    rows = check.rows
    if "indication" not in rows or rows.empty:
        return
    key = [rows[c].fillna("") for c in STUDY_KEY]
    said = rows["indication"].fillna("")
    first_said = said.groupby(key).transform("first")
    first_line = pd.Series(rows.index, index=rows.index).groupby(key).transform("min")
    differs = (said != first_said) & ~rows.index.isin(check.bad_lines())
    reason = (
        "'"
        + said
        + "' differs from the indication of the same study on line "
        + first_line.astype(str)
        + " ('"
        + first_said
        + "'); the rows of one study share its indication"
    )
    check.add(differs, "indication", reason)


_UNIT_LISTS = {analyte: ", ".join(units) for analyte, units in vocab.LAB_UNITS.items()}
_UNIT_PAIRS = {f"{a}\x1f{u}" for a, units in vocab.LAB_UNITS.items() for u in units}


def _check_unit(check: FileCheck) -> None:
    """A lab's unit is one of its analyte's units (model-spec v2, section 1), exactly:
    case counts and nothing is converted. The one rule for CSV, forms, the API and
    FHIR import (they all come through here); the database CHECKs the same pairs."""
    analyte, unit = check.rows["analyte"], check.rows["unit"]
    known = analyte.notna() & unit.notna()
    pair = analyte.fillna("") + "\x1f" + unit.fillna("")
    wrong = known & ~pair.isin(_UNIT_PAIRS)
    reason = (
        "'"
        + unit.fillna("")
        + "' is not one of the units for "
        + analyte.fillna("")
        + ": "
        + analyte.map(_UNIT_LISTS).fillna("")
    )
    check.add(wrong, "unit", reason)


def _check_ratio(check: FileCheck) -> None:
    rows = check.rows
    counted = rows["lesion_counts"] / rows["reference_counts"]
    missing = rows["ratio"].isna() & counted.isna()
    # A problem already reported on one of the three columns is not repeated here.
    reported = rows.index.isin(check.bad_lines())
    check.add(
        missing & ~reported,
        "ratio",
        "is required unless lesion_counts and reference_counts are both given",
    )
    disagree = (rows["ratio"] - counted).abs() > 0.01 * rows["ratio"]
    reason = (
        "ratio "
        + number_texts(rows["ratio"])
        + " disagrees with lesion_counts/reference_counts = "
        + number_texts(counted.round(3))
    )
    check.add(disagree.fillna(False), "ratio", reason)
    rows["ratio"] = rows["ratio"].fillna(counted)


def check_duplicates(check: FileCheck) -> None:
    """Two rows with the same natural key in one file: name the earlier line."""
    rows, key = check.rows, list(check.fmt.key)
    keyed = rows[key].copy()
    keyed["__line"] = rows.index
    usable = ~rows.index.isin(check.bad_lines())
    keyed = keyed[usable]
    dup = keyed.duplicated(key, keep="first")
    if not dup.any():
        return
    first = keyed.groupby(key, dropna=False)["__line"].transform("min")
    mask = pd.Series(False, index=rows.index)
    mask[keyed.index[dup.to_numpy()]] = True
    reason = pd.Series("", index=rows.index, dtype=object)
    reason[keyed.index[dup.to_numpy()]] = (
        "repeats line " + first[dup].astype(str) + " (same " + ", ".join(key) + ")"
    ).to_numpy()
    check.add(mask, key[-1] if len(key) > 1 else key[0], reason)
