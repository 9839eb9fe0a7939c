"""Bounded waits on Prometheus' /api/v1/alerts, per producer job, and what a fault drill records of them."""

from __future__ import annotations

import dataclasses
import time

from tests.alerting.servers import PrometheusProcess

POLL_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class AlertKey:
    """One alerting rule: its name, its severity and any further labels (a thread name, for example)."""

    alert: str
    severity: str
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, alert: dict, job: str) -> bool:
        labels = alert["labels"]
        return (
            labels.get("alertname") == self.alert
            and labels.get("severity") == self.severity
            and labels.get("job") == job
            and all(labels.get(name) == value for name, value in self.labels)
        )

    def __str__(self) -> str:
        extra = "".join(f',{name}="{value}"' for name, value in self.labels)
        return f'{self.alert}{{severity="{self.severity}"{extra}}}'


@dataclasses.dataclass
class AlertRecord:
    """When the alert fired after its fault and cleared after the fault's removal, in seconds, per job."""

    key: AlertKey
    fired_after: dict[str, float | None] = dataclasses.field(default_factory=dict)
    cleared_after: dict[str, float | None] = dataclasses.field(default_factory=dict)
    fire_timeout: float | None = None
    clear_timeout: float | None = None
    # The alerts of the same name present when a wait ran out, to explain a failure.
    seen_at_timeout: list[dict] = dataclasses.field(default_factory=list)


class AlertWatch:
    """Bounded polling of Prometheus until alerts reach a state for every producer job."""

    def __init__(self, prometheus: PrometheusProcess, jobs: tuple[str, ...]):
        self.prometheus = prometheus
        self.jobs = jobs

    def is_firing(self, key: AlertKey, job: str) -> bool:
        return any(alert["state"] == "firing" and key.matches(alert, job) for alert in self.prometheus.alerts())

    def wait_firing(self, records: list[AlertRecord], since: float, timeout: float) -> None:
        """Wait until every record's alert fires for every job; store the seconds since `since`, None on a timeout."""
        for record in records:
            record.fire_timeout = timeout
        self._wait(records, "fired_after", since, timeout, lambda key, alerts, job: any(
            alert["state"] == "firing" and key.matches(alert, job) for alert in alerts
        ))

    def wait_cleared(self, records: list[AlertRecord], since: float, timeout: float) -> None:
        """Wait until no record's alert is pending or firing for any job, and store the seconds since `since`."""
        for record in records:
            record.clear_timeout = timeout
        self._wait(records, "cleared_after", since, timeout, lambda key, alerts, job: not any(
            key.matches(alert, job) for alert in alerts
        ))

    def _wait(self, records: list[AlertRecord], field: str, since: float, timeout: float, reached) -> None:
        pending = {(index, job) for index in range(len(records)) for job in self.jobs}
        for record in records:
            getattr(record, field).update({job: None for job in self.jobs})

        deadline = since + timeout
        while pending:
            alerts = self.prometheus.alerts()
            now = time.monotonic()
            for index, job in sorted(pending):
                record = records[index]
                if reached(record.key, alerts, job):
                    getattr(record, field)[job] = round(now - since, 1)
                    pending.discard((index, job))
            if not pending:
                return
            if now >= deadline:
                for index in {index for index, _ in pending}:
                    records[index].seen_at_timeout = [
                        {"labels": alert["labels"], "state": alert["state"], "value": alert.get("value")}
                        for alert in alerts if alert["labels"].get("alertname") == records[index].key.alert
                    ]
                return
            time.sleep(POLL_SECONDS)


@dataclasses.dataclass
class DrillOutcome:
    """What one fault drill observed: a record per alert, per-job checks, and the error that stopped it, if any."""

    name: str
    records: dict[AlertKey, AlertRecord] = dataclasses.field(default_factory=dict)
    # Named observations per job, such as "the warning kept firing while one account still needed re-auth".
    checks: dict[str, dict[str, bool]] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def record(self, key: AlertKey) -> AlertRecord:
        return self.records.setdefault(key, AlertRecord(key))

    def assert_fired_and_cleared(self, key: AlertKey, job: str) -> None:
        assert self.error is None, f"drill {self.name!r} stopped with an error: {self.error}"
        assert key in self.records, f"drill {self.name!r} never watched {key}"
        record = self.records[key]

        fired = record.fired_after.get(job)
        assert fired is not None, (
            f"{key} did not fire for job {job} within {record.fire_timeout} s of the fault ({self.name}); "
            f"alerts of that name at the timeout: {record.seen_at_timeout}"
        )
        cleared = record.cleared_after.get(job)
        assert cleared is not None, (
            f"{key} fired for job {job} {fired} s after the fault ({self.name}) but did not clear within "
            f"{record.clear_timeout} s of its removal; alerts of that name at the timeout: {record.seen_at_timeout}"
        )

    def assert_check(self, check: str, job: str) -> None:
        assert self.error is None, f"drill {self.name!r} stopped with an error: {self.error}"
        assert self.checks.get(check, {}).get(job) is True, (
            f"drill {self.name!r}: check {check!r} does not hold for job {job}: {self.checks.get(check)}"
        )
