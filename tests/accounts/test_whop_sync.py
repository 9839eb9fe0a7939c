"""The Whop membership sync against a local Whop-style server and a local SMTP server, both on loopback."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from justtrades.accounts.settings import AccountsSettings
from justtrades.accounts.users import hash_activation_token
from justtrades.accounts.whop_client import WhopAPIError, WhopClient
from justtrades.db.engine import transaction
from justtrades.db.models import User
from tests.peers.smtp import SmtpPeer
from tests.peers.whop_api import WhopPeer, membership

from .conftest import API_KEY, add_user

# aiosmtpd warns that AUTH without TLS is unsafe; the peer listens on loopback only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

WHOP_KEY = "whop-secret-key-for-tests-0123456789"
UTC = dt.timezone.utc
STATUS = "/api/admin/whop-sync-status"

MEMBERSHIPS = [
    membership("mem_a", "alice@example.com", "active"),
    membership("mem_b", "Bob@Example.com", "active"),
    membership("mem_c", "carol@example.com", "trialing"),
    membership("mem_d", "dave@example.com", "canceled"),
    membership("mem_e", "erin@example.com", "past_due"),
    membership("mem_f", "frank@example.com", "expired"),
    membership("mem_g", "grace@example.com", "active"),
]


@pytest.fixture
def whop():
    with WhopPeer(api_key=WHOP_KEY, memberships=MEMBERSHIPS) as peer:
        yield peer


@pytest.fixture
def smtp():
    with SmtpPeer(user="mailer", password="mail-password") as peer:
        yield peer


def _settings(whop: WhopPeer, smtp: SmtpPeer | None, **overrides) -> AccountsSettings:
    values = dict(
        whop_api_url=whop.v1_url,
        whop_api_key=WHOP_KEY,
        whop_page_size=3,
        whop_timeout_seconds=2.0,
        smtp_host="127.0.0.1" if smtp else None,
        smtp_port=smtp.port if smtp else 587,
        smtp_user="mailer",
        smtp_password="mail-password",
        smtp_security="none",
        smtp_from="Just Trades <no-reply@example.com>",
        public_url="http://platform.test",
    )
    values.update(overrides)
    return AccountsSettings(**values)


@pytest.fixture
def sync_app(db_url, app_factory, whop, smtp):
    return app_factory(db_url, _settings(whop, smtp))


def _status(app) -> dict:
    response = app.test_client().get(STATUS, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    return response.get_json()


def _metrics(app) -> dict[str, float]:
    exposition = generate_latest(app.extensions["justtrades"].registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("justtrades_whop_")
    }


def _user(runtime, email: str) -> User | None:
    with runtime.session_factory() as session:
        return session.scalars(select(User).where(User.email == email)).first()


def _token_of(message) -> str:
    match = re.search(r"/activate\?token=(\S+)", message.get_content())
    assert match, message.get_content()
    return match.group(1)


def test_sync_creates_approves_and_revokes(sync_app, whop, smtp):
    runtime = sync_app.extensions["justtrades"]
    add_user(runtime, "frank@example.com", "frank-password", whop_membership_id="mem_f")
    add_user(runtime, "grace@example.com", "grace-password", approved=False)
    now = dt.datetime.now(UTC)

    outcome = runtime.accounts.whop.run_once(now)

    # alice, bob, carol created; frank revoked; grace approved. dave (canceled) and erin (past_due) get nothing.
    assert outcome.synced == 5
    assert outcome.emailed == 3
    assert outcome.error is None
    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        user = _user(runtime, email)
        assert user.approved is True
        assert user.password_hash is None
        assert user.activation_sent_at == now
    assert _user(runtime, "carol@example.com").whop_status == "trialing"
    assert _user(runtime, "frank@example.com").approved is False
    assert _user(runtime, "frank@example.com").whop_status == "expired"
    assert _user(runtime, "grace@example.com").approved is True
    assert _user(runtime, "grace@example.com").whop_membership_id == "mem_g"
    assert _user(runtime, "dave@example.com") is None
    assert _user(runtime, "erin@example.com") is None


def test_sync_follows_cursor_pages(sync_app, whop):
    sync_app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert [request["path"] for request in whop.requests] == ["/api/v1/memberships"] * 3
    assert [request["params"].get("after") is None for request in whop.requests] == [True, False, False]
    assert all(request["authorization"] == f"Bearer {WHOP_KEY}" for request in whop.requests)
    assert all(request["params"]["first"] == "3" for request in whop.requests)


def test_activation_emails_carry_token(sync_app, smtp):
    runtime = sync_app.extensions["justtrades"]
    runtime.accounts.whop.run_once(dt.datetime.now(UTC))

    messages = smtp.wait_for_messages(4)

    assert sorted(message["To"] for message in messages) == [
        "alice@example.com", "bob@example.com", "carol@example.com", "grace@example.com"
    ]
    assert smtp.failed_logins == 0
    message = next(message for message in messages if message["To"] == "alice@example.com")
    assert message["Subject"] == "Activate your Just Trades account"
    assert "http://platform.test/activate?token=" in message.get_content()
    token = _token_of(message)
    stored = _user(runtime, "alice@example.com").activation_token_hash
    assert stored == hash_activation_token(token)
    assert token not in stored


def test_emailed_token_activates_account(sync_app, smtp):
    runtime = sync_app.extensions["justtrades"]
    runtime.accounts.whop.run_once(dt.datetime.now(UTC))
    message = next(m for m in smtp.wait_for_messages(3) if m["To"] == "bob@example.com")
    client = sync_app.test_client()

    response = client.post("/api/activate", json={"token": _token_of(message), "password": "bob-new-password"})

    assert response.status_code == 200
    assert client.post("/login", json={"email": "bob@example.com", "password": "bob-new-password"}).status_code == 200
    assert _status(sync_app)["pending_resends"] == 3


def test_admin_never_revoked(sync_app, whop):
    runtime = sync_app.extensions["justtrades"]
    add_user(runtime, "boss@example.com", "boss-password", "admin", whop_membership_id="mem_boss")
    whop.set_memberships([membership("mem_boss", "boss@example.com", "canceled")])

    outcome = runtime.accounts.whop.run_once(dt.datetime.now(UTC))

    assert outcome.synced == 0
    assert _user(runtime, "boss@example.com").approved is True


def test_membership_without_email_revokes_by_id(sync_app, whop):
    runtime = sync_app.extensions["justtrades"]
    add_user(runtime, "hidden@example.com", "hidden-password", whop_membership_id="mem_h")
    whop.set_memberships([membership("mem_h", None, "completed"), membership("mem_x", None, "active")])

    outcome = runtime.accounts.whop.run_once(dt.datetime.now(UTC))

    assert outcome.synced == 1
    assert outcome.skipped_without_email == 1
    assert _user(runtime, "hidden@example.com").approved is False


def test_valid_membership_wins_over_ended_one(sync_app, whop):
    runtime = sync_app.extensions["justtrades"]
    add_user(runtime, "ivy@example.com", "ivy-password", whop_membership_id="mem_old")
    whop.set_memberships([membership("mem_old", "ivy@example.com", "expired"),
                          membership("mem_new", "ivy@example.com", "active")])

    runtime.accounts.whop.run_once(dt.datetime.now(UTC))

    user = _user(runtime, "ivy@example.com")
    assert user.approved is True
    assert user.whop_membership_id == "mem_new"


def test_status_reports_last_run(sync_app):
    runtime = sync_app.extensions["justtrades"]
    now = dt.datetime.now(UTC).replace(microsecond=0)
    runtime.accounts.whop.run_once(now)

    status = _status(sync_app)

    assert status["last_run"] == now.isoformat().replace("+00:00", "Z")
    assert status["last_attempt"] == status["last_run"]
    assert status["last_error"] is None
    assert status["last_synced"] == 4  # alice, bob, carol and grace invited
    assert status["last_resent"] == 0
    assert status["total_synced"] == 4
    assert status["total_resent"] == 0
    assert status["sync_interval_seconds"] == 30.0
    assert status["pending_resends"] == 4
    assert status["stuck_users"] == []
    metrics = _metrics(sync_app)
    assert metrics["justtrades_whop_sync_last_run_timestamp_seconds"] == now.timestamp()
    assert metrics["justtrades_whop_synced_total"] == 4
    assert metrics["justtrades_whop_pending_resends"] == 4
    assert metrics["justtrades_whop_sync_interval_seconds"] == 30


def test_resends_after_delay_and_stops(db_url, app_factory, whop, smtp):
    settings = _settings(whop, smtp, activation_resend_after_seconds=3600, activation_max_resends=2)
    app = app_factory(db_url, settings)
    sync = app.extensions["justtrades"].accounts.whop
    whop.set_memberships([membership("mem_a", "alice@example.com", "active")])
    start = dt.datetime.now(UTC)

    sync.run_once(start)
    assert sync.run_once(start + dt.timedelta(minutes=30)).resent == 0  # too early
    assert sync.run_once(start + dt.timedelta(hours=1)).resent == 1
    assert sync.run_once(start + dt.timedelta(hours=1, minutes=30)).resent == 0
    assert sync.run_once(start + dt.timedelta(hours=2)).resent == 1
    assert sync.run_once(start + dt.timedelta(hours=5)).resent == 0  # two resends is the maximum

    messages = smtp.wait_for_messages(3)
    assert len(messages) == 3
    assert [m["Subject"].startswith("Reminder") for m in messages] == [False, True, True]
    status = _status(app)
    assert status["total_resent"] == 2
    assert status["last_resent"] == 0
    assert status["pending_resends"] == 0
    assert _metrics(app)["justtrades_whop_resent_total"] == 2
    # Only the newest link works: a resend replaces the stored digest.
    client = app.test_client()
    assert client.post("/api/activate", json={"token": _token_of(messages[0]), "password": "alice-password"}).status_code == 400
    assert client.post("/api/activate", json={"token": _token_of(messages[2]), "password": "alice-password"}).status_code == 200


def test_stuck_users_reported(sync_app, whop):
    runtime = sync_app.extensions["justtrades"]
    whop.set_memberships([membership("mem_a", "alice@example.com", "active"),
                          membership("mem_b", "bob@example.com", "active")])
    four_days_ago = dt.datetime.now(UTC) - dt.timedelta(days=4)
    runtime.accounts.whop.run_once(four_days_ago)
    with transaction(runtime.session_factory) as session:
        bob = session.scalars(select(User).where(User.email == "bob@example.com")).one()
        bob.created_at = dt.datetime.now(UTC)

    status = _status(sync_app)

    assert [user["email"] for user in status["stuck_users"]] == ["alice@example.com"]
    stuck = status["stuck_users"][0]
    assert stuck["whop_membership_id"] == "mem_a"
    assert stuck["days_waiting"] == pytest.approx(4.0, abs=0.1)
    assert stuck["activation_emails_sent"] == 1
    assert _metrics(sync_app)["justtrades_whop_stuck_users"] == 1


def test_totals_survive_restart(db_url, app_factory, whop, smtp):
    first = app_factory(db_url, _settings(whop, smtp, activation_resend_after_seconds=60))
    start = dt.datetime.now(UTC)
    first.extensions["justtrades"].accounts.whop.run_once(start)
    first.extensions["justtrades"].accounts.whop.run_once(start + dt.timedelta(minutes=2))
    before = _status(first)
    first.extensions["justtrades"].stop()

    second = app_factory(db_url, _settings(whop, smtp))
    after = _status(second)

    assert before["total_synced"] == 4
    assert before["total_resent"] == 4
    assert after["total_synced"] == before["total_synced"]
    assert after["total_resent"] == before["total_resent"]
    assert after["last_run"] == before["last_run"]
    assert _metrics(second)["justtrades_whop_synced_total"] == 4


def test_unanswering_server_shows_stale_last_run(db_url, app_factory, whop, smtp):
    app = app_factory(db_url, _settings(whop, smtp, whop_timeout_seconds=0.5))
    sync = app.extensions["justtrades"].accounts.whop
    first_run = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    sync.run_once(first_run)

    whop.stop_answering()
    later = first_run + dt.timedelta(minutes=9)
    outcome = sync.run_once(later)

    assert outcome.completed is False
    assert "timed out" in outcome.error
    status = _status(app)
    assert status["last_run"] == first_run.isoformat().replace("+00:00", "Z")
    assert status["last_attempt"] == later.isoformat().replace("+00:00", "Z")
    assert "timed out" in status["last_error"]
    assert status["last_run_age_seconds"] >= 600
    assert _metrics(app)["justtrades_whop_sync_last_run_timestamp_seconds"] == first_run.timestamp()

    whop.resume()
    recovered = dt.datetime.now(UTC).replace(microsecond=0)
    assert sync.run_once(recovered).error is None
    assert _status(app)["last_error"] is None
    assert _metrics(app)["justtrades_whop_sync_last_run_timestamp_seconds"] == recovered.timestamp()


def test_server_error_recorded(sync_app, whop):
    whop.fail_with(503)

    outcome = sync_app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert "HTTP 503" in outcome.error
    status = _status(sync_app)
    assert status["last_run"] is None
    assert "HTTP 503" in status["last_error"]
    assert "justtrades_whop_sync_last_run_timestamp_seconds" not in _metrics(sync_app)


def test_rejected_key_named_never_shown(db_url, app_factory, whop, smtp, caplog):
    app = app_factory(db_url, _settings(whop, smtp, whop_api_key="wrong-whop-key-0123456789"))
    caplog.set_level(logging.DEBUG)

    outcome = app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert "HTTP 401" in outcome.error
    assert "JT_WHOP_API_KEY" in outcome.error
    body = app.test_client().get(STATUS, headers={"X-API-Key": API_KEY}).get_data(as_text=True)
    assert "wrong-whop-key-0123456789" not in body
    assert "wrong-whop-key-0123456789" not in caplog.text
    assert "mail-password" not in caplog.text


def test_older_page_numbers_followed(db_url, app_factory, whop, smtp):
    app = app_factory(db_url, _settings(whop, smtp, whop_api_url=whop.v2_url))

    outcome = app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert outcome.synced == 4
    assert [request["params"].get("page") for request in whop.requests] == [None, "2", "3"]


def test_smtp_outage_retried_next_run(db_url, app_factory, whop):
    smtp = SmtpPeer().start()
    port = smtp.port
    smtp.stop()
    settings = _settings(whop, None, smtp_host="127.0.0.1", smtp_port=port, smtp_user=None, smtp_password=None)
    app = app_factory(db_url, settings)
    runtime = app.extensions["justtrades"]
    whop.set_memberships([membership("mem_a", "alice@example.com", "active")])

    outcome = runtime.accounts.whop.run_once(dt.datetime.now(UTC))

    assert outcome.completed is True  # memberships were synced, only the email failed
    assert outcome.emailed == 0
    assert "unreachable" in outcome.error
    assert _user(runtime, "alice@example.com").activation_sent_at is None
    assert "unreachable" in _status(app)["last_error"]

    with SmtpPeer() as restarted:
        runtime.accounts.mailer.settings = settings.replace(smtp_port=restarted.port)
        assert runtime.accounts.whop.run_once(dt.datetime.now(UTC)).emailed == 1
        assert len(restarted.wait_for_messages(1)) == 1


def test_wrong_smtp_password_reported(db_url, app_factory, whop, smtp):
    app = app_factory(db_url, _settings(whop, smtp, smtp_password="not-the-password"))
    whop.set_memberships([membership("mem_a", "alice@example.com", "active")])

    outcome = app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert "JT_SMTP_PASSWORD" in outcome.error
    assert "not-the-password" not in outcome.error
    assert smtp.failed_logins >= 1  # smtplib tries PLAIN and LOGIN in turn


def test_missing_smtp_reported(db_url, app_factory, whop):
    app = app_factory(db_url, _settings(whop, None))

    outcome = app.extensions["justtrades"].accounts.whop.run_once(dt.datetime.now(UTC))

    assert outcome.synced == 4
    assert "JT_SMTP_HOST" in outcome.error


def test_sync_disabled_without_key(app):
    status = _status(app)

    assert status["enabled"] is False
    assert status["last_run"] is None
    assert "whop-sync" not in app.extensions["justtrades"].threads.names()


def test_daemon_syncs_in_background(db_url, app_factory, whop, smtp):
    settings = _settings(whop, smtp, whop_sync_interval_seconds=0.2)
    app = app_factory(db_url, settings, start_background=True)

    deadline = time.monotonic() + 15
    status = _status(app)
    while status["last_run"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _status(app)

    assert status["last_run"] is not None
    assert status["total_synced"] == 4
    assert len(smtp.wait_for_messages(4)) == 4
    assert app.extensions["justtrades"].threads.snapshot()["threads"]["whop-sync"]["status"] == "running"


# The client on its own


def test_client_reads_both_response_shapes(whop):
    v1 = WhopClient(whop.v1_url, WHOP_KEY, page_size=2).list_memberships()
    v2 = WhopClient(whop.v2_url, WHOP_KEY, page_size=2).list_memberships()

    assert [m.id for m in v1] == [m["id"] for m in MEMBERSHIPS]
    assert [(m.id, m.status, m.email) for m in v1] == [(m.id, m.status, m.email) for m in v2]
    assert v1[1].email == "Bob@Example.com"
    assert v1[0].whop_user_id == "user_mem_a"


def test_client_sends_company_id(whop):
    WhopClient(whop.v1_url, WHOP_KEY, company_id="biz_123").list_memberships()

    assert {request["params"]["company_id"] for request in whop.requests} == {"biz_123"}


def test_client_bounds_page_count(whop):
    with pytest.raises(WhopAPIError, match="JT_WHOP_MAX_PAGES"):
        WhopClient(whop.v1_url, WHOP_KEY, page_size=1, max_pages=3).list_memberships()


def test_client_rejects_non_json(whop):
    client = WhopClient(whop.base_url + "/not-an-api", WHOP_KEY)

    with pytest.raises(WhopAPIError, match="HTTP 404"):
        client.list_memberships()


def test_client_reports_refused_connection():
    peer = WhopPeer().start()
    url = peer.v1_url
    peer.stop()

    with pytest.raises(WhopAPIError, match="failed: ConnectionError"):
        WhopClient(url, WHOP_KEY, timeout=1).list_memberships()


def test_peer_cursor_is_opaque(whop):
    WhopClient(whop.v1_url, WHOP_KEY, page_size=3).list_memberships()

    cursors = [request["params"].get("after") for request in whop.requests[1:]]
    assert all(cursor and not cursor.isdigit() for cursor in cursors)
    assert parse_qs(urlsplit("/?" + "after=" + cursors[0]).query)["after"] == [cursors[0]]


def test_postgres_replica_lock_skips_run(empty_postgres_url, app_factory, whop, smtp):
    from sqlalchemy import text

    from justtrades.accounts.whop_sync import ADVISORY_LOCK_KEY
    from justtrades.db.engine import create_database_engine
    from justtrades.db.migrate import upgrade

    engine = create_database_engine(empty_postgres_url)
    upgrade(engine)
    app = app_factory(empty_postgres_url, _settings(whop, smtp))
    sync = app.extensions["justtrades"].accounts.whop
    with engine.connect() as other_replica:
        other_replica.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        other_replica.commit()

        assert sync.run_once(dt.datetime.now(UTC)) is None
        assert whop.requests == []

        other_replica.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        other_replica.commit()
    engine.dispose()

    assert sync.run_once(dt.datetime.now(UTC)).completed is True
