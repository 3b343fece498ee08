"""The bedside examination on the surgeons' board and the worklist (issue 16): a site
whose range of motion fell by a fifth or more shows "loss of range of motion" on the
board and the board's flag filter finds it; the worklist's "Record it" links of the
bedside rules open the imaging form with the reminder's site and side (suspected HO)
or a hip ultrasound of both hips (a DVT query) already filled in."""

from __future__ import annotations

import datetime as dt
import html
import re
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import add_role_users, make_client_on, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.services.site_assessments import refresh_all

DAY = dt.date(2026, 10, 26)
ROW = re.compile(
    r'<tr data-mrn="([^"]+)" data-site="(\w+)" data-side="(\w+)"[^>]*>(.*?)</tr>', re.S
)
RECORD_IT = re.compile(r'<a class="button" href="([^"]+)">Record it</a>')


def import_rows(engine: Engine, files: dict[str, list[dict[str, object]]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for name, rows in files.items():
            write_csv(Path(scratch), name, rows)
        import_folder(engine, Path(scratch))


def patient(mrn: str, family: str) -> dict[str, object]:
    return {"mrn": mrn, "birth_date": "1975-05-06", "sex": "male", "family_name": family,
            "given_name": "Sam", "team": "spinal_unit"}  # fmt: skip


def sci(mrn: str) -> dict[str, object]:
    return {"mrn": mrn, "kind": "spinal_cord_injury", "date": "2026-01-05", "notes": ""}


def radiograph(mrn: str, site: str, side: str) -> dict[str, object]:
    return {"mrn": mrn, "date": "2026-03-02", "modality": "radiograph", "site": site,
            "side": side, "ho": "present", "calcification": "peripheral"}  # fmt: skip


def flexion(on: str, degrees: int) -> dict[str, object]:
    return {"mrn": "B-ROM", "date": on, "site": "hip", "side": "right", "movement": "flexion",
            "degrees": degrees}  # fmt: skip


@pytest.fixture
def rom_board(engine: Engine) -> Engine:
    """B-ROM: HO at the right hip whose flexion fell 100 -> 70 degrees (-30%);
    B-STILL: HO at the left knee and no range of motion measured. Calls of DAY stored."""
    import_rows(
        engine,
        {
            "patients.csv": [patient("B-ROM", "Mensah"), patient("B-STILL", "Larsen")],
            "injuries.csv": [sci("B-ROM"), sci("B-STILL")],
            "imaging.csv": [
                radiograph("B-ROM", "hip", "right"),
                radiograph("B-STILL", "knee", "left"),
            ],
            "rom.csv": [flexion("2026-03-02", 100), flexion("2026-06-01", 70)],
        },
    )
    add_role_users(engine)
    refresh_all(engine=engine, as_of=DAY)
    return engine


def board_rows(text: str) -> dict[tuple[str, str, str], str]:
    return {(html.unescape(m), s, d): body for m, s, d, body in ROW.findall(text)}


def test_board_shows_loss_of_range_of_motion_in_words_and_filters_on_it(
    rom_board: Engine,
) -> None:
    with make_client_on(rom_board, DAY) as client:
        sign_in(client, "surgeon")
        page = client.get("/board")
        assert page.status_code == 200, page.text[:500]
        rows = board_rows(page.text)
        assert "loss of range of motion" in rows[("B-ROM", "hip", "right")]
        assert "loss of range of motion" not in rows[("B-STILL", "knee", "left")]
        assert "rom_loss" not in re.sub(r'value="rom_loss"', "", page.text)  # words only
        # the flag filter offers it, in words
        assert '<option value="rom_loss" >loss of range of motion</option>' in page.text
        filtered = client.get("/board?stage=&readiness=&flag=rom_loss")
        assert filtered.status_code == 200, filtered.text[:500]
        assert '<option value="rom_loss" selected>' in filtered.text
        assert set(board_rows(filtered.text)) == {("B-ROM", "hip", "right")}
        report = client.get(f"/board/report.html?as_of={DAY.isoformat()}")
        assert report.status_code == 200
        assert 'class="flag rom_loss">loss of range of motion</span>' in report.text


# --- the worklist's links of the bedside rules -----------------------------------------


@pytest.fixture
def bedside_ward(engine: Engine) -> Engine:
    """W-SCI (spinal cord injury 2026-10-01): swelling at the right hip on 2026-10-20
    (image it by 2026-10-22), and a knee Doppler for a DVT query on 2026-10-24 (image
    both hips); reminders planned as of DAY."""
    import_rows(
        engine,
        {
            "patients.csv": [patient("W-SCI", "Haddad")],
            "injuries.csv": [
                {"mrn": "W-SCI", "kind": "spinal_cord_injury", "date": "2026-10-01", "notes": ""}
            ],
            "exams.csv": [
                {
                    "mrn": "W-SCI",
                    "date": "2026-10-20",
                    "site": "hip",
                    "side": "right",
                    "swelling": "yes",
                }
            ],
            "imaging.csv": [
                {
                    "mrn": "W-SCI",
                    "date": "2026-10-24",
                    "modality": "ultrasound",
                    "site": "knee",
                    "side": "left",
                    "ho": "absent",
                    "indication": "dvt_query",
                }
            ],
        },
    )
    add_role_users(engine)
    plan(engine=engine, as_of=DAY, protocol=Protocol())
    return engine


def reminder_row(text: str, rule_words: str) -> str:
    """The worklist row (unescaped) of W-SCI's one reminder of this rule."""
    rows = re.findall(r'<tr id="reminder-\d+".*?</tr>', text, re.S)
    found = [r for r in rows if f'<td data-label="Reminder">{rule_words}<br>' in r]
    assert len(found) == 1, (rule_words, rows)
    return found[0]


def record_link(row: str) -> str:
    found = RECORD_IT.search(row)
    assert found, f"no Record it link in {row}"
    return found.group(1)


def selected(text: str, name: str) -> str:
    """The value a select of the form shows (its selected option), "" if none."""
    found = re.search(rf'<select [^>]*name="{re.escape(name)}"[^>]*>(.*?)</select>', text, re.S)
    assert found, f"the form has no {name}"
    chosen = re.search(r'<option value="([^"]*)" selected>', found.group(1))
    return chosen.group(1) if chosen else ""


def test_worklist_links_of_the_bedside_rules_open_prefilled_imaging_forms(
    bedside_ward: Engine,
) -> None:
    with make_client_on(bedside_ward, DAY) as client:
        sign_in(client, "clinician")
        page = client.get("/worklist")
        assert page.status_code == 200, page.text[:500]
        text = html.unescape(page.text)
        suspected = reminder_row(text, "imaging for suspected HO")
        assert "swelling at the bedside on 20 Oct 2026: image the right hip" in suspected
        dvt = reminder_row(text, "hip ultrasound for a DVT query (HO mimics DVT)")
        assert (
            "ultrasound for a DVT query on 24 Oct 2026: image both hips with ultrasound "
            "(HO mimics DVT)"
        ) in dvt
        assert "dvt_query" not in re.sub(r'(name|value)="[^"]*"', "", suspected + dvt)

        form = client.get(record_link(suspected))
        assert form.status_code == 200, form.text[:500]
        assert selected(form.text, "findings[0].site") == "hip"
        assert selected(form.text, "findings[0].side") == "right"
        assert "imaging for suspected HO at right hip" in html.unescape(form.text)

        link = record_link(dvt)
        assert "modality=ultrasound" in link and "site=hip" in link
        form = client.get(link)
        assert form.status_code == 200, form.text[:500]
        assert selected(form.text, "modality") == "ultrasound"
        assert selected(form.text, "findings[0].site") == "hip"
        assert selected(form.text, "findings[1].site") == "hip"
        sides = {selected(form.text, f"findings[{i}].side") for i in (0, 1)}
        assert sides == {"left", "right"}
