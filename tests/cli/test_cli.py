"""The command line as a user meets it: exit codes, stderr sentences, tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.interchange.test_csv_import import good_folder
from tracker.cli import app, run
from tracker.store import database


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", url)
    return url


def _commands(typer_app, prefix=()):  # type: ignore[no-untyped-def]
    for command in typer_app.registered_commands:
        yield (*prefix, command.name or command.callback.__name__)
    for group in typer_app.registered_groups:
        yield (*prefix, group.name)
        yield from _commands(group.typer_instance, (*prefix, group.name))


@pytest.mark.parametrize("command", sorted(set(_commands(app))), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...], capsys: pytest.CaptureFixture) -> None:
    assert run([*command, "--help"]) == 0
    assert "Usage: ho-tracker" in capsys.readouterr().out


def test_import_then_show_tells_the_story_in_date_order(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run(["import", str(good_folder(tmp_path / "in"))]) == 0
    assert "12 rows added" in capsys.readouterr().out
    assert run(["patient", "show", "A1"]) == 0
    shown = capsys.readouterr().out
    order = [
        "spinal_cord_injury",
        "ultrasound",
        "hip left: HO present",
        "radiograph [X1]",
        "ratio 6.10",
        "etidronate treatment started",
        "resection hip left",
    ]
    positions = [shown.index(text) for text in order]
    assert positions == sorted(positions)
    assert "alp 180 U/L (ref 30-130) HIGH" in shown


def test_patients_list_filters(db_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run(["import", str(good_folder(tmp_path / "in"))])
    capsys.readouterr()
    assert run(["patients", "list", "--ho"]) == 0
    listed = capsys.readouterr().out
    assert "A1" in listed and "A2" not in listed and "1 patients" in listed
    assert run(["patients", "list", "--injury", "hip_arthroplasty"]) == 0
    listed = capsys.readouterr().out
    assert "A2" in listed and "A1 " not in listed
    assert run(["patients", "list", "--search", "okaf"]) == 0
    assert "OKAFOR, Chidi" in capsys.readouterr().out


def test_bad_import_exits_2_listing_every_problem_on_stderr(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = good_folder(tmp_path / "in")
    labs = folder / "labs.csv"
    labs.write_text(labs.read_text().replace("alp,180", "alkaline,-"))
    assert run(["import", str(folder)]) == 2
    errors = capsys.readouterr().err
    assert "labs.csv:2: analyte: 'alkaline' is not one of" in errors
    assert "labs.csv:2: value: '-' is not a number" in errors
    assert "Nothing was written" in errors
    assert "Traceback" not in errors


def test_unknown_patient_is_one_sentence_and_exit_2(db_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["patient", "show", "ZZZ"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "No patient with mrn 'ZZZ'; check the number or import the patient."
    )


def test_database_url_option_and_refusal_of_an_unmigrated_database(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.make_engine(url)
    database.upgrade(engine)
    database.downgrade(engine, "base")
    assert run(["--database-url", url, "patients", "list"]) == 2
    assert "run `ho-tracker db upgrade`" in capsys.readouterr().err
    assert run(["--database-url", url, "db", "upgrade"]) == 0
    assert run(["--database-url", url, "patients", "list"]) == 0


def test_db_downgrade_and_upgrade(engine: Engine, capsys: pytest.CaptureFixture) -> None:
    url = engine.url.render_as_string(hide_password=False)
    assert run(["--database-url", url, "db", "downgrade", "--revision", "base"]) == 0
    assert "base (empty)" in capsys.readouterr().out
    assert run(["--database-url", url, "db", "upgrade"]) == 0
    assert f"revision {database.head_revision()}" in capsys.readouterr().out


def test_export_writes_every_interchange_file(db_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run(["import", str(good_folder(tmp_path / "in"))])
    assert run(["export", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "bone_scans.csv",
        "exams.csv",
        "imaging.csv",
        "injuries.csv",
        "labs.csv",
        "patients.csv",
        "procedures.csv",
        "rom.csv",
        "treatments.csv",
    ]


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["patients", "list"]])
def test_a_bad_setting_in_the_environment_is_named_not_a_traceback(
    command: list[str],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("HO_TRACKER_SMTP_PORT", "abc")
    assert run(command) == 2
    err = capsys.readouterr().err
    assert "HO_TRACKER_SMTP_PORT" in err and "valid integer" in err
    assert "Traceback" not in err
