"""A Tradovate account with a token group and credentials but no stored token gets its first token."""

from __future__ import annotations

from sqlalchemy import select

from justtrades.db.models import Account
from justtrades.feeds.account_groups import group_key


def test_group_key_uses_token_group_before_any_token():
    account = Account(id=4, name="T", broker="tradovate", token_group="john", access_token=None)

    assert group_key(account) == "john"


def test_group_key_without_group_falls_back_to_account():
    account = Account(id=4, name="T", broker="tradovate", token_group=None, access_token=None)

    assert group_key(account) == "account-4"
