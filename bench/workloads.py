"""Seed documents and alert bodies shared by the benchmarks."""

from __future__ import annotations

import json

SYMBOLS = ("NQZ6", "ESZ6", "MNQZ6", "CLZ6", "GCZ6")


def recorder_with_traders(traders: int, recorder: str = "BENCH", token: str = "bench-token-0123456789abcdef",
                          broker: str = "paper", broker_account_ids: list[int] | None = None,
                          token_group: str | None = None) -> dict:
    """Build one recorder with `traders` traders, each on its own account, so no two jobs share an account lane."""
    accounts = []
    for index in range(traders):
        account = {"name": f"Bench Account {index + 1}", "broker": broker}
        if broker_account_ids is not None:
            account["broker_account_id"] = broker_account_ids[index]
        if token_group is not None:
            account["token_group"] = token_group
        accounts.append(account)
    return {
        "accounts": accounts,
        "recorders": [{"name": recorder, "webhook_token": token, "strategy": "benchmark"}],
        "traders": [{"recorder": recorder, "account": account["name"], "quantity": 1} for account in accounts],
    }


def alert_body(index: int, symbol: str = "NQZ6") -> bytes:
    """Return a buy or sell alert whose price differs per index, so no two bodies are duplicates of each other."""
    action = "buy" if index % 2 == 0 else "sell"
    price = 20000 + (index % 400_000) * 0.25
    return json.dumps({"action": action, "ticker": symbol, "price": f"{price:.2f}"}).encode()


# The same body built by wrk's Lua script: string.format(WRK_BODY_FORMAT, WRK_BODY_ARGS) with `index` in scope.
WRK_BODY_FORMAT = '\'{"action":"%s","ticker":"NQZ6","price":"%.2f"}\''
WRK_BODY_ARGS = '(index % 2 == 0) and "buy" or "sell", 20000 + (index % 400000) * 0.25'


def contract_symbols(count: int) -> list[str]:
    """Return `count` distinct contract names over the product table's roots: NQH6, NQM6, ..."""
    from justtrades.markets.products import PRODUCTS

    names = [f"{root}{month}{year}" for year in (6, 7, 8) for month in "HMUZ" for root in PRODUCTS]
    if count > len(names):
        raise ValueError(f"only {len(names)} contract names are available; ask for at most that many")
    return names[:count]


def many_traders(accounts: int, traders: int) -> dict:
    """`accounts` paper accounts and `traders` traders spread over ceil(traders / accounts) recorders."""
    recorders = -(-traders // accounts)
    document = {
        "accounts": [{"name": f"Bench Account {index + 1}", "broker": "paper"} for index in range(accounts)],
        "recorders": [{"name": f"BENCH{index + 1}", "webhook_token": f"bench-token-{index + 1:04d}-0123456789",
                       "strategy": "benchmark"} for index in range(recorders)],
        "traders": [],
    }
    for index in range(traders):
        document["traders"].append({"recorder": f"BENCH{index // accounts + 1}",
                                    "account": f"Bench Account {index % accounts + 1}", "quantity": 1})
    return document
