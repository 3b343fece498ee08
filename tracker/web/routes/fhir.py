"""FHIR R4 read access: `GET /fhir/Patient/{mrn}/$everything`, and the imaging
reminders alone as ServiceRequests: `GET /fhir/ServiceRequest?patient=MRN&status=active`
(a searchset Bundle; `status` optional, a comma list of FHIR request statuses; without
`patient`, every patient's, each patient shown logged as viewed).

The patient's whole record as the Bundle `ho-tracker fhir export MRN` writes (the
same service), for signed-in users and bearer tokens alike; each read is logged as
a view of the patient's record. FHIR clients get FHIR answers: 401 (not a redirect
to the sign-in page) without credentials, an OperationOutcome for an unknown mrn
(404) or a bad search parameter (400, naming it).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from tracker.errors import NotFound
from tracker.interchange.fhir_requests import REQUEST_STATUSES
from tracker.services.audit import record_views
from tracker.services.interop import fhir_bundle, fhir_service_requests
from tracker.web.auth import NotSignedIn, Viewer
from tracker.web.deps import EngineDep, api_viewer
from tracker.web.identity import log_view

FHIR_JSON = "application/fhir+json"


def fhir_viewer(request: Request) -> Viewer:
    try:
        return api_viewer(request)
    except NotSignedIn:
        raise HTTPException(
            status_code=401,
            detail="Sign in, or send Authorization: Bearer TOKEN (ho-tracker users token NAME).",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None


FhirViewer = Annotated[Viewer, Depends(fhir_viewer)]
Mrn = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$")]

router = APIRouter(prefix="/fhir", tags=["fhir"])


def _fhir(document: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(document, ensure_ascii=False), status, media_type=FHIR_JSON)


@router.get(
    "/Patient/{mrn}/$everything",
    summary="A patient's whole record as a FHIR R4 Bundle",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}, 401: {}, 404: {}},
)
def patient_everything(
    mrn: Mrn, request: Request, viewer: FhirViewer, engine: EngineDep
) -> Response:
    try:
        bundle = fhir_bundle(engine=engine, mrn=mrn, protocol=request.app.state.protocol)
    except NotFound as missing:
        return _fhir(_outcome("not-found", str(missing)), 404)
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="fhir everything")
    return _fhir(bundle)


def _outcome(code: str, words: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": words}],
    }


@router.get(
    "/ServiceRequest",
    summary="A patient's imaging follow-up recommendations as FHIR R4 ServiceRequests",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}, 400: {}, 401: {}, 404: {}},
)
def service_requests(
    request: Request,
    viewer: FhirViewer,
    engine: EngineDep,
    patient: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if patient is not None and (not patient or any(ord(c) < 0x20 for c in patient)):
        words = "The patient parameter must be the patient's mrn (?patient=MRN)."
        return _fhir(_outcome("value", words), 400)
    statuses = None
    if status is not None:
        statuses = [s.strip() for s in status.split(",")]
        wrong = [s for s in statuses if s not in REQUEST_STATUSES]
        if wrong:
            words = (
                f"The status parameter must be FHIR request statuses separated by commas "
                f"({', '.join(REQUEST_STATUSES)}); '{wrong[0][:40]}' is not one."
            )
            return _fhir(_outcome("value", words), 400)
    try:
        bundle, shown = fhir_service_requests(
            engine=engine, mrn=patient, statuses=statuses, protocol=request.app.state.protocol
        )
    except NotFound as missing:
        return _fhir(_outcome("not-found", str(missing)), 404)
    if patient is not None:
        log_view(engine=engine, viewer=viewer, mrn=patient, what="fhir service requests")
    elif shown:  # every patient's: a view of each patient shown
        record_views(
            engine=engine,
            actor=viewer.username,
            mrns=shown,
            what="fhir service requests",
            search={"status": status} if status else None,
        )
    return _fhir(bundle)
