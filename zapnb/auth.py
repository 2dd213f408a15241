"""Who runs a function: :class:`UserIdentity`, set with ``db.as_user(...)``, and ``ctx.auth`` (:class:`Auth`).

Identities are set by the caller, not taken from a verified token (see ``docs/functions.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from zapnb.errors import InvalidValueError

__all__ = ["Auth", "UserIdentity"]


@dataclass(frozen=True)
class UserIdentity:
    """Who runs a function: what ``ctx.auth.get_user_identity()`` returns (Convex's ``UserIdentity``).

    ``token_identifier`` defaults to ``"<issuer>|<subject>"``, as Convex builds it. Every other claim (a
    name, an email, a role...) is in ``claims``. Build one with :meth:`of` from a dict or a subject.

    Examples
    --------
    >>> alice = UserIdentity.of({"subject": "alice", "email": "alice@example.com"})
    >>> alice.token_identifier, alice.claims["email"]
    ('zapnb|alice', 'alice@example.com')
    >>> UserIdentity.of("bob").subject
    'bob'
    """

    subject: str
    issuer: str = "zapnb"
    token_identifier: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise InvalidValueError(
                f"A user identity needs a subject (a non-empty str that names the user), not "
                f"{self.subject!r}. Pass db.as_user('alice') or db.as_user({{'subject': 'alice', ...}}).",
                path=".subject",
                value=self.subject,
            )
        if not self.token_identifier:
            object.__setattr__(self, "token_identifier", f"{self.issuer}|{self.subject}")
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))

    def __hash__(self) -> int:
        return hash((self.subject, self.issuer, self.token_identifier))

    @classmethod
    def of(cls, identity: UserIdentity | Mapping[str, Any] | str) -> UserIdentity:
        """An identity from a subject, a dict of claims (Convex's camelCase names work too) or an identity."""
        if isinstance(identity, UserIdentity):
            return identity
        if isinstance(identity, str):
            return cls(identity)
        if not isinstance(identity, Mapping):
            raise InvalidValueError(
                f"db.as_user() takes a subject (a str such as 'alice'), a dict of claims with at least "
                f"'subject', a zapnb.UserIdentity or None, not {type(identity).__name__} {identity!r}.",
                path="",
                value=identity,
            )
        claims = dict(identity)
        snake, camel = claims.pop("token_identifier", ""), claims.pop("tokenIdentifier", "")
        return cls(
            subject=claims.pop("subject", ""),
            issuer=claims.pop("issuer", "zapnb"),
            token_identifier=snake or camel,
            claims=claims,
        )


@dataclass(frozen=True, slots=True)
class Auth:
    """``ctx.auth``: the identity of the caller, set with ``db.as_user(...)``."""

    identity: UserIdentity | None = None

    def get_user_identity(self) -> UserIdentity | None:
        """The caller's identity, or ``None`` when the database was not opened ``as_user``."""
        return self.identity
