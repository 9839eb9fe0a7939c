"""A local SMTP server (aiosmtpd) on 127.0.0.1 and an OS-picked port, keeping every message it receives.

With `user` and `password` set it requires AUTH LOGIN/PLAIN (allowed without TLS, as this is loopback only).
Use it in-process: `with SmtpPeer() as smtp: smtp.port; smtp.messages`.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller probes `self.port` after binding, so read the port the OS picked first."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpPeer:
    def __init__(self, user: str | None = None, password: str | None = None):
        self.user = user
        self.password = password
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.failed_logins = 0
        self._lock = threading.Lock()
        self._controller: _EphemeralPortController | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> "SmtpPeer":
        options = {}
        if self.user is not None:
            options = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self._controller = _EphemeralPortController(self, hostname="127.0.0.1", port=0, ready_timeout=10, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def __enter__(self) -> "SmtpPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    # aiosmtpd handler hooks

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            ok = auth_data.login.decode() == self.user and auth_data.password.decode() == self.password
            if ok:
                return AuthResult(success=True)
        with self._lock:
            self.failed_logins += 1
        return AuthResult(success=False, handled=False)
