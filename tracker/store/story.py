"""Load one patient's whole story in a fixed number of queries (no N+1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from tracker.errors import NotFound
from tracker.store.models import (
    BoneScanMeasurement,
    ClinicalExam,
    ImagingStudy,
    Injury,
    LabResult,
    Patient,
    Procedure,
    RangeOfMotion,
    SiteFinding,
    TreatmentCourse,
)


@dataclass
class Study:
    """An imaging study with the findings it recorded, site by site."""

    study: ImagingStudy
    findings: list[SiteFinding] = field(default_factory=list)


@dataclass
class PatientStory:
    patient: Patient
    injuries: list[Injury]
    studies: list[Study]
    bone_scans: list[BoneScanMeasurement]
    courses: list[TreatmentCourse]
    procedures: list[Procedure]
    labs: list[LabResult]
    # the bedside examination (model-spec v2, section 10): by date, site, side (movement)
    exams: list[ClinicalExam] = field(default_factory=list)
    range_of_motion: list[RangeOfMotion] = field(default_factory=list)


def load_story(session: Session, mrn: str) -> PatientStory:
    """Everything recorded for `mrn`, each kind in date order; NotFound if unknown."""
    patient = session.exec(
        select(Patient).where(Patient.mrn == mrn, col(Patient.voided_at).is_(None))
    ).first()
    if patient is None:
        raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")
    pid = patient.id
    studies = session.exec(
        select(ImagingStudy)
        .where(ImagingStudy.patient_id == pid, col(ImagingStudy.voided_at).is_(None))
        .order_by(col(ImagingStudy.date), col(ImagingStudy.modality), col(ImagingStudy.id))
    ).all()
    findings = session.exec(
        select(SiteFinding)
        .join(ImagingStudy)
        # voided records are invisible to every reader (issue 6)
        .where(ImagingStudy.patient_id == pid, col(ImagingStudy.voided_at).is_(None))
        .where(col(SiteFinding.voided_at).is_(None))
        .order_by(col(SiteFinding.site), col(SiteFinding.side))
    ).all()
    by_study = {s.id: Study(s) for s in studies}
    for finding in findings:
        by_study[finding.study_id].findings.append(finding)
    return PatientStory(
        patient=patient,
        injuries=list(
            session.exec(
                select(Injury)
                .where(Injury.patient_id == pid, col(Injury.voided_at).is_(None))
                .order_by(col(Injury.date))
            ).all()
        ),
        studies=list(by_study.values()),
        bone_scans=list(
            session.exec(
                select(BoneScanMeasurement)
                .where(
                    BoneScanMeasurement.patient_id == pid,
                    col(BoneScanMeasurement.voided_at).is_(None),
                )
                .order_by(
                    col(BoneScanMeasurement.date),
                    col(BoneScanMeasurement.site),
                    col(BoneScanMeasurement.side),
                    col(BoneScanMeasurement.phase),
                )
            ).all()
        ),
        courses=list(
            session.exec(
                select(TreatmentCourse)
                .where(TreatmentCourse.patient_id == pid, col(TreatmentCourse.voided_at).is_(None))
                .order_by(col(TreatmentCourse.start_date))
            ).all()
        ),
        procedures=list(
            session.exec(
                select(Procedure)
                .where(Procedure.patient_id == pid, col(Procedure.voided_at).is_(None))
                .order_by(col(Procedure.date))
            ).all()
        ),
        labs=list(
            session.exec(
                select(LabResult)
                .where(LabResult.patient_id == pid, col(LabResult.voided_at).is_(None))
                .order_by(col(LabResult.date), col(LabResult.analyte))
            ).all()
        ),
        exams=list(
            session.exec(
                select(ClinicalExam)
                .where(ClinicalExam.patient_id == pid, col(ClinicalExam.voided_at).is_(None))
                .order_by(col(ClinicalExam.date), col(ClinicalExam.site), col(ClinicalExam.side))
            ).all()
        ),
        range_of_motion=list(
            session.exec(
                select(RangeOfMotion)
                .where(RangeOfMotion.patient_id == pid, col(RangeOfMotion.voided_at).is_(None))
                .order_by(
                    col(RangeOfMotion.date),
                    col(RangeOfMotion.site),
                    col(RangeOfMotion.side),
                    col(RangeOfMotion.movement),
                )
            ).all()
        ),
    )
