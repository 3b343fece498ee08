"""PACS feed benchmark: a poll of a real PACS against the bare QIDO-RS queries, in one run.

Debian's Orthanc with its DICOMweb plugin (`tests/orthanc.py`) holds 10,000 studies
of 2,000 tracked patients (5 each, in the year before today) and 500 studies of
patients the tracker does not know; the tracked patients are imported into a fresh
tracker database (patients.csv and injuries.csv through `import_folder`).

floor = the QIDO-RS queries the poll makes (the same levels, filters, date windows,
        fields, limits and offsets, recorded from a first poll that is not timed),
        sent through dicomweb-client one after another, the answers parsed as JSON
        and nothing else;
ours  = `tracker.pacs.poll` into a fresh copy of the tracker database: those
        queries, paging, the mapping of every answer and the writes (imaging
        studies and pending sites), its position and report.
Target: ours / floor <= 1.5 at 10,000 studies. Loading Orthanc (a few threads of
POST /instances) is timed apart and is not part of the ratio. Each of floor and
ours is the best of `--repeat` runs, taken in turns.

    python bench/pacs_bench.py                # 10,000 studies, 2,000 patients
    python bench/pacs_bench.py --smoke        # CI: 200 studies, 40 patients
    python bench/pacs_bench.py --page-limit 100 --server-limit 100   # a capped PACS
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.orthanc import OrthancServer, make_study, missing  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.pacs import PacsSettings, PollReport, poll  # noqa: E402
from tracker.store import database  # noqa: E402

MODALITIES = ["CR", "CR", "CR", "DX", "CT", "MR", "NM", "US"]
BODY_PARTS = ["HIP", "HIP", "KNEE", "ELBOW", "SHOULDER", "PELVIS"]
SIDES = ["R", "L"]


@dataclass(frozen=True)
class Query:
    """One QIDO-RS request as sent: the resource path under the DICOMweb root and its
    query parameters in order."""

    path: str
    params: tuple[tuple[str, str], ...]


# the PACS --------------------------------------------------------------------------


def studies_for(
    patients: int, per_patient: int, unknown: int, since: dt.date, today: dt.date, seed: int
) -> tuple[list[str], list[Any]]:
    """The tracked MRNs and the instances (one per study) of them and of unknown
    patients, on days from `since` to the day before `today`."""
    rng = random.Random(seed)
    days = (today - since).days
    mrns = [f"PB-{n:06d}" for n in range(1, patients + 1)]
    owners = [mrn for mrn in mrns for _ in range(per_patient)]
    owners += [f"UNKNOWN-{n:06d}" for n in range(1, unknown + 1)]
    instances = []
    for number, mrn in enumerate(owners, start=1):
        instances.append(
            make_study(
                mrn,
                since + dt.timedelta(days=rng.randrange(days)),
                modality=rng.choice(MODALITIES),
                body_part=rng.choice(BODY_PARTS),
                laterality=rng.choice(SIDES),
                accession=f"PB{number:08d}",
            )
        )
    rng.shuffle(instances)  # the PACS receives them in no patient's order
    return mrns, instances


def tracker_database(folder: Path, mrns: list[str], since: dt.date) -> Path:
    """A migrated SQLite database holding the tracked patients (each with an injury
    before the window), imported as interchange CSVs."""
    csv = folder / "csv"
    csv.mkdir(parents=True)
    injury = (since - dt.timedelta(days=30)).isoformat()
    (csv / "patients.csv").write_text(
        "mrn,team\n" + "".join(f"{mrn},\n" for mrn in mrns), encoding="utf-8"
    )
    (csv / "injuries.csv").write_text(
        "mrn,kind,date\n" + "".join(f"{mrn},spinal_cord_injury,{injury}\n" for mrn in mrns),
        encoding="utf-8",
    )
    path = folder / "template.db"
    engine = database.make_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    import_folder(engine, csv)
    engine.dispose()
    return path


def fresh_copy(template: Path, path: Path) -> Engine:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, path)
    return database.make_engine(f"sqlite:///{path}")


# floor -----------------------------------------------------------------------------


@contextmanager
def recording(root: str) -> Iterator[list[Query]]:
    """Every GET sent under the DICOMweb `root` while inside, in order (requests is
    what dicomweb-client sends through)."""
    sent: list[Query] = []
    original = requests.Session.request

    def request(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        if method.upper() == "GET" and url.startswith(root):
            parts = urlsplit(url)
            params = parse_qsl(parts.query, keep_blank_values=True)
            extra = kwargs.get("params") or {}
            params += list(extra.items()) if isinstance(extra, dict) else list(extra)
            path = parts.path[len(urlsplit(root).path) :].strip("/")
            sent.append(Query(path, tuple((str(k), str(v)) for k, v in params)))
        return original(session, method, url, **kwargs)

    requests.Session.request = request  # type: ignore[method-assign, assignment]
    try:
        yield sent
    finally:
        requests.Session.request = original  # type: ignore[method-assign]


def replay(client: DICOMwebClient, query: Query) -> list[dict[str, Any]]:
    """Send one recorded query through dicomweb-client's QIDO-RS search, as it was."""
    fields = [v for k, v in query.params if k.lower() == "includefield"]
    numbers = {k.lower(): int(v) for k, v in query.params if k.lower() in ("limit", "offset")}
    fuzzy = [v for k, v in query.params if k.lower() == "fuzzymatching"]
    filters = {
        k: v
        for k, v in query.params
        if k.lower() not in ("includefield", "limit", "offset", "fuzzymatching")
    }
    options: dict[str, Any] = {
        "fields": fields or None,
        "search_filters": filters or None,
        "limit": numbers.get("limit"),
        "offset": numbers.get("offset"),
        "fuzzymatching": (fuzzy[0].lower() == "true") if fuzzy else None,
    }
    parts = query.path.split("/")
    if parts == ["studies"]:
        return client.search_for_studies(**options)
    if parts == ["series"]:
        return client.search_for_series(**options)
    if len(parts) == 3 and parts[0] == "studies" and parts[2] == "series":
        return client.search_for_series(study_instance_uid=parts[1], **options)
    if parts == ["instances"]:
        return client.search_for_instances(**options)
    if len(parts) == 3 and parts[0] == "studies" and parts[2] == "instances":
        return client.search_for_instances(study_instance_uid=parts[1], **options)
    if len(parts) == 5 and parts[0] == "studies" and parts[2] == "series":
        return client.search_for_instances(
            study_instance_uid=parts[1], series_instance_uid=parts[3], **options
        )
    raise SystemExit(f"the poll sent a request the floor cannot replay: {query}")


def floor(url: str, queries: list[Query]) -> int:
    """The same queries, no processing: the matches answered."""
    client = DICOMwebClient(url)
    return sum(len(replay(client, query)) for query in queries)


# ours ------------------------------------------------------------------------------


def ours(
    template: Path, path: Path, settings: PacsSettings, since: dt.date, today: dt.date
) -> tuple[float, PollReport]:
    """One timed poll into a fresh copy of the tracker database."""
    engine = fresh_copy(template, path)
    try:
        started = time.perf_counter()
        report = poll(engine=engine, settings=settings, since=since, today=today)
        return time.perf_counter() - started, report
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--per-patient", type=int, default=5, help="studies per patient")
    parser.add_argument("--unknown", type=int, default=500, help="studies of unknown patients")
    parser.add_argument("--days", type=int, default=365, help="the window polled, to today")
    parser.add_argument("--page-limit", type=int, default=None, help="HO_TRACKER_PACS_PAGE_LIMIT")
    parser.add_argument("--server-limit", type=int, default=0, help="Orthanc's cap on answers")
    parser.add_argument("--threads", type=int, default=4, help="threads loading Orthanc")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.patients, args.unknown, args.repeat = 40, 10, 1
    reason = missing()
    if reason:
        sys.exit(f"pacs_bench needs Orthanc: {reason}")

    today = dt.date.today()
    since = today - dt.timedelta(days=args.days)
    work = Path(tempfile.mkdtemp(prefix="pacs-bench-"))
    server = OrthancServer(work / "orthanc", args.server_limit)
    try:
        started = time.perf_counter()
        mrns, instances = studies_for(
            args.patients, args.per_patient, args.unknown, since, today, args.seed
        )
        template = tracker_database(work, mrns, since)
        tracked = args.patients * args.per_patient
        prepared = time.perf_counter() - started

        server.start()
        started = time.perf_counter()
        answers = server.load_many(instances, threads=args.threads)
        loaded = time.perf_counter() - started
        assert all(a["Status"] == "Success" for a in answers), answers[:3]
        assert len(server.studies()) == len(instances)
        print(
            f"PACS: {len(instances):,} studies ({tracked:,} of {args.patients:,} tracked "
            f"patients, {args.unknown:,} of unknown ones), {since} to {today}; "
            f"prepared in {prepared:.1f} s, loaded into Orthanc in {loaded:.1f} s "
            f"({len(instances) / loaded:,.0f} studies/s, {args.threads} threads; not in the ratio)"
        )

        environ = {"HO_TRACKER_PACS_URL": server.dicomweb_url}
        if args.page_limit is not None:
            environ["HO_TRACKER_PACS_PAGE_LIMIT"] = str(args.page_limit)
        settings = PacsSettings.from_environ(environ)
        assert settings is not None

        # a first poll, not timed: the queries it sends are the floor's (and it warms
        # Orthanc's caches for both)
        with recording(server.dicomweb_url) as queries:
            _, first = ours(template, work / "first.db", settings, since, today)
        assert first.created == tracked, (first.created, tracked)
        assert len(queries) == first.queries, (len(queries), first.queries)

        floor_s = ours_s = float("inf")
        report = first
        for _ in range(args.repeat):
            started = time.perf_counter()
            matches = floor(server.dicomweb_url, queries)
            floor_s = min(floor_s, time.perf_counter() - started)
            took, report = ours(template, work / "ours.db", settings, since, today)
            ours_s = min(ours_s, took)
            assert report.created == tracked, (report.created, tracked)

        print(
            f"poll: {report.created:,} created, {report.already_known:,} already known, "
            f"{report.unknown_patient:,} of unknown patients; {report.queries:,} queries, "
            f"{report.pages:,} pages; {matches:,} matches answered to the floor"
        )
        print(f"floor (the same QIDO-RS queries, no processing): {floor_s:8.2f} s")
        print(f"ours  (tracker.pacs.poll into a fresh database): {ours_s:8.2f} s")
        print(f"ratio ours/floor: {ours_s / floor_s:.2f} (target <= 1.5)")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
