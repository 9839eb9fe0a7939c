"""The webhook's recorder lock against the locks of a claim transaction on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from justtrades.db.models import ExecutionJob

from ..conftest import build_app
from ..execution.test_execution import NQ_TOKEN, REFERENCE_TIME, send


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_webhook_answers_during_claim(database_url, tmp_path, monkeypatch):
    # A webhook that timed out on the lock would be spooled: into this test's folder, not the working tree.
    monkeypatch.setenv("JT_WEBHOOK_SPOOL_DIR", str(tmp_path / "spool"))
    app = build_app(database_url)
    runtime = app.extensions["justtrades"]
    runtime.clock = lambda: REFERENCE_TIME
    send(app, NQ_TOKEN, '{"action":"buy","ticker":"NQ1!","price":21500.25}')
    with runtime.session_factory() as session:
        job_id = session.scalars(select(ExecutionJob.id)).first()

    # A claim updates its jobs twice, to running and then to done. The second update of a row that this
    # transaction wrote checks the row's foreign keys, which key-share locks its recorder until the commit.
    claim = runtime.engine.connect()
    transaction = claim.begin()
    claim.execute(update(ExecutionJob).where(ExecutionJob.id == job_id).values(status="running"))
    claim.execute(update(ExecutionJob).where(ExecutionJob.id == job_id).values(status="done"))

    answers = []
    webhook = threading.Thread(target=lambda: answers.append(
        send(app, NQ_TOKEN, '{"action":"sell","ticker":"NQ1!","price":21510.25}')))
    webhook.start()
    webhook.join(timeout=10)
    answered_during_claim = not webhook.is_alive()

    transaction.rollback()
    claim.close()
    webhook.join(timeout=30)
    assert answered_during_claim
    assert len(answers) == 1
