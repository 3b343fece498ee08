"""A real PACS for tests and benchmarks: Debian's Orthanc with its DICOMweb plugin,
run as a subprocess on a free loopback port with a configuration of its own.

    with OrthancServer(tmp_path) as pacs:
        pacs.load(make_study("H-1", dt.date(2026, 3, 3)))
        ...  # QIDO-RS at pacs.dicomweb_url, Orthanc's REST API at pacs.rest_url

`.stop()` keeps the storage, so `.start()` again serves the same studies on the
same port (a PACS restart). Nothing here reads /etc/orthanc: the configuration is
written into the work folder.

How Debian's Orthanc (1.10, DICOMweb plugin 1.7) pages, measured: with its option
`LimitFindResults` = N a find answers N + 1 matches (so `OrthancServer(limit_find_results=L)`
configures L - 1, and a query answers at most L); `offset` is applied within that
capped answer, so no offset reaches past it (the "server that ignores offset": only
a narrower StudyDate window does); no Warning header says the answer was cut; and
answers are in no particular order. With no cap, QIDO-RS `limit` and `offset` page
as they should.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

# Modality -> the SOP class of an image of that modality (PS3.4 annex B).
SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "NM": "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image Storage
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def missing() -> str | None:
    """Why Orthanc cannot run here (a reason to skip), or None when it can."""
    if not ORTHANC.exists():
        return f"{ORTHANC} is missing: apt-get install orthanc orthanc-dicomweb"
    if not DICOMWEB_PLUGIN.exists():
        return f"{DICOMWEB_PLUGIN} is missing: apt-get install orthanc-dicomweb"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancServer:
    """One Orthanc process serving `workdir`; `limit_find_results` is the most
    matches one find (QIDO-RS) answers, as a real PACS caps them (0: no cap; 1 cannot
    be set, see the module's docstring)."""

    def __init__(self, workdir: Path, limit_find_results: int = 0, *, timeout: float = 30.0):
        if limit_find_results == 1 or limit_find_results < 0:
            raise ValueError("Orthanc can cap a find at 0 (no cap) or 2 or more results")
        self.workdir = Path(workdir)
        self.limit_find_results = limit_find_results
        self.timeout = timeout
        self.port = free_port()
        self.rest_url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.rest_url}/dicom-web"
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None

    # configuration and process ---------------------------------------------------

    def config(self) -> dict[str, Any]:
        storage = self.workdir / "storage"
        return {
            "Name": "ho-tracker-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "TemporaryDirectory": str(self.workdir / "tmp"),
            "StorageCompression": False,
            "StoreMD5ForAttachments": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "HttpCompressionEnabled": False,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "RegisteredUsers": {},
            # Orthanc answers one more than its option says (see the module's docstring)
            "LimitFindResults": max(self.limit_find_results - 1, 0),
            "LimitFindInstances": max(self.limit_find_results - 1, 0),
            "SaveJobs": False,
            "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }

    def start(self) -> OrthancServer:
        if self.process is not None and self.process.poll() is None:
            return self
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(ORTHANC), str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"Orthanc exited at start:\n{self.log_tail()}")
            try:
                self.get_json("/system", timeout=1.0)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"Orthanc did not answer GET /system within {self.timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the process; the storage stays, so `start` serves the same studies."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def remove(self) -> None:
        """Stop and delete the storage (for benchmarks that reuse a folder)."""
        self.stop()
        shutil.rmtree(self.workdir / "storage", ignore_errors=True)

    # REST --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        request = urllib.request.Request(
            self.rest_url + path,
            data=body,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        return self.request("GET", path, timeout=timeout)

    def load(self, item: Dataset | bytes | str | Path) -> dict[str, Any]:
        """Store one instance (POST /instances); Orthanc's answer (ID, ParentStudy,
        Status "Success" or "AlreadyStored")."""
        answer = self.request("POST", "/instances", dicom_bytes(item), "application/dicom")
        assert isinstance(answer, dict), answer
        return answer

    def load_many(
        self, items: Iterable[Dataset | bytes | str | Path], threads: int = 4
    ) -> list[dict[str, Any]]:
        """Store many instances over a few connections at once, in order."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(self.load, items))

    def studies(self) -> list[str]:
        """Orthanc's ids of every stored study."""
        answer = self.get_json("/studies")
        assert isinstance(answer, list)
        return answer


# DICOM instances -----------------------------------------------------------------


def dicom_bytes(item: Dataset | bytes | str | Path) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str | Path):
        return Path(item).read_bytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, item, enforce_file_format=True)
    return buffer.getvalue()


def _da(date: dt.date | str) -> str:
    return date.strftime("%Y%m%d") if isinstance(date, dt.date) else date


_uid_lock = threading.Lock()


def _uid() -> UID:
    with _uid_lock:  # generate_uid is random; the lock only keeps threads tidy
        return generate_uid()


def make_study(
    mrn: str,
    study_date: dt.date | str,
    modality: str = "CR",
    body_part: str | None = "HIP",
    laterality: str | None = "R",
    accession: str | None = None,
    study_uid: str | None = None,
    patient_name: str = "Test^Patient",
) -> Dataset:
    """One small valid instance (a study of one series of one image, 2x2 pixels) made
    with pydicom, for patient `mrn` on `study_date`; new UIDs unless `study_uid` is
    given (then it joins that study as a new series). `None` leaves an element out."""
    sop_class = UID(SOP_CLASS.get(modality, SECONDARY_CAPTURE))
    sop_instance = _uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = study_uid or _uid()
    ds.SeriesInstanceUID = _uid()
    ds.PatientID = mrn
    ds.PatientName = patient_name
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = _da(study_date)
    ds.StudyTime = "101500"
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.AccessionNumber = accession or ""
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"{modality} {body_part or ''}".strip()
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if laterality is not None:
        ds.Laterality = laterality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(8)
    return ds


def rewrite_testdata(
    name: str,
    mrn: str,
    study_date: dt.date | str,
    accession: str | None = None,
    body_part: str | None = "HIP",
    laterality: str | None = "R",
    study_uid: str | None = None,
) -> Dataset:
    """One of pydicom's bundled test files (`CT_small.dcm`, `MR_small.dcm`, ...)
    rewritten as patient `mrn`'s study on `study_date`, with new UIDs (so the same
    file can be loaded many times as different studies)."""
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom has no test file {name!r}")
    ds = pydicom.dcmread(path)
    ds.PatientID = mrn
    ds.PatientName = "Test^Patient"
    ds.StudyDate = _da(study_date)
    ds.SeriesDate = ds.StudyDate
    ds.AccessionNumber = accession or ""
    for keyword, value in (("BodyPartExamined", body_part), ("Laterality", laterality)):
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.StudyInstanceUID = study_uid or _uid()
    ds.SeriesInstanceUID = _uid()
    ds.SOPInstanceUID = _uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def studies_of(items: Sequence[Dataset]) -> set[str]:
    """The StudyInstanceUIDs of some instances."""
    return {str(ds.StudyInstanceUID) for ds in items}
