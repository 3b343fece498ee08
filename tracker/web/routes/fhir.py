"""FHIR R4 read access: `GET /fhir/Patient/{mrn}/$everything`.

The patient's whole record as the Bundle `ho-tracker fhir export MRN` writes (the
same service), for signed-in users and bearer tokens alike; each read is logged as
a view of the patient's record. FHIR clients get FHIR answers: 401 (not a redirect
to the sign-in page) without credentials, an OperationOutcome for an unknown mrn.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response

from tracker.errors import NotFound
from tracker.services.interop import fhir_bundle
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
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-found", "diagnostics": str(missing)}],
        }
        return _fhir(outcome, 404)
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="fhir everything")
    return _fhir(bundle)
