"""A small mutation check: plant one known bug at a time and see whether the tests
that guard that code notice.

Each mutation replaces one exact text in one file (it must occur exactly once, so a
mutation that no longer applies is reported, not skipped), runs the tests named for
it, and restores the file whatever happens. A mutation is caught when those tests
fail. Run by hand from the repository root (not in CI; it takes minutes):

    .venv/bin/python tools/mutation_check.py [--only NAME] [--repeat N]

`--repeat` runs each mutation's tests N times (Hypothesis draws differ between runs),
so a mutation caught only by chance shows as caught in fewer than N runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: list[Mutation] = [
    Mutation(
        "cohort_kim_boundary_strict",
        "tracker/staging/cohort_sites.py",
        "~_above(self.rn, np.where(banded, threshold, 0.0))",
        "(self.rn < np.where(banded, threshold, 0.0))",
        ("tests/staging",),
    ),
    Mutation(
        "patient_kim_boundary_strict",
        "tracker/staging/readiness.py",
        "at_most(latest.ratio, threshold)",
        "latest.ratio < threshold",
        ("tests/staging",),
    ),
    Mutation(
        "same_day_first_ratio_not_mean",
        "tracker/staging/activity.py",
        "sum(sorted(values)) / len(values)",
        "values[0]",
        ("tests/staging",),
    ),
    Mutation(
        "normal_uptake_ratio_inclusive",
        "tracker/staging/stage.py",
        "above(float(scan.ratio), rules.normal_uptake_ratio)",
        "float(scan.ratio) >= rules.normal_uptake_ratio",
        ("tests/staging",),
    ),
    Mutation(
        "no_ho_site_not_ready_again",
        "tracker/staging/readiness.py",
        "    if stage == Stage.none:\n",
        "    if stage == Stage.none and False:\n",
        ("tests/staging",),
    ),
    Mutation(
        "forecast_from_three_points",
        "tracker/staging/forecast.py",
        "if len(tail) < MIN_POINTS:",
        "if len(tail) < MIN_POINTS - 1:",
        ("tests/staging",),
    ),
    Mutation(
        "forecast_passed_on_its_day",
        "tracker/staging/forecast.py",
        "passed=when < as_of,",
        "passed=when <= as_of,",
        ("tests/staging",),
    ),
    Mutation(
        "recurrence_never_flagged",
        "tracker/staging/flags.py",
        "return site_first is not None and resected_on is not None and site_first > resected_on",
        "return False",
        ("tests/staging",),
    ),
    Mutation(
        "alp_ignores_protocol_limit",
        "tracker/staging/readiness.py",
        "return rules.default_upper_limits.of(lab.analyte, lab.unit), False",
        "return None, False",
        ("tests/staging",),
    ),
    Mutation(
        "fingerprint_ignores_values",
        "tracker/protocol.py",
        "    values = {s.dotted: _canonical(s.value) for s in settings_of(protocol)}",
        "    values = {s.dotted: 0 for s in settings_of(protocol)}",
        ("tests/staging/test_protocol.py", "tests/staging/test_assess_json.py"),
    ),
    Mutation(
        "lapse_on_the_boundary_day",
        "tracker/reminders/planner.py",
        "        due < lapse_before,",
        "        due <= lapse_before,",
        (
            "tests/reminders/test_reminder_lapsed.py",
            "tests/reminders/test_reminder_rules.py",
            "tests/reminders/test_reminder_planner.py",
        ),
    ),
    Mutation(
        "fop_gets_maturity_bone_scans",
        "tracker/reminders/rules.py",
        '    sites = sites[~np.isin(sites["pid"].to_numpy(), cut.fop)]',
        "    sites = sites",
        (
            "tests/reminders/test_reminder_lapsed.py",
            "tests/reminders/test_reminder_rules.py",
            "tests/reminders/test_reminder_planner.py",
        ),
    ),
    Mutation(
        "fop_gets_readiness_review",
        "tracker/reminders/rules.py",
        '        & ~np.isin(sites["pid"].to_numpy(), cut.fop)  # v2: never for genetic HO (FOP)',
        "",
        (
            "tests/reminders/test_reminder_lapsed.py",
            "tests/reminders/test_reminder_rules.py",
            "tests/reminders/test_reminder_planner.py",
        ),
    ),
    Mutation(
        "natural_key_drops_the_site",
        "tracker/reminders/planner.py",
        'site = rules.site_codes(frame["site"], frame["side"]) + 1  # 0: no site',
        'site = rules.site_codes(frame["site"], frame["side"]) * 0 + 1',
        (
            "tests/reminders/test_reminder_lapsed.py",
            "tests/reminders/test_reminder_rules.py",
            "tests/reminders/test_reminder_planner.py",
        ),
    ),
    Mutation(
        "acknowledge_role_check_deleted",
        "tracker/web/actions.py",
        '    require(viewer, CAN_ACKNOWLEDGE, "acknowledge reminders")\n',
        "",
        ("tests/web/test_web_access.py",),
    ),
    Mutation(
        "surgeon_acknowledges_any_reminder",
        "tracker/web/actions.py",
        'if viewer.role == "surgeon" and rule != "readiness_review":',
        "if False:",
        ("tests/web/test_web_access.py", "tests/web/test_web_pages.py"),
    ),
    Mutation(
        "save_does_not_replan",
        "tracker/services/record_store.py",
        "    if protocol is None:\n        return saved\n    mrn =",
        "    return saved\n    mrn =",
        ("tests/reminders/test_reminder_follows_record.py",),
    ),
    Mutation(
        "unknown_csv_file_ignored",
        "tracker/interchange/csv_import.py",
        "problems: list[Problem] = unknown_files(folder)",
        "problems: list[Problem] = []",
        ("tests/interchange/test_csv_import.py",),
    ),
    Mutation(
        "lab_unit_of_other_analyte_allowed",
        "tracker/interchange/validate.py",
        "wrong = known & ~pair.isin(_UNIT_PAIRS)",
        "wrong = known & ~unit.isin(vocab.ALL_LAB_UNITS)",
        ("tests/records/test_lab_units.py", "tests/interchange/test_csv_import.py"),
    ),
]


def run_tests(tests: tuple[str, ...]) -> bool:
    """True when the tests pass (the mutation survived)."""
    env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "default")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return result.returncode == 0


def check(mutation: Mutation, repeat: int) -> tuple[int, int] | None:
    """(runs that caught it, runs); None if the mutation no longer applies."""
    path = ROOT / mutation.path
    original = path.read_text()
    if original.count(mutation.old) != 1:
        return None
    try:
        path.write_text(original.replace(mutation.old, mutation.new))
        caught = sum(not run_tests(mutation.tests) for _ in range(repeat))
    finally:
        path.write_text(original)
    return caught, repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only the mutation with this name")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in (None, m.name)]
    reliable = 0
    stale = 0
    for mutation in chosen:
        outcome = check(mutation, args.repeat)
        if outcome is None:
            stale += 1
            print(f"{mutation.name:45} does not apply (text not found once in {mutation.path})")
            continue
        caught, runs = outcome
        reliable += caught == runs
        verdict = "caught" if caught == runs else ("survived" if caught == 0 else "by chance")
        print(f"{mutation.name:45} {verdict} ({caught}/{runs})", flush=True)
    applied = len(chosen) - stale
    print(f"caught reliably: {reliable} of {applied}")
    return 0 if reliable == applied and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
