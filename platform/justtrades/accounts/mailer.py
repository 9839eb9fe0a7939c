"""Activation emails over SMTP (smtplib), with STARTTLS, implicit TLS or no TLS as configured."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import quote

from .settings import AccountsSettings

logger = logging.getLogger(__name__)


class MailError(Exception):
    """Sending failed; the message names the SMTP server and the reason, never the password."""


class Mailer:
    def __init__(self, settings: AccountsSettings):
        self.settings = settings

    @property
    def configured(self) -> bool:
        return self.settings.smtp_enabled

    def activation_link(self, token: str) -> str:
        return f"{self.settings.public_url}/activate?token={quote(token)}"

    def send_activation(self, to_address: str, token: str, *, reminder: bool = False) -> None:
        """Send the activation email with a link that carries `token`; raise MailError on failure."""
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to_address
        message["Subject"] = (
            "Reminder: activate your Just Trades account" if reminder else "Activate your Just Trades account"
        )
        message.set_content(
            "Your Just Trades membership is active.\n\n"
            f"Choose a password to activate your account:\n{self.activation_link(token)}\n\n"
            "The link works until a newer activation email replaces it.\n"
        )
        self.send(message)

    def send(self, message: EmailMessage) -> None:
        settings = self.settings
        if not settings.smtp_enabled:
            raise MailError("SMTP is not configured: set JT_SMTP_HOST (and JT_SMTP_PORT, JT_SMTP_USER, JT_SMTP_PASSWORD)")

        server = f"{settings.smtp_host}:{settings.smtp_port}"
        try:
            with self._connect() as smtp:
                if settings.smtp_security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_user:
                    smtp.login(settings.smtp_user, settings.smtp_password or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as error:
            raise MailError(f"SMTP server {server} rejected the login (code {error.smtp_code}): check JT_SMTP_USER and JT_SMTP_PASSWORD") from error
        except smtplib.SMTPException as error:
            raise MailError(f"SMTP server {server} rejected the message: {type(error).__name__}: {error}") from error
        except OSError as error:
            raise MailError(f"SMTP server {server} is unreachable: {type(error).__name__}: {error}") from error

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.smtp_security == "ssl":
            return smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        return smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds)
