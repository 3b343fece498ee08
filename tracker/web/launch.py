"""`ho-tracker serve` and the demo's web part: demo users, then the app and scheduler."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from tracker.config import Settings
from tracker.errors import Conflict

# On Ctrl+C or SIGTERM uvicorn lets requests under way finish, for at most this long;
# then the app's shutdown stops the reminder jobs (`ReminderScheduler.stop`, at most
# 3 s), so the server is gone within 5 s whatever is due (issue 14).
REQUESTS_GRACE_SECONDS = 1  # whole seconds: uvicorn takes an int

DEMO_PASSWORD = "demo-password"  # printed by `ho-tracker demo`: a demo, never a real unit
DEMO_USERS = (("clinician", "clinician"), ("surgeon", "surgeon"), ("admin", "admin"))


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    created: bool


def ensure_demo_users(*, engine: Engine) -> list[DemoUser]:
    """One user per role with the demo password, made only when absent (a user who
    changed it keeps their password)."""
    from tracker.services.users import add_user, list_users

    existing = {str(u.username) for u in list_users(engine=engine)}
    made = []
    for username, role in DEMO_USERS:
        created = False
        if username not in existing:
            try:
                add_user(engine=engine, username=username, role=role, password=DEMO_PASSWORD)
                created = True
            except Conflict:  # another process made it meanwhile
                pass
        made.append(DemoUser(username, role, created))
    return made


def address(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/"


def serve(*, engine: Engine, host: str, port: int, settings: Settings | None = None) -> None:
    """Run the web app with the reminder scheduler under uvicorn until Ctrl+C or
    SIGTERM; then it ends within 5 s (see REQUESTS_GRACE_SECONDS)."""
    import uvicorn

    from tracker.config import get_settings
    from tracker.web.app import create_app

    app = create_app(settings or get_settings(), engine, run_scheduler=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=REQUESTS_GRACE_SECONDS,
    )
    uvicorn.Server(config).run()
