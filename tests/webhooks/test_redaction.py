"""Raw-body redaction: secrets never survive, in JSON or free text, truncated or not."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from justtrades.webhooks.redaction import REDACTED, is_secret_key, redact_body, redact_text, truncate_utf8

SECRET = "Zq9-hunter2-secret-value"


def redact(body: str | bytes, keep_bytes: int = 1_000_000) -> tuple[str, bool]:
    return redact_body(body.encode("utf-8") if isinstance(body, str) else body, keep_bytes)


@pytest.mark.parametrize(
    "key",
    [
        "passphrase", "Passphrase", "password", "user_password", "passwd", "secret", "client_secret",
        "token", "webhook_token", "accessToken", "api_key", "APIKEY", "x-api-key", "access_key",
        "private_key", "auth", "Authorization",
    ],
)  # fmt: skip
def test_secret_keys_detected(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["action", "ticker", "price", "comment", "quantity", "key", "pass"])
def test_plain_keys_kept(key):
    assert not is_secret_key(key)


def test_json_secret_values_redacted():
    body = json.dumps({"action": "buy", "passphrase": SECRET, "ticker": "NQ1!", "price": 21500})
    text, truncated = redact(body)

    assert SECRET not in text
    assert not truncated
    assert json.loads(text) == {"action": "buy", "passphrase": REDACTED, "ticker": "NQ1!", "price": 21500}


def test_json_nested_secrets_redacted():
    body = json.dumps(
        {
            "action": "buy",
            "broker": {"API_KEY": SECRET, "account": "demo", "auth": {"user": "u", "pass": SECRET}},
            "legs": [{"token": SECRET}, {"price": 1}],
        }
    )
    text, _ = redact(body)

    assert SECRET not in text
    assert json.loads(text) == {
        "action": "buy",
        "broker": {"API_KEY": REDACTED, "account": "demo", "auth": REDACTED},
        "legs": [{"token": REDACTED}, {"price": 1}],
    }


def test_json_rewritten_compactly_in_order():
    text, _ = redact('{ "zeta": 1,\n  "secret": "s",\n  "alpha": [1, 2],\n  "price": 21500.00 }')

    assert text == '{"zeta":1,"secret":"[REDACTED]","alpha":[1,2],"price":21500.00}'


def test_json_numbers_keep_exact_text():
    text, _ = redact('{"token":"t","price":24893.30000000000000001,"big":123456789012345678901234567890,"nan":NaN}')

    assert text == '{"token":"[REDACTED]","price":24893.30000000000000001,"big":123456789012345678901234567890,"nan":NaN}'


def test_json_without_secrets_unchanged():
    body = '{"action": "buy",\n "ticker": "NQ1!", "price": 21500.00}\n'

    assert redact(body) == (body, False)


def test_json_duplicate_secret_keys_redacted():
    text, _ = redact(f'{{"token":"{SECRET}","action":"buy","token":"{REDACTED}"}}')

    assert SECRET not in text
    assert text == f'{{"token":"{REDACTED}","action":"buy","token":"{REDACTED}"}}'


def test_json_non_ascii_kept():
    text, _ = redact('{"comment":"café ✓","secret":"x"}')

    assert text == '{"comment":"café ✓","secret":"[REDACTED]"}'


def test_json_string_with_pairs_redacted():
    body = json.dumps({"comment": f"https://example.invalid/hook?token={SECRET}&x=1"})
    text, _ = redact(body)

    assert SECRET not in text
    assert "x=1" in text


def test_json_with_bom_redacted():
    text, _ = redact(b"\xef\xbb\xbf" + json.dumps({"password": SECRET}).encode())

    assert SECRET not in text


@pytest.mark.parametrize(
    "body",
    [
        f"action=buy&passphrase={SECRET}&ticker=NQ1!",
        f"passphrase = {SECRET}\nticker: NQ1!",
        f'{{"action":"buy","password":"{SECRET}",}}',
        f"{{'api_key': '{SECRET}', 'action': 'buy'}}",
        f'{{"action":"buy","token":"{SECRET}',
        f"Authorization: Bearer {SECRET}",
        f"X-Api-Key: {SECRET}",
        f"BUY NQ1! secret={SECRET}",
        f'"secret" : "{SECRET} with spaces"',
        f'{{"auth_token": "esc\\"aped {SECRET}"}} trailing',
    ],
)
def test_text_secrets_redacted(body):
    text, truncated = redact(body)

    assert SECRET not in text
    assert "hunter2" not in text
    assert REDACTED in text
    assert not truncated


def test_text_keeps_other_pairs():
    assert redact_text("action=buy&token=abc&ticker=NQ1!") == f"action=buy&token={REDACTED}&ticker=NQ1!"
    assert redact_text('"password": "p", "price": 5') == f'"password": "{REDACTED}", "price": 5'


def test_text_key_inside_word_not_matched():
    assert redact_text("mytoken_count=5") == f"mytoken_count={REDACTED}"
    assert redact_text("price=5 quantity=2") == "price=5 quantity=2"


def test_invalid_utf8_replaced_and_redacted():
    text, _ = redact(b"\xff\xfe token=" + SECRET.encode() + b" \xc3")

    assert SECRET not in text
    assert "\ufffd" in text


def test_truncation_reports_cut():
    body = '{"action":"buy","comment":"' + "x" * 1000 + '"}'
    text, truncated = redact(body, 100)

    assert truncated
    assert len(text.encode()) == 100
    assert body.startswith(text)


def test_truncation_never_leaves_secret_half():
    body = json.dumps({"action": "buy", "passphrase": SECRET})
    full, _ = redact(body)
    cut_inside_secret = body.index(SECRET) + len(SECRET) // 2

    for keep in range(0, len(body) + 1):
        text, truncated = redact(body, keep)

        assert SECRET[:6] not in text
        assert truncated is (keep < len(full.encode()))
    assert SECRET[:6] not in redact(body, cut_inside_secret)[0]


def test_truncation_text_secret_half():
    body = f"ticker=NQ1!&token={SECRET}"

    for keep in range(0, len(body) + 1):
        assert SECRET[:6] not in redact(body, keep)[0]


def test_truncation_on_character_boundary():
    text, truncated = truncate_utf8("ab€€", 4)

    assert truncated
    assert text == "ab"
    assert truncate_utf8("ab€€", 5) == ("ab€", True)
    assert truncate_utf8("ab€€", 8) == ("ab€€", False)
    assert truncate_utf8("", 0) == ("", False)


def test_negative_keep_bytes_rejected():
    with pytest.raises(ValueError):
        redact_body(b"{}", -1)


def test_large_padding_body_handled():
    body = b'{"action":"buy","ticker":"NQ1!","comment":"' + b"x" * 1_048_576 + b'","token":"' + SECRET.encode() + b'"}'
    text, truncated = redact_body(body, 4096)

    assert truncated
    assert len(text.encode()) == 4096
    assert SECRET not in redact_body(body, len(body))[0]


# --- properties ---------------------------------------------------------------------------------

SECRET_KEYS = st.sampled_from(["passphrase", "Password", "api_key", "x-api-key", "AUTH", "webhook_token", "client_secret"])
PLAIN_KEYS = st.sampled_from(["action", "ticker", "price", "comment", "qty", "note"])
# The sentinel letters Z and Q never occur in the plain text, so a sentinel in the output is a leak.
PLAIN_TEXT = st.text(alphabet=st.characters(blacklist_characters="ZQ", blacklist_categories=("Cs",)), max_size=20)
SECRETS = st.text(alphabet="abcdefghijkmnopqrstuvwxyz0123456789.+/=-", min_size=6, max_size=30).map(lambda text: "ZQ" + text)

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), PLAIN_TEXT)


@st.composite
def documents_with_secrets(draw):
    """Build a JSON document with secrets under secret-looking keys at random depths."""
    secrets_used = []

    def node(depth):
        members = {}
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                secret = draw(SECRETS)
                secrets_used.append(secret)
                members[draw(SECRET_KEYS)] = secret
            elif depth < 3 and draw(st.booleans()):
                members[draw(PLAIN_KEYS)] = [node(depth + 1)] if draw(st.booleans()) else node(depth + 1)
            else:
                members[draw(PLAIN_KEYS)] = draw(json_leaves)
        return members

    document = node(0)
    # Keys repeat at random: only the secrets still in the final document count.
    secrets_in_document = [secret for secret in secrets_used if json.dumps(secret) in json.dumps(document)]
    return document, secrets_in_document


@given(documents_with_secrets(), st.integers(0, 2000))
def test_json_secrets_never_survive(case, keep_bytes):
    document, secrets_kept = case
    text, truncated = redact_body(json.dumps(document, ensure_ascii=False).encode(), keep_bytes)

    for secret in secrets_kept:
        assert secret[:6] not in text
    assert len(text.encode()) <= keep_bytes
    assert "ZQ" not in text


@given(st.lists(st.tuples(SECRET_KEYS, st.sampled_from(["=", ": ", " = ", ":"]), SECRETS), min_size=1, max_size=4), PLAIN_TEXT, st.integers(0, 500))
def test_text_secrets_never_survive(pairs, filler, keep_bytes):
    lines = [f"{key}{separator}{secret}" for key, separator, secret in pairs]
    body = f"{filler}\n" + "\n".join(lines) + "\nticker=NQ1!"
    text, _ = redact_body(body.encode(), keep_bytes)

    assert "ZQ" not in text
    assert len(text.encode()) <= keep_bytes
