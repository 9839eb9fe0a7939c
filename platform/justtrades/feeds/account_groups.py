"""Tradovate accounts grouped by the token they share: one user socket and one token renewal per group."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..brokers.tradovate_auth import token_group_key
from ..db.models import Account, Trader


@dataclasses.dataclass(frozen=True)
class GroupAccount:
    id: int
    name: str
    broker_account_id: int | None
    token_expires_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class AccountGroup:
    """Accounts that share one Tradovate access token (the token is a secret: never log or serialise it)."""

    key: str  # the token_group column, or a name derived from the first account when it is empty
    environment: str  # "demo" or "live"
    access_token: str = dataclasses.field(repr=False)
    accounts: tuple[GroupAccount, ...] = ()

    @property
    def token_label(self) -> str:
        """Return the token's last 6 characters as "[...abc123]", the only part of it logs show."""
        return f"[...{self.access_token[-6:]}]"

    @property
    def broker_account_ids(self) -> list[int]:
        return [account.broker_account_id for account in self.accounts if account.broker_account_id is not None]


@dataclasses.dataclass(frozen=True)
class AccountGroupsLoad:
    groups: list[AccountGroup]
    rows: int
    subaccounts: int
    recorder_mappings: int


def load_account_groups(session_factory: sessionmaker[Session]) -> AccountGroupsLoad:
    """Read enabled Tradovate accounts with a token, grouped by token group (or by token when none is set)."""
    with session_factory() as session:
        accounts = session.scalars(
            select(Account)
            .where(Account.broker == "tradovate", Account.enabled.is_(True), Account.access_token.is_not(None))
            .order_by(Account.id)
        ).all()
        mappings = session.execute(
            select(Trader.account_id, Trader.recorder_id)
            .join(Account, Account.id == Trader.account_id)
            .where(Account.broker == "tradovate", Trader.enabled.is_(True))
        ).all()

    grouped: dict[tuple[str, str], list[Account]] = {}
    for account in accounts:
        if not account.access_token:
            continue
        grouped.setdefault((account.environment, group_key(account)), []).append(account)

    groups = [_build_group(environment, key, members) for (environment, key), members in grouped.items()]
    return AccountGroupsLoad(
        groups=groups,
        rows=len(accounts),
        subaccounts=len({account_id for account_id, _ in mappings}),
        recorder_mappings=len(mappings),
    )


def group_key(account: Account) -> str:
    """Name the token group of an account the same way the broker's token manager does."""
    return token_group_key(account.token_group, account.access_token, account.id)


def _build_group(environment: str, key: str, members: list[Account]) -> AccountGroup:
    # Members of one group should hold the same token; the most recently renewed one is the one to use.
    freshest = max(members, key=lambda account: account.token_expires_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
    return AccountGroup(
        key=key,
        environment=environment,
        access_token=freshest.access_token,
        accounts=tuple(
            GroupAccount(account.id, account.name, account.broker_account_id, account.token_expires_at)
            for account in members
        ),
    )
