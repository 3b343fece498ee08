"""A bulk import refreshes the stored site assessments of the patients it added records
to, so they reach the board and the patient search at once (issue 14)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import DEMO
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.services import imports
from tracker.services.imports import import_records
from tracker.services.site_assessments import refresh_all
from tracker.store.models import SiteAssessment, table_of

AS_OF = dt.date(2026, 11, 2)
a = table_of(SiteAssessment).c


def stored_at(engine: Engine) -> dict[str, set[dt.datetime]]:
    """When each patient's stored sites were assessed."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.mrn, a.assessed_at)).all()
    found: dict[str, set[dt.datetime]] = {}
    for mrn, at in rows:
        found.setdefault(mrn, set()).add(at)
    return found


def new_patient_folder(folder: Path, mrn: str = "N-1") -> Path:
    """A patient with HO at the right hip on a radiograph."""
    header = (DEMO / "imaging.csv").read_text().splitlines()[0].split(",")
    write_csv(
        folder,
        "patients.csv",
        [{"mrn": mrn, "birth_date": "1980-02-03", "sex": "male", "family_name": "New",
          "given_name": "Ned", "team": ""}],
    )  # fmt: skip
    write_csv(folder, "injuries.csv", [{"mrn": mrn, "kind": "burn", "date": "2026-06-01"}])
    finding = {"mrn": mrn, "date": "2026-09-10", "modality": "radiograph", "site": "hip",
               "side": "right", "ho": "present", "soft_tissue": "mass", "calcification": "central",
               "cortex": "none", "trabeculae": "no", "size_mm": "55"}  # fmt: skip
    write_csv(folder, "imaging.csv", [finding], header=header)
    return folder


@pytest.fixture
def assessed(engine: Engine) -> Engine:
    """The demo, every site's assessment stored as of AS_OF."""
    import_folder(engine, DEMO)
    refresh_all(engine=engine, as_of=AS_OF, protocol=Protocol())
    return engine


def test_an_import_stores_the_new_patients_sites_and_leaves_the_others(
    assessed: Engine, tmp_path: Path
) -> None:
    before = stored_at(assessed)
    summary = import_records(engine=assessed, folder=new_patient_folder(tmp_path), today=AS_OF)
    assert summary.mrns_with_new_rows == ["N-1"]
    after = stored_at(assessed)
    assert "N-1" in after
    assert {mrn: at for mrn, at in after.items() if mrn != "N-1"} == before


def test_an_import_of_many_patients_assesses_everyone_in_one_run(
    assessed: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "ONE_AT_A_TIME", 0)
    before = stored_at(assessed)
    import_records(engine=assessed, folder=new_patient_folder(tmp_path), today=AS_OF)
    after = stored_at(assessed)
    assert "N-1" in after
    assert all(after[mrn].isdisjoint(at) for mrn, at in before.items())  # all stored again


def test_nothing_is_stored_by_an_import_before_the_first_refresh(
    engine: Engine, tmp_path: Path
) -> None:
    import_records(engine=engine, folder=new_patient_folder(tmp_path), today=AS_OF)
    assert stored_at(engine) == {}  # the board stores everyone's on first use


def test_a_failed_refresh_leaves_the_import_standing(
    assessed: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: object) -> int:
        raise RuntimeError("assessment failed")

    monkeypatch.setattr(imports, "refresh_patient", broken)
    summary = import_records(engine=assessed, folder=new_patient_folder(tmp_path), today=AS_OF)
    assert summary.added["patients.csv"] == 1
    with assessed.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patient WHERE mrn = 'N-1'")).scalar() == 1
    assert "N-1" not in stored_at(assessed)
