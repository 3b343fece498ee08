"""Column-wise building blocks of the cohort run: days, coded texts, grouped
reductions over sorted rows, text assembly and calendar arithmetic.

Every helper works on whole numpy columns. Where Python must write a value (a
number or a date as the one-patient path writes it), it writes each distinct value
once and the column is filled by index, never row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Texts = NDArray[np.object_]

NO_DAY = np.iinfo(np.int64).min // 4  # "no date": earlier than any day
NEVER = np.iinfo(np.int64).max  # "no date" where the earliest of several is wanted

# --- reading columns ---


def day_number(value: date) -> int:
    """Days since 1970-01-01."""
    return int(np.datetime64(value, "D").astype(np.int64))


def days(column: pd.Series) -> Ints:
    """A date column as day numbers; NaT becomes NO_DAY."""
    stamps = pd.to_datetime(column).to_numpy().astype("datetime64[D]")
    return np.where(np.isnat(stamps), NO_DAY, stamps.astype(np.int64))


def numbers(column: pd.Series) -> Floats:
    """A numeric column as float64, NaN where missing."""
    values = pd.to_numeric(column).astype("Float64").to_numpy(np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


class Coded:
    """A text column as integer codes in sorted order of its values, -1 where missing:
    codes compare as the texts do, missing first (the canonical record order of
    `records.in_canonical_order`)."""

    def __init__(self, codes: Ints, values: Texts) -> None:
        self.codes, self.values = codes, values

    @classmethod
    def of(cls, column: pd.Series) -> Coded:
        codes, uniques = pd.factorize(column, sort=True)
        return cls(np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object))

    def take(self, rows: Ints | Bools) -> Coded:
        return Coded(self.codes[rows], self.values)

    def isin(self, *wanted: str) -> Bools:
        hit = np.append(np.isin(self.values, [str(w) for w in wanted]), False)
        return hit[self.codes]  # code -1 reads the appended False

    def texts(self, codes: Ints | None = None) -> Texts:
        """The values as text (None where missing), of all rows or of these codes."""
        with_missing = np.concatenate([self.values, np.array([None], dtype=object)])
        return with_missing[self.codes if codes is None else codes]


def ranked(columns: Sequence[pd.Series], defining: int) -> tuple[list[Ints], Texts]:
    """Codes for the values of several text columns, numbering in sorted order the
    values that occur in the first `defining` columns; -1 for any other value."""
    codes, uniques = pd.factorize(pd.concat(list(columns), ignore_index=True))
    parts = np.split(np.asarray(codes, dtype=np.int64), np.cumsum([len(c) for c in columns])[:-1])
    present = np.zeros(len(uniques), dtype=bool)
    for part in parts[:defining]:
        present[part[part >= 0]] = True
    kept = np.flatnonzero(present)
    names = np.asarray(uniques, dtype=object)[kept]
    order = np.argsort(names, kind="stable")
    rank = np.full(len(uniques) + 1, -1, dtype=np.int64)  # code -1 reads the last: -1
    rank[kept[order]] = np.arange(len(kept))
    return [rank[part] for part in parts], names[order].astype(str).astype(object)


def dense_ranks(keys: Ints) -> tuple[Ints, Ints]:
    """The distinct keys (sorted) and each key's rank among them, as np.unique's
    return_inverse; a bitmap instead of a sort when the keys are small, as site keys
    (patient, site, side) are."""
    if len(keys) == 0 or int(keys.max()) > 64 * len(keys) + 1_000_000:
        uniques, inverse = np.unique(keys, return_inverse=True)
        return uniques, inverse.astype(np.int64)
    present = np.zeros(int(keys.max()) + 1, dtype=bool)
    present[keys] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present), rank[keys]


# --- grouped reductions ---


def reduce_at(ufunc: np.ufunc, size: int, keys: Ints, values: NDArray[Any], fill: Any) -> Any:
    """`ufunc` (maximum, minimum) of the values of each key 0..size-1; fill where none."""
    out = np.full(size, fill, dtype=np.asarray(values).dtype if len(values) else type(fill))
    ufunc.at(out, keys, values)
    return out


def at(values: NDArray[Any], index: Ints, valid: Bools, fill: Any = np.nan) -> NDArray[Any]:
    """values[index] where valid, else fill (index may point anywhere where not valid)."""
    out = np.full(len(index), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    out[valid] = values[index[valid]]
    return out


def first_per_group(keys: Ints) -> tuple[Ints, Ints]:
    """For keys sorted ascending: each distinct key and the position of its first row."""
    if len(keys) == 0:
        return keys, keys
    starts = np.flatnonzero(np.insert(keys[1:] != keys[:-1], 0, True))
    return keys[starts], starts


def last_per_group(keys: Ints) -> tuple[Ints, Ints]:
    """For keys sorted ascending: each distinct key and the position of its last row."""
    if len(keys) == 0:
        return keys, keys
    ends = np.flatnonzero(np.append(keys[1:] != keys[:-1], True))
    return keys[ends], ends


def daily(site: Ints, day: Ints, value: Ints) -> tuple[Ints, Ints, Ints, Ints]:
    """For rows sorted by site and day: each (site, day) with its lowest and highest
    value."""
    if len(site) == 0:
        return site, day, value, value
    new = np.ones(len(site), dtype=bool)
    new[1:] = (site[1:] != site[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new)
    lowest = np.minimum.reduceat(value, starts)
    highest = np.maximum.reduceat(value, starts)
    return site[starts], day[starts], lowest, highest


def latest_per_site(site: Ints, day: Ints, value: Ints) -> tuple[Ints, Ints, Ints]:
    """For rows sorted by site and day: each site with its latest day and the highest
    value on that day."""
    site, day, _, highest = daily(site, day, value)
    sites, last = last_per_group(site)
    return sites, day[last], highest[last]


def earlier(site: Ints, value: Ints, ufunc: np.ufunc, none: int) -> Ints:
    """For rows sorted by site: `ufunc` (maximum or minimum) of the site's values in
    the rows before each row, `none` for a site's first row."""
    if len(site) == 0:
        return value
    # one running maximum over all rows, each site lifted above the ones before it
    low, span = int(value.min()), int(value.max()) - int(value.min()) + 1
    flipped = value - low if ufunc is np.maximum else (span - 1) - (value - low)
    lifted = site * span + flipped
    running = np.maximum.accumulate(lifted) - site * span
    extreme = running + low if ufunc is np.maximum else (span - 1) - running + low
    before = np.full(len(site), none, dtype=np.int64)
    same = site[1:] == site[:-1]
    before[1:][same] = extreme[:-1][same]
    return before


def join_groups(keys: Ints, parts: Texts, separator: str) -> Texts:
    """For keys sorted ascending: the parts of each key joined, in order."""
    groups, starts = first_per_group(keys)
    if len(groups) == 0:
        return np.array([], dtype=object)
    which = np.cumsum(np.insert(keys[1:] != keys[:-1], 0, True)) - 1
    place = np.arange(len(keys)) - starts[which]
    joined = parts[starts].copy()
    for position in range(1, int(place.max()) + 1):
        here = place == position
        joined[which[here]] = text(joined[which[here]], separator, parts[here])
    return joined


# --- writing ---


def iso(day: Ints) -> Texts:
    """ISO dates, each distinct day written once."""
    if len(day) == 0:
        return np.array([], dtype=object)
    uniques, inverse = np.unique(day, return_inverse=True)
    return np.datetime_as_string(uniques.astype("datetime64[D]")).astype(object)[inverse]


def render(values: NDArray[Any], write: Callable[[Any], str]) -> Texts:
    """`write` applied once per distinct value (numbers repeat a lot)."""
    if len(values) == 0:
        return np.array([], dtype=object)
    uniques, inverse = np.unique(values, return_inverse=True)
    return np.array([write(v) for v in uniques.tolist()], dtype=object)[inverse]


def text(*parts: str | Texts) -> Texts:
    """Concatenate texts element-wise (arrays of equal length and plain strings)."""
    result: Any = parts[0]
    for part in parts[1:]:
        result = result + part
    return np.asarray(result, dtype=object)


def filled(size: int, value: str | None) -> Texts:
    """`size` copies of one text (or None). Slice assignment, not np.full: for object
    arrays np.full is some thirty times slower, and the cohort fills dozens."""
    out = np.empty(size, dtype=object)
    out[:] = value
    return out


# --- the calendar (readiness.add_months and whole_months_between over columns) ---


def _ymd(day: Ints) -> tuple[Ints, Ints, Ints]:
    stamp = day.astype("datetime64[D]")
    months = stamp.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    return year, month, (stamp - months.astype("datetime64[D]")).astype(np.int64) + 1


def add_months(day: Ints, months: Ints) -> Ints:
    """The same day of the month `months` later, or that month's last day."""
    year, month, of_month = _ymd(day)
    index = (year - 1970) * 12 + month - 1 + months
    first = index.astype("datetime64[M]").astype("datetime64[D]")
    length = (index + 1).astype("datetime64[M]").astype("datetime64[D]") - first
    return (first + np.minimum(of_month, length.astype(np.int64)) - 1).astype(np.int64)


def whole_months_between(start: Ints, end: int) -> Ints:
    """Calendar months completed from each start to end (0 if end is earlier)."""
    year, month, _ = _ymd(start)
    end_year, end_month, _ = _ymd(np.array([end]))
    months = np.maximum(0, (end_year - year) * 12 + end_month - month)
    return months - ((months > 0) & (add_months(start, months) > end))
