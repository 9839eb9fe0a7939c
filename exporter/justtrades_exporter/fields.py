"""Reading fields of one endpoint's JSON document, reporting every null, missing or mistyped field."""

from __future__ import annotations

from typing import Any, Callable

from . import values

FieldErrorHandler = Callable[[str, str, str], None]
"""Called with (endpoint, field, reason) for each field that gives no sample."""

_MISSING = object()


class FieldReader:
    """Typed access to the fields of one JSON object; each getter returns None after reporting a bad field.

    Paths are dotted (`broker_execution.workers_alive`). The `field` reported for an error is the path with
    per-item keys replaced by `*` (`cached_prices.*.updated`), so the error counter's labels stay a bounded set;
    the log line names the concrete item.
    """

    def __init__(self, endpoint: str, document: dict[str, Any], on_error: FieldErrorHandler):
        self.endpoint = endpoint
        self.document = document
        self._on_error = on_error

    def report(self, field: str, reason: str) -> None:
        self._on_error(self.endpoint, field, reason)

    def raw(self, path: str) -> Any:
        """Return the value at path, or the module's missing marker; use `has` to test for presence."""
        node: Any = self.document
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return _MISSING
            node = node[key]
        return node

    def has(self, path: str) -> bool:
        return self.raw(path) is not _MISSING

    def number(self, path: str) -> float | None:
        return self._convert(path, values.to_number)

    def boolean(self, path: str) -> float | None:
        return self._convert(path, values.to_boolean)

    def timestamp(self, path: str) -> float | None:
        return self._convert(path, values.to_timestamp)

    def string(self, path: str) -> str | None:
        raw = self._present(path)
        if raw is _MISSING:
            return None
        if not isinstance(raw, str) or not raw:
            self.report(path, f"expected a non-empty string, got {values.describe(raw)}")
            return None
        return raw

    def mapping(self, path: str) -> dict[str, Any] | None:
        raw = self._present(path)
        if raw is _MISSING:
            return None
        if not isinstance(raw, dict):
            self.report(path, f"expected an object, got {values.describe(raw)}")
            return None
        return raw

    def sequence(self, path: str) -> list[Any] | None:
        raw = self._present(path)
        if raw is _MISSING:
            return None
        if not isinstance(raw, list):
            self.report(path, f"expected a list, got {values.describe(raw)}")
            return None
        return raw

    def convert_item(self, raw: Any, field: str, item: str, convert: Callable[[Any], float]) -> float | None:
        """Convert one value found inside a mapping or list; `item` names it in the log (`cached_prices.NQ.last`)."""
        try:
            return convert(raw)
        except values.FieldValueError as error:
            self.report(field, f"{item}: {error}")
            return None

    def _present(self, path: str) -> Any:
        raw = self.raw(path)
        if raw is _MISSING:
            self.report(path, "missing")
        return raw

    def _convert(self, path: str, convert: Callable[[Any], float]) -> float | None:
        raw = self._present(path)
        if raw is _MISSING:
            return None

        try:
            return convert(raw)
        except values.FieldValueError as error:
            self.report(path, str(error))
            return None
