"""/health reports `market_open` from the holiday-aware calendar, and so does the `justtrades_market_open` metric."""

import datetime as dt

import pytest

from justtrades.markets import globex_holidays
from justtrades.monitoring import snapshots

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    "moment, is_open",
    [
        (dt.datetime(2026, 12, 25, 15, 0, tzinfo=UTC), False),  # Christmas Day, 10:00 ET
        (dt.datetime(2026, 11, 26, 19, 0, tzinfo=UTC), False),  # Thanksgiving, 14:00 ET, after the halt
        (dt.datetime(2026, 11, 26, 16, 0, tzinfo=UTC), True),  # Thanksgiving, 11:00 ET, before the halt
        (dt.datetime(2026, 12, 2, 15, 0, tzinfo=UTC), True),  # an ordinary Wednesday
    ],
)
def test_health_market_open_on_holidays(client, monkeypatch, moment, is_open):
    monkeypatch.delenv(globex_holidays.OVERRIDES_ENV, raising=False)
    monkeypatch.setattr(snapshots, "utcnow", lambda: moment)

    health = client.get("/health")
    metrics = client.get("/metrics").get_data(as_text=True)

    assert health.status_code == 200
    assert health.get_json()["market_open"] is is_open
    assert f"justtrades_market_open {1.0 if is_open else 0.0}" in metrics
