"""Per-entity debugging: live positions and working orders read from the broker adapter, not the database.

A broker reports positions and orders per account, so a trader's view shows its whole account, including
other traders on the same account. The response names the trader's recorder to help read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal

from ..brokers.base import AccountRef, BrokerError
from ..daemons import redact_error
from ..db.models import Account, Recorder, Trader

logger = logging.getLogger(__name__)


class BrokerStateError(Exception):
    """A failed live read: `status` is the HTTP status to return and `body` the JSON to send."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _number(value):
    return float(value) if isinstance(value, Decimal) else value


def account_ref_for(runtime, account: Account) -> AccountRef:
    build = getattr(runtime, "account_ref", None)
    if build is not None:
        return build(account)

    from ..execution.executor import account_ref

    return account_ref(account)


def trader_broker_state(runtime, trader_id: int, now: dt.datetime) -> dict:
    with runtime.session_factory() as session:
        trader = session.get(Trader, trader_id)
        if trader is None:
            raise BrokerStateError(404, {"error": f"trader {trader_id} not found: use the id of a trader loaded with `justtrades seed`"})
        account = session.get(Account, trader.account_id)
        recorder = session.get(Recorder, trader.recorder_id)
        ref = account_ref_for(runtime, account)

    state = _read_live(runtime, account, ref, now)
    return {
        "trader_id": trader.id,
        "recorder_id": trader.recorder_id,
        "recorder_name": recorder.name if recorder else None,
        "trader_enabled": trader.enabled,
        **state,
    }


def account_broker_state(runtime, account_id: int, now: dt.datetime) -> dict:
    with runtime.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise BrokerStateError(404, {"error": f"account {account_id} not found; check the id"})
        ref = account_ref_for(runtime, account)

    return _read_live(runtime, account, ref, now)


def _read_live(runtime, account: Account, ref: AccountRef, now: dt.datetime) -> dict:
    base = {
        "account_id": account.id,
        "account_name": account.name,
        "broker": account.broker,
        "environment": account.environment,
    }

    broker = getattr(runtime, "brokers", {}).get(account.broker)
    if broker is None:
        raise BrokerStateError(
            502,
            {
                **base,
                "error": f"no broker adapter named {account.broker!r} is configured; "
                "set the account's broker to one this platform runs",
                "reason": "no_broker_adapter",
            },
        )

    try:
        positions = broker.positions(ref)
        working_orders = broker.working_orders(ref)
    except BrokerError as error:
        logger.warning("live broker state of account %s failed: %s", account.id, error.reason.value)
        raise BrokerStateError(502, {**base, "error": redact_error(error), "reason": error.reason.value}) from error
    except Exception as error:
        # A bug or an unexpected library error in the adapter: still a bad gateway for the caller, never a 500.
        logger.exception("live broker state of account %s failed unexpectedly", account.id)
        raise BrokerStateError(502, {**base, "error": redact_error(error), "reason": "internal_error"}) from error

    return {
        **base,
        "source": "broker",
        "read_at": _iso(now),
        "positions": [
            {"symbol": position.symbol, "net_pos": position.net_pos, "net_price": _number(position.net_price)}
            for position in positions
        ],
        "working_orders": [
            {key: _number(value) for key, value in dataclasses.asdict(order).items()}
            if dataclasses.is_dataclass(order)
            else {key: _number(value) for key, value in dict(order).items()}
            for order in working_orders
        ],
    }
