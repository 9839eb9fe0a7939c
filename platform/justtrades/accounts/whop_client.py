"""A client for the Whop REST API's membership list.

`GET {base}/memberships` with `Authorization: Bearer <key>` returns `{"data": [...], ...}`. Two pagination
styles are followed:

- cursor pages (the current API, base `https://api.whop.com/api/v1`): `page_info.end_cursor` is sent back as
  `after` until `page_info.has_next_page` is false, the cursor is missing or a page comes back empty;
- numbered pages (the older v2 and v5 APIs): `pagination.next_page` is sent back as `page` until it is null.

Each membership has an `id`, a `status` (active, trialing, past_due, completed, canceled, expired, ...) and a
`user` object with the member's `email` (v2 and v5 put `email` on the membership itself).
"""

from __future__ import annotations

import dataclasses
import logging

import requests

logger = logging.getLogger(__name__)


class WhopAPIError(Exception):
    """A call to the Whop API failed; `status` is the HTTP status, or None when no response arrived."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Membership:
    id: str
    status: str
    email: str | None
    whop_user_id: str | None = None


class WhopClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        company_id: str | None = None,
        page_size: int = 50,
        max_pages: int = 200,
        timeout: float = 10.0,
        http: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.company_id = company_id
        self.page_size = page_size
        self.max_pages = max_pages
        self.timeout = timeout
        self._http = http or requests.Session()

    def list_memberships(self) -> list[Membership]:
        """Return every membership, following the pagination; raise WhopAPIError on any failure."""
        memberships: list[Membership] = []
        params = self._first_page_params()
        seen_positions = set()

        for _ in range(self.max_pages):
            body = self._get("/memberships", params)
            items = _data_items(body)
            memberships.extend(_parse_membership(item) for item in items)

            next_params = _next_page_params(body, params)
            if next_params is None or not items:
                return memberships

            # A server that repeats a cursor or page number would keep this loop going until max_pages.
            position = (next_params.get("after"), next_params.get("page"))
            if position in seen_positions:
                raise WhopAPIError(f"the Whop API returned the same page position {position} twice; stopping")
            seen_positions.add(position)
            params = next_params

        raise WhopAPIError(
            f"the membership list has more than {self.max_pages} pages of {self.page_size}; "
            "raise JT_WHOP_MAX_PAGES or JT_WHOP_PAGE_SIZE"
        )

    def _first_page_params(self) -> dict:
        # `first` sizes cursor pages; `per` sizes the numbered pages of the older APIs.
        params = {"first": self.page_size, "per": self.page_size}
        if self.company_id:
            params["company_id"] = self.company_id
        return params

    def _get(self, path: str, params: dict) -> dict:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.Timeout as error:
            raise WhopAPIError(f"GET {url} timed out after {self.timeout}s") from error
        except requests.RequestException as error:
            raise WhopAPIError(f"GET {url} failed: {type(error).__name__}") from error

        if response.status_code in (401, 403):
            raise WhopAPIError(
                f"GET {url} was rejected with HTTP {response.status_code}: check JT_WHOP_API_KEY and its "
                "member:basic:read and member:email:read permissions",
                response.status_code,
            )
        if response.status_code != 200:
            raise WhopAPIError(f"GET {url} returned HTTP {response.status_code}", response.status_code)

        try:
            body = response.json()
        except ValueError as error:
            raise WhopAPIError(f"GET {url} returned a body that is not JSON", response.status_code) from error
        if not isinstance(body, dict):
            raise WhopAPIError(f"GET {url} returned JSON that is not an object", response.status_code)
        return body


def _data_items(body: dict) -> list[dict]:
    data = body.get("data")
    if not isinstance(data, list):
        raise WhopAPIError("the Whop API response has no 'data' list")
    return [item for item in data if isinstance(item, dict)]


def _parse_membership(item: dict) -> Membership:
    user = item.get("user") if isinstance(item.get("user"), dict) else {}
    email = user.get("email") or item.get("email")
    whop_user_id = user.get("id") or (item.get("user") if isinstance(item.get("user"), str) else None)
    return Membership(
        id=str(item.get("id") or ""),
        status=str(item.get("status") or "").strip().lower(),
        email=email if isinstance(email, str) and email.strip() else None,
        whop_user_id=whop_user_id,
    )


def _next_page_params(body: dict, params: dict) -> dict | None:
    page_info = body.get("page_info")
    if isinstance(page_info, dict):
        cursor = page_info.get("end_cursor")
        # A missing has_next_page counts as true, as in Whop's own SDKs; an empty page still ends the list.
        if cursor and page_info.get("has_next_page", True):
            return {**params, "after": cursor}
        return None

    pagination = body.get("pagination")
    if isinstance(pagination, dict) and pagination.get("next_page"):
        return {**params, "page": pagination["next_page"]}
    return None
