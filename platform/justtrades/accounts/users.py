"""Users: creation, password hashing, authentication and the object Flask-Login keeps in the session."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from flask_login import UserMixin
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..db.models import User

ROLES = ("admin", "user")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte-long password on every attempt would be a cheap denial of service
MAX_EMAIL_LENGTH = 255

# Checked against when the email is unknown, so a login takes as long for a missing user as for a wrong password.
_DUMMY_PASSWORD_HASH = generate_password_hash(secrets.token_hex(16))


class UserError(ValueError):
    """Invalid user input; the message names the value and what to do."""


@dataclasses.dataclass(frozen=True)
class SessionUser(UserMixin):
    """The logged-in user as Flask-Login and the auth decorators use it, without the password hash."""

    id: int
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        return str(self.id)

    @classmethod
    def from_row(cls, user: User) -> "SessionUser":
        return cls(id=user.id, email=user.email, role=user.role)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def normalize_email(email) -> str:
    """Return the email trimmed and lower-cased, or raise UserError when it cannot be an address."""
    if not isinstance(email, str) or not email.strip():
        raise UserError("email is missing: send an address such as name@example.com")

    normalized = email.strip().lower()
    local, _, domain = normalized.partition("@")
    if not local or not domain or " " in normalized:
        raise UserError(f"email {normalized!r} is not an address: send one such as name@example.com")
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise UserError(f"email is {len(normalized)} characters long; the limit is {MAX_EMAIL_LENGTH}")
    return normalized


def validate_password(password) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password is longer than {MAX_PASSWORD_LENGTH} characters; use a shorter one")
    return password


def validate_role(role) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    return role


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(func.lower(User.email) == normalize_email(email))).first()


def create_user(session: Session, email: str, password: str | None, role: str = "user", *, approved: bool = True) -> User:
    """Insert a user with a hashed password (the caller commits); the first admin is made this way.

    A user created with a password counts as activated. Raises UserError for an invalid or taken email,
    a short password or an unknown role.
    """
    normalized = normalize_email(email)
    validate_role(role)
    if password is not None:
        validate_password(password)

    if find_user_by_email(session, normalized) is not None:
        raise UserError(f"a user with email {normalized!r} already exists; log in or pick another address")

    user = User(email=normalized, role=role, approved=approved, is_affiliate=False, activation_resends=0)
    if password is not None:
        user.password_hash = generate_password_hash(password)
        user.activated_at = utc_now()
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    user.password_hash = generate_password_hash(validate_password(password))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """Return the user whose email and password match and who may log in, or None.

    A user may log in when it has a password and is approved. An admin may log in even when not approved,
    so a Whop sync can never lock the operators out.
    """
    try:
        user = find_user_by_email(session, email)
    except UserError:
        user = None

    if user is None or user.password_hash is None:
        check_password_hash(_DUMMY_PASSWORD_HASH, password)
        return None

    if not check_password_hash(user.password_hash, password):
        return None
    if not may_log_in(user):
        return None
    return user


def may_log_in(user: User) -> bool:
    return user.role == "admin" or bool(user.approved)


def new_activation_token() -> tuple[str, str]:
    """Return a fresh activation token and the digest to store; only the digest reaches the database."""
    token = secrets.token_urlsafe(32)
    return token, hash_activation_token(token)


def hash_activation_token(token: str) -> str:
    # The token carries 256 random bits, so an unsalted SHA-256 digest cannot be reversed by guessing.
    return hashlib.sha256(token.encode()).hexdigest()
