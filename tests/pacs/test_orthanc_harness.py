"""The Orthanc harness itself: studies loaded are found by QIDO-RS, the cap on
answers holds, and a restart keeps the studies."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pydicom

from tests.orthanc import OrthancServer, dicom_bytes, make_study, rewrite_testdata

STUDY_UID = "0020000D"
STUDY_DATE = "00080020"


def qido(server: OrthancServer, query: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.dicomweb_url}/{query}", timeout=30) as response:
        answer = json.loads(response.read() or b"[]")
    assert isinstance(answer, list)
    return answer


def uids(answer: list[dict[str, Any]]) -> set[str]:
    return {match[STUDY_UID]["Value"][0] for match in answer}


def test_loaded_studies_are_found_by_patient_id(orthanc: OrthancServer) -> None:
    made = make_study("H-ORTH-1", dt.date(2026, 3, 3), accession="ACC-1")
    bundled = rewrite_testdata("CT_small.dcm", "H-ORTH-1", "20260304", accession="ACC-2")
    other = make_study("H-ORTH-2", dt.date(2026, 3, 3))
    assert orthanc.load(made)["Status"] == "Success"
    assert orthanc.load(dicom_bytes(bundled))["Status"] == "Success"
    orthanc.load_many([other])

    found = qido(orthanc, "studies?PatientID=H-ORTH-1")
    assert uids(found) == {made.StudyInstanceUID, bundled.StudyInstanceUID}
    assert sorted(m[STUDY_DATE]["Value"][0] for m in found) == ["20260303", "20260304"]
    assert orthanc.load(made)["Status"] == "AlreadyStored"  # loading again adds nothing

    series = qido(
        orthanc,
        "series?PatientID=H-ORTH-1&StudyDate=20260303"
        "&includefield=BodyPartExamined&includefield=Laterality",
    )
    assert len(series) == 1
    dataset = pydicom.Dataset.from_json(series[0])
    assert (dataset.Modality, dataset.BodyPartExamined, dataset.Laterality) == ("CR", "HIP", "R")


def test_the_cap_on_answers_holds(orthanc_factory: Callable[..., OrthancServer]) -> None:
    capped = orthanc_factory(limit_find_results=2)
    studies = [make_study("H-ORTH-CAP", dt.date(2026, 3, day)) for day in range(1, 6)]
    capped.load_many(studies)
    assert len(capped.studies()) == 5
    assert len(qido(capped, "studies?PatientID=H-ORTH-CAP")) == 2
    # a narrower date window is the way to the rest
    window = qido(capped, "studies?PatientID=H-ORTH-CAP&StudyDate=20260305-20260305")
    assert uids(window) == {studies[4].StudyInstanceUID}


def test_a_restart_keeps_the_studies(orthanc: OrthancServer) -> None:
    study = rewrite_testdata("MR_small.dcm", "H-ORTH-R", dt.date(2026, 2, 1), body_part="KNEE")
    orthanc.load(study)
    url = orthanc.dicomweb_url
    orthanc.stop()
    assert not orthanc.running
    orthanc.start()
    assert orthanc.dicomweb_url == url
    assert uids(qido(orthanc, "studies?PatientID=H-ORTH-R")) == {study.StudyInstanceUID}
