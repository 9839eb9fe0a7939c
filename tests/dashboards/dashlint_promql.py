"""A PromQL scanner that finds what the dashboard lint needs: selectors, their matchers and ranges, and the
function calls around each selector.

It is not a full parser. The real Prometheus in test_live_queries.py decides whether a query is valid PromQL,
so this module only has to locate vector selectors in queries that Prometheus accepts.
Grafana variables (`$job`, `${datasource}`, `$__rate_interval`) are kept as written.
"""

from __future__ import annotations

import dataclasses
import re

# Words that are PromQL syntax, not metric names. Aggregations and functions are recognised by the "(" that
# follows them (or by a `by`/`without` clause), so they need no list.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<operator>=~|!~|==|!=|<=|>=|[-+*/%^<>=@])
  | (?P<punctuation>[(){}\[\],:])
""", re.VERBOSE)


class PromQLScanError(ValueError):
    """The query contains text the scanner cannot tokenise or unbalanced brackets."""


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclasses.dataclass(frozen=True)
class Matcher:
    label: str
    operator: str
    value: str


@dataclasses.dataclass(frozen=True)
class Selector:
    """A vector selector: `name{matchers}` with an optional `[range]`, and the calls around it."""

    name: str
    matchers: tuple[Matcher, ...]
    range: str | None
    # Function or aggregation names from the outermost to the innermost; None for a plain parenthesis.
    calls: tuple[str | None, ...]

    @property
    def innermost_call(self) -> str | None:
        return self.calls[-1] if self.calls else None


@dataclasses.dataclass(frozen=True)
class Scan:
    selectors: tuple[Selector, ...]
    # Ranges that do not belong to a selector (subqueries such as `(...)[5m:1m]`).
    other_ranges: tuple[str, ...]


def tokenize(expr: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if not match:
            raise PromQLScanError(f"cannot read {expr[position:position + 20]!r} at offset {position} of {expr!r}")
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group()))
        position = match.end()
    return tokens


def scan(expr: str) -> Scan:
    """Return every vector selector of `expr` with its matchers, range and enclosing calls."""
    return _Scanner(tokenize(expr), expr).run()


class _Scanner:
    def __init__(self, tokens: list[Token], expr: str):
        self.tokens = tokens
        self.expr = expr
        self.index = 0
        self.calls: list[str | None] = []
        self.pending_call: str | None = None
        self.selectors: list[Selector] = []
        self.other_ranges: list[str] = []

    def peek(self, offset: int = 0) -> Token | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise PromQLScanError(f"query ends early: {self.expr!r}")
        self.index += 1
        return token

    def run(self) -> Scan:
        while self.peek() is not None:
            self.step()
        if self.calls:
            raise PromQLScanError(f"unclosed parenthesis in {self.expr!r}")
        return Scan(tuple(self.selectors), tuple(self.other_ranges))

    def step(self) -> None:
        token = self.take()
        following = self.peek()

        if token.kind == "identifier" and token.text in LABEL_LIST_KEYWORDS:
            if following is not None and following.text == "(":
                self.skip_group("(", ")")
        elif token.kind == "identifier" and token.text in KEYWORDS:
            pass
        elif token.kind == "identifier" and following is not None and following.text == "(":
            # A function call or an aggregation with its clause after the parenthesis.
            self.take()
            self.calls.append(token.text)
        elif token.kind == "identifier" and following is not None and following.text in ("by", "without"):
            # An aggregation with its clause first: `sum by (le) (...)`.
            self.pending_call = token.text
        elif token.kind == "identifier":
            self.read_selector(token.text)
        elif token.text == "{":
            self.index -= 1
            self.read_selector("")
        elif token.text == "(":
            self.calls.append(self.pending_call)
            self.pending_call = None
        elif token.text == ")":
            if not self.calls:
                raise PromQLScanError(f"unbalanced ')' in {self.expr!r}")
            self.calls.pop()
        elif token.text == "[":
            self.other_ranges.append(self.read_until("]"))

    def read_selector(self, name: str) -> None:
        matchers: tuple[Matcher, ...] = ()
        if self.peek() is not None and self.peek().text == "{":
            self.take()
            matchers = self.read_matchers()

        selector_range = None
        if self.peek() is not None and self.peek().text == "[":
            self.take()
            selector_range = self.read_until("]")

        self.selectors.append(Selector(name, matchers, selector_range, tuple(self.calls)))

    def read_matchers(self) -> tuple[Matcher, ...]:
        matchers = []
        while True:
            token = self.take()
            if token.text == "}":
                return tuple(matchers)
            if token.text == ",":
                continue

            operator, value = self.take(), self.take()
            if token.kind != "identifier" or operator.text not in ("=", "!=", "=~", "!~") or value.kind != "string":
                raise PromQLScanError(f"bad label matcher near {token.text!r} in {self.expr!r}")
            matchers.append(Matcher(token.text, operator.text, value.text[1:-1]))

    def read_until(self, closing: str) -> str:
        parts = []
        while (token := self.take()).text != closing:
            parts.append(token.text)
        return "".join(parts)

    def skip_group(self, opening: str, closing: str) -> None:
        depth = 0
        while True:
            token = self.take()
            depth += token.text == opening
            depth -= token.text == closing
            if depth == 0:
                return
