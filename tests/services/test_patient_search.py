"""Patient search as a paged service list (issue 14): found by the start of a family
name, given name or MRN in any case, 50 a page in name order with the MRN and id as
tie-breaks, and "more" known without counting the cohort."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import DEMO
from tracker.errors import TrackerError
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.services.assessment import assess_all
from tracker.services.patients import PatientSearch, list_patients, search_patients
from tracker.services.site_assessments import assessment_state, refresh_all
from tracker.staging.cohort import cohort_as_json_sites
from tracker.store.models import SiteAssessment, table_of
from tracker.web.views import PatientFilters, PatientRow, patient_rows

AS_OF = dt.date(2026, 11, 2)


def add_patients(engine: Engine, rows: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        write_csv(
            Path(scratch),
            "patients.csv",
            rows,
            header=["mrn", "birth_date", "sex", "family_name", "given_name", "team"],
        )
        import_folder(engine, Path(scratch))


def patient(mrn: str, family: str | None, given: str | None, team: str = "") -> dict[str, object]:
    return {"mrn": mrn, "birth_date": "1970-01-01", "sex": "female",
            "family_name": family, "given_name": given, "team": team}  # fmt: skip


def walk(engine: Engine, search: PatientSearch, size: int) -> Iterator[list[str]]:
    """Every page's MRNs, following each page's cursor to the next."""
    after = None
    while True:
        page = search_patients(engine=engine, search=search, after=after, size=size)
        yield [p.mrn for p in page.patients]
        if page.next_after is None:
            return
        after = page.next_after


@pytest.fixture
def tied(engine: Engine) -> list[dict[str, object]]:
    """Namesakes in every case, patients without a family or given name, two teams."""
    rows = [patient(f"T{n:03d}", "Smith", "Jo", "ward_a" if n % 2 else "ward_b") for n in range(23)]
    rows += [patient(f"U{n:03d}", "SMITH", "jo", "ward_a") for n in range(7)]
    rows += [patient(f"N{n:03d}", None, "Jo") for n in range(5)]
    rows += [patient(f"G{n:03d}", "Adams", None) for n in range(4)]
    rows += [patient(f"V{n:03d}", f"Vale{n % 3}", f"Ann{n}") for n in range(9)]
    add_patients(engine, rows)
    return rows


def test_paging_through_namesakes_loses_and_repeats_no_patient(
    engine: Engine, tied: list[dict[str, object]]
) -> None:
    pages = list(walk(engine, PatientSearch(), size=5))
    walked = [mrn for page in pages for mrn in page]
    assert sorted(walked) == sorted(str(r["mrn"]) for r in tied)
    assert len(walked) == len(set(walked))
    assert all(len(page) == 5 for page in pages[:-1]) and 0 < len(pages[-1]) <= 5
    # one long page holds the same order: paging changes nothing
    whole = search_patients(engine=engine, search=PatientSearch(), size=len(tied) + 1)
    assert [p.mrn for p in whole.patients] == walked and whole.next_after is None


def test_namesakes_in_any_case_are_listed_together_by_mrn(
    engine: Engine, tied: list[dict[str, object]]
) -> None:
    walked = [mrn for page in walk(engine, PatientSearch(text="smith jo"), size=4) for mrn in page]
    expected = sorted(str(r["mrn"]) for r in tied if str(r["family_name"]).lower() == "smith")
    assert walked == expected


def test_a_full_last_page_says_there_is_no_more(
    engine: Engine, tied: list[dict[str, object]]
) -> None:
    vales = [r for r in tied if str(r["family_name"]).startswith("Vale")]
    page = search_patients(engine=engine, search=PatientSearch(text="vale"), size=len(vales))
    assert len(page.patients) == len(vales) and page.next_after is None
    short = search_patients(engine=engine, search=PatientSearch(text="vale"), size=len(vales) - 1)
    assert short.next_after is not None


def test_filters_hold_on_every_page(engine: Engine, tied: list[dict[str, object]]) -> None:
    search = PatientSearch(text="smith", team="ward_a")
    walked = [mrn for page in walk(engine, search, size=3) for mrn in page]
    expected = {
        str(r["mrn"])
        for r in tied
        if str(r["family_name"]).lower() == "smith" and r["team"] == "ward_a"
    }
    assert set(walked) == expected and len(walked) == len(expected)


def test_a_word_that_starts_family_names_given_names_and_mrns_lists_each_match_once_in_order(
    engine: Engine,
) -> None:
    """The name search reads family names, given names and MRNs separately and merges
    them: a patient matching twice is listed once, and the pages keep the name order
    across the three."""
    rows = [patient(f"F{n:02d}", "Jones", f"Ann{n}") for n in range(6)]  # family name
    rows += [patient(f"G{n:02d}", "Brown", "Jonah") for n in range(5)]  # given name
    rows += [patient(f"JON{n:02d}", "Clark", "Eve") for n in range(4)]  # the MRN
    rows += [patient("B01", "Jonas", "Jon"), patient("JON-X", "Jonsson", "Jo")]  # twice, thrice
    rows += [patient("Z01", "Smith", "Ann"), patient("Z02", "Ajones", "Bo")]  # neither
    add_patients(engine, rows)
    walked = [mrn for page in walk(engine, PatientSearch(text="JON"), size=4) for mrn in page]
    expected = ["G00", "G01", "G02", "G03", "G04", "JON00", "JON01", "JON02", "JON03"]
    expected += ["B01", *(f"F{n:02d}" for n in range(6)), "JON-X"]  # brown, clark, jonas, ...
    assert walked == expected


def test_the_list_sorts_by_code_point_on_every_backend(engine: Engine) -> None:
    add_patients(
        engine,
        [patient("P1", "Zulu", "Al"), patient("P2", "Ábel", "Al"), patient("P3", "abel", "Al")],
    )
    assert [p.mrn for p in search_patients(engine=engine, search=PatientSearch()).patients] == [
        "P3",
        "P1",
        "P2",
    ]


@pytest.mark.parametrize(
    ("typed", "wanted"),
    [
        ("hughes", "H-READY"),  # family name
        ("HUGH", "H-READY"),  # its start, any case
        ("gareth", "H-READY"),  # given name
        ("Hughes, Gareth", "H-READY"),  # as a list writes it
        ("gareth hughes", "H-READY"),  # as a person says it
        ("h-read", "H-READY"),  # the start of the MRN
    ],
)
def test_a_patient_is_found_by_family_given_name_or_mrn(
    demo: Engine, typed: str, wanted: str
) -> None:
    found = search_patients(engine=demo, search=PatientSearch(text=typed)).patients
    assert wanted in [p.mrn for p in found]
    assert all(_matches(p.name, p.mrn, typed) for p in found)


def _matches(name: str, mrn: str, typed: str) -> bool:
    parts = [part.strip().lower() for part in name.split(",")] + [mrn.lower()]
    return all(
        any(part.startswith(w) for part in parts) for w in typed.lower().replace(",", " ").split()
    )


def test_a_name_that_matches_nobody_finds_nobody(demo: Engine) -> None:
    page = search_patients(engine=demo, search=PatientSearch(text="zzzz"))
    assert page.patients == [] and page.next_after is None


def test_like_wildcards_in_a_search_are_letters_not_patterns(demo: Engine) -> None:
    assert search_patients(engine=demo, search=PatientSearch(text="%")).patients == []
    assert search_patients(engine=demo, search=PatientSearch(text="_")).patients == []


def test_list_patients_finds_by_the_same_rule_for_the_cli_and_api(demo: Engine) -> None:
    assert [p.mrn for p in list_patients(engine=demo, search="gareth")] == ["H-READY"]


def test_a_damaged_page_link_is_refused_in_a_sentence(demo: Engine) -> None:
    with pytest.raises(TrackerError, match="page link is damaged"):
        search_patients(engine=demo, search=PatientSearch(), after="not-a-cursor")


def test_a_page_reads_a_fixed_number_of_queries(demo: Engine) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(demo, "before_cursor_execute", count)
    try:
        first = search_patients(engine=demo, search=PatientSearch(), size=10)
        search_patients(engine=demo, search=PatientSearch(), size=10, after=first.next_after)
    finally:
        sa.event.remove(demo, "before_cursor_execute", count)
    assert len(statements) == 8  # per page: the page, injuries, HO sites, latest imaging
    assert not any("count(*)" in s.lower() for s in statements)


def stored_sites(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """Every stored site assessment, per MRN, as the patient list shows them."""
    a = table_of(SiteAssessment).c
    query = sa.select(a.mrn, a.site, a.side, a.stage, a.activity, a.readiness, a.flags)
    sites: dict[str, list[dict[str, object]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query.order_by(a.patient_id, a.id)).mappings():
            flags = [f for f in row["flags"].split(";") if f]
            sites.setdefault(row["mrn"], []).append({**row, "flags": flags})
    return sites


def walk_rows(engine: Engine, filters: PatientFilters, as_of: dt.date = AS_OF) -> list[PatientRow]:
    rows: list[PatientRow] = []
    after = None
    while True:
        page = patient_rows(
            engine=engine, filters=filters, as_of=as_of, protocol=Protocol(), after=after, size=2
        )
        assert len(page.rows) <= 2 and page.assessed
        rows += page.rows
        if page.next_after is None:
            return rows
        after = page.next_after


@pytest.mark.parametrize(
    "filters",
    [
        PatientFilters(stage="mineralising"),
        PatientFilters(readiness="not_ready"),
        PatientFilters(flag="progression_after_treatment"),
        PatientFilters(flag="new_site"),
        PatientFilters(stage="none", readiness="not_applicable"),
    ],
    ids=lambda f: "-".join(v for v in (f.stage, f.readiness, f.flag) if v),
)
def test_site_filters_page_through_every_patient_with_a_matching_stored_site_once(
    demo: Engine, filters: PatientFilters
) -> None:
    refresh_all(engine=demo, as_of=AS_OF, protocol=Protocol())
    sites = stored_sites(demo)
    expected = {
        mrn
        for mrn, own in sites.items()
        if any(
            (not filters.stage or s["stage"] == filters.stage)
            and (not filters.readiness or s["readiness"] == filters.readiness)
            and (not filters.flag or filters.flag in s["flags"])  # type: ignore[operator]
            for s in own
        )
    }
    assert expected, "the demo should hold a patient for this filter"
    rows = walk_rows(demo, filters)
    assert sorted(row.summary.mrn for row in rows) == sorted(expected)
    assert all(row.sites == sites[row.summary.mrn] for row in rows)


def test_stored_sites_agree_with_the_cohort_assessment_they_were_made_from(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=AS_OF, protocol=Protocol())
    cohort = cohort_as_json_sites(assess_all(engine=demo, as_of=AS_OF, protocol=Protocol()))
    rows = walk_rows(demo, PatientFilters(readiness="not_ready"))
    assert rows
    for row in rows:
        shown = [(s["site"], s["side"], s["stage"], s["readiness"]) for s in row.sites or []]
        made = [(s["site"], s["side"], s["stage"], s["readiness"]) for s in cohort[row.summary.mrn]]
        assert shown == made


def _store(engine: Engine, mrn: str, **changes: str) -> None:
    a = table_of(SiteAssessment).c
    with engine.begin() as conn:
        conn.execute(sa.update(table_of(SiteAssessment)).where(a.mrn == mrn).values(**changes))


def test_the_readiness_filter_reads_the_stored_calls_not_a_fresh_assessment(
    demo: Engine,
) -> None:
    """What the board stores is what the list filters by: a patient whose stored
    sites say ready is found as ready, and one whose stored sites no longer do is not
    (a cohort run would say otherwise for both)."""
    refresh_all(engine=demo, as_of=AS_OF, protocol=Protocol())
    assert "H-READY" in [r.summary.mrn for r in walk_rows(demo, PatientFilters(readiness="ready"))]
    _store(demo, "H-FOP", readiness="ready")
    _store(demo, "H-READY", readiness="not_ready")
    rows = walk_rows(demo, PatientFilters(readiness="ready"))
    listed = [row.summary.mrn for row in rows]
    assert "H-FOP" in listed and "H-READY" not in listed
    fop = next(row for row in rows if row.summary.mrn == "H-FOP")
    assert fop.sites and all(site["readiness"] == "ready" for site in fop.sites)


def test_site_filters_say_when_the_stored_calls_are_not_todays(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=AS_OF, protocol=Protocol())
    today = patient_rows(
        engine=demo, filters=PatientFilters(readiness="ready"), as_of=AS_OF, protocol=Protocol()
    )
    assert today.stale is None and today.assessed_as_of == AS_OF
    later = AS_OF + dt.timedelta(days=3)
    page = patient_rows(
        engine=demo, filters=PatientFilters(readiness="ready"), as_of=later, protocol=Protocol()
    )
    assert page.stale == "Assessed as of 2 Nov 2026; refresh."
    assert "H-READY" in [row.summary.mrn for row in page.rows]  # still the stored calls


def test_site_filters_store_todays_calls_when_none_are_stored(demo: Engine) -> None:
    assert assessment_state(engine=demo).empty
    page = patient_rows(
        engine=demo, filters=PatientFilters(readiness="ready"), as_of=AS_OF, protocol=Protocol()
    )
    assert "H-READY" in [row.summary.mrn for row in page.rows] and page.stale is None
    assert assessment_state(engine=demo).current(AS_OF, Protocol().fingerprint)


def test_a_bad_site_filter_is_refused_in_words(demo: Engine) -> None:
    with pytest.raises(TrackerError, match="Readiness 'maybe' is not a readiness verdict"):
        patient_rows(
            engine=demo, filters=PatientFilters(readiness="maybe"), as_of=AS_OF, protocol=Protocol()
        )


@pytest.fixture
def demo(engine: Engine) -> Engine:
    import_folder(engine, DEMO)
    return engine


def test_name_search_reads_the_prefix_indexes_not_the_whole_table(demo: Engine) -> None:
    """At 100,000 patients a search must not scan the cohort: the plan of the query
    reads the name-order index for the family name, and the indexes on
    lower(given_name) and lower(mrn)."""
    statements: list[tuple[str, object]] = []

    def keep(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        statements.append((statement, params))

    sa.event.listen(demo, "before_cursor_execute", keep)
    try:
        search_patients(engine=demo, search=PatientSearch(text="hughes"))
    finally:
        sa.event.remove(demo, "before_cursor_execute", keep)
    statement, params = statements[0]
    with demo.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if demo.dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        else:
            cursor.execute("SET enable_seqscan = off")  # the demo is too small to need them
            cursor.execute("EXPLAIN " + statement, params)
            plan = " ".join(str(row[0]) for row in cursor.fetchall())
    # the family name is a range of the name-order index (read in the list's order)
    for index in ("name_order", "given_name_folded", "mrn_folded"):
        assert f"ix_patient_{index}" in plan, plan
