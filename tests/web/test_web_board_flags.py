"""The surgeons' board names each site's flags in its Ready and Rescan tables too
(issue 16): a site whose range of motion fell shows "loss of range of motion" in its
Flags cell, a site without flags an empty one (no line on a phone's card), and no
flag is ever shown as its token."""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import (
    V2_AS_OF,
    V2_MRN,
    add_role_users,
    add_v2_patient,
    make_client_on,
    sign_in,
)
from tracker.interchange.csv_import import import_folder
from tracker.services.site_assessments import refresh_all

DAY = V2_AS_OF
ROW = re.compile(
    r'<tr data-mrn="([^"]+)" data-site="(\w+)" data-side="(\w+)"[^>]*>(.*?)</tr>', re.S
)
FLAGS = re.compile(r'<td class="flags" data-label="Flags" data-field="flags">([^<]*)</td>')


def ready_site(mrn: str, site: str, side: str) -> dict[str, list[dict[str, object]]]:
    """A mature site whose delayed-phase ratio fell 6.0 -> 2.5 (Kim: stabilised)."""
    scans = [
        {"mrn": mrn, "date": day, "site": site, "side": side, "phase": "delayed", "ratio": r}
        for day, r in (("2026-03-01", 6.0), ("2026-09-01", 2.5))
    ]
    return {
        "patients.csv": [{"mrn": mrn, "birth_date": "1968-04-05", "sex": "male",
                          "family_name": "Ferreira", "given_name": "Luis",
                          "team": "spinal_unit"}],
        "injuries.csv": [{"mrn": mrn, "kind": "spinal_cord_injury", "date": "2024-12-01"}],
        "imaging.csv": [{"mrn": mrn, "date": "2026-06-01", "modality": "radiograph",
                         "site": site, "side": side, "ho": "present",
                         "cortex": "well_defined"}],
        "bone_scans.csv": scans,
    }  # fmt: skip


def flexion(mrn: str, site: str, side: str, *series: tuple[str, int]) -> list[dict[str, object]]:
    return [
        {"mrn": mrn, "date": day, "site": site, "side": side, "movement": "flexion",
         "degrees": degrees}
        for day, degrees in series
    ]  # fmt: skip


@pytest.fixture
def flagged_board(engine: Engine) -> Engine:
    """R-ROM: a ready right hip whose flexion fell 100 -> 70 degrees (rom_loss);
    R-STILL: a ready left knee without any flag; V-PASSED: a left knee whose forecast
    passed (rescan suggested) and whose flexion fell 130 -> 90. Calls of DAY stored."""
    add_v2_patient(engine)
    files: dict[str, list[dict[str, object]]] = {}
    for part in (ready_site("R-ROM", "hip", "right"), ready_site("R-STILL", "knee", "left")):
        for name, rows in part.items():
            files.setdefault(name, []).extend(rows)
    files["rom.csv"] = [
        *flexion("R-ROM", "hip", "right", ("2026-03-01", 100), ("2026-09-01", 70)),
        *flexion(V2_MRN, "knee", "left", ("2026-02-20", 130), ("2026-07-01", 90)),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name, rows in files.items():
            write_csv(Path(scratch), name, rows)
        import_folder(engine, Path(scratch))
    add_role_users(engine)
    refresh_all(engine=engine, as_of=DAY)
    return engine


def section(text: str, heading_id: str) -> str:
    start = text.index(f'id="{heading_id}"')
    return text[start : text.index("</section>", start)]


def flags_by_site(text: str) -> dict[tuple[str, str, str], str]:
    out = {}
    for mrn, site, side, cells in ROW.findall(text):
        found = FLAGS.findall(cells)
        assert len(found) == 1, f"{mrn} {site} {side}: {len(found)} flags cells in {cells}"
        out[(html.unescape(mrn), site, side)] = html.unescape(found[0])
    return out


def headings(table: str) -> list[str]:
    return re.findall(r'<th scope="col">([^<]*)</th>', table)


def test_ready_and_rescan_tables_show_each_sites_flags_in_words(flagged_board: Engine) -> None:
    with make_client_on(flagged_board, DAY) as client:
        sign_in(client, "surgeon")
        page = client.get("/board")
    assert page.status_code == 200, page.text[:500]
    ready = section(page.text, "soon-h")
    assert "Flags" in headings(ready)
    shown = flags_by_site(ready)
    assert shown[("R-ROM", "hip", "right")] == "loss of range of motion"
    assert shown[("R-STILL", "knee", "left")] == ""  # no flag: an empty cell
    rescan = section(page.text, "rescan-h")
    assert "Flags" in headings(rescan)
    assert flags_by_site(rescan)[(V2_MRN, "knee", "left")] == "loss of range of motion"
    every = section(page.text, "all-h")
    assert all("rom_loss" not in flags for flags in flags_by_site(every).values())
    assert "rom_loss" not in re.sub(r'value="rom_loss"', "", page.text)  # words, not tokens


def test_each_board_cell_of_a_phone_card_is_named_by_its_column(flagged_board: Engine) -> None:
    """On a phone each row is a card (table.cards): every cell but the patient's is a
    line led by its column's name, the Flags line among them."""
    with make_client_on(flagged_board, DAY) as client:
        sign_in(client, "surgeon")
        page = client.get("/board").text
    for heading_id, table_id in (("soon-h", "soon"), ("rescan-h", "rescan"), ("all-h", "sites")):
        part = section(page, heading_id)
        assert f'<table id="{table_id}" class="cards">' in part
        for _, _, _, cells in ROW.findall(part):
            tds = re.findall(r"<td([^>]*)>", cells)
            assert "data-label" not in tds[0]  # the patient leads the card
            assert all("data-label=" in td for td in tds[1:]), cells
            assert 'data-label="Flags"' in cells
