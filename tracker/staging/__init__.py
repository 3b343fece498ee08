"""The pure clinical core: patient records in, assessment out (model-spec 3-8).

Nothing here touches a database, a file or the network; `tracker.store` builds the
records, and every caller goes through `assess_patient` (or the cohort path,
which must give the same answers).
"""

from tracker.staging.activity import Activity, DailyRatio, classify_activity, delayed_series
from tracker.staging.assess import (
    MODEL_VERSION,
    PatientAssessment,
    SiteAssessment,
    assess_patient,
    to_json,
)
from tracker.staging.flags import Flag
from tracker.staging.forecast import Forecast, RecoverySeries, forecast_recoveries
from tracker.staging.readiness import Criterion, Readiness, Status
from tracker.staging.records import (
    BoneScan,
    Course,
    Exam,
    Finding,
    Injury,
    Lab,
    PatientRecords,
    Procedure,
    RangeOfMotion,
)
from tracker.staging.stage import Stage

__all__ = [
    "MODEL_VERSION",
    "Activity",
    "BoneScan",
    "Course",
    "Criterion",
    "DailyRatio",
    "Exam",
    "Finding",
    "Flag",
    "Forecast",
    "Injury",
    "Lab",
    "PatientAssessment",
    "PatientRecords",
    "Procedure",
    "RangeOfMotion",
    "Readiness",
    "RecoverySeries",
    "SiteAssessment",
    "Stage",
    "Status",
    "assess_patient",
    "classify_activity",
    "delayed_series",
    "forecast_recoveries",
    "to_json",
]
