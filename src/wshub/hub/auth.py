"""Connection tokens (JWT) and channel permissions.

The format of tokens and of the ``channels`` claim is specified in docs/hub.md. The rules that
matter for security:

* the accepted algorithms are fixed by configuration, and the key is chosen by the
  configuration, never by the token: an HS256 token is checked with the secret, an RS256/ES256
  token with the public key. ``alg: none`` and unconfigured algorithms are refused, which also
  defeats the "verify an RS256 public key as an HS256 secret" confusion attack;
* every refusal is :class:`~wshub.exceptions.AuthError` with code 103 and a generic message,
  except a correctly signed token whose ``exp`` passed (113, so that the client knows to
  fetch a new one). The reason is logged at debug level only;
* time comes from an injected clock, so that expiry is tested without sleeping.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from wshub.exceptions import AuthError
from wshub.hub.wire import ErrorCode

__all__ = [
    "Authenticator",
    "Grant",
    "Identity",
    "Permissions",
    "make_token",
]

logger = logging.getLogger("wshub.hub")

_PERMS = frozenset("spr")
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
#: Shortest HMAC secret accepted, in bytes: HS256's output size (RFC 7518 §3.2).
MIN_SECRET_SIZE = 32


def _check_secret(secret: str | bytes) -> None:
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size < MIN_SECRET_SIZE:
        raise ValueError(f"the secret must be at least {MIN_SECRET_SIZE} bytes")


def _unauthorized() -> AuthError:
    return AuthError(ErrorCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED.message)


@dataclass(frozen=True, slots=True)
class Grant:
    """One entry of the ``channels`` claim: a channel glob and the permissions it grants."""

    pattern: str
    perms: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Grant:
        """Parse ``"<pattern>:<perms>"``, split at the last ``:``.

        Raises:
            ValueError: not of that form, empty pattern, or perms not a non-empty subset
                of ``spr``.
        """
        if not isinstance(text, str):
            raise ValueError("permission entry must be a string")
        pattern, sep, perms = text.rpartition(":")
        if not sep or not pattern or not perms or not set(perms) <= _PERMS:
            raise ValueError(f"invalid permission entry: {text!r}")
        return cls(pattern, frozenset(perms))

    def serialize(self) -> str:
        return f"{self.pattern}:{''.join(sorted(self.perms))}"


@dataclass(frozen=True, slots=True)
class Permissions:
    """The union of a token's grants."""

    grants: tuple[Grant, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Permissions:
        """Parse a ``channels`` claim (a list of ``"<pattern>:<perms>"``).

        Raises:
            ValueError: the claim is not a list of valid entries.
        """
        if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
            raise ValueError("channels must be a list of strings")
        return cls(tuple(Grant.parse(entry) for entry in entries))

    def allows(self, channel: str, perm: str) -> bool:
        """Whether ``perm`` (``"s"``, ``"p"`` or ``"r"``) is granted on ``channel``."""
        return any(
            perm in grant.perms and fnmatch.fnmatchcase(channel, grant.pattern)
            for grant in self.grants
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, as established by :meth:`Authenticator.authenticate`.

    Attributes:
        user: the token's ``sub``; ``""`` when anonymous.
        permissions: what the connection may do.
        expires: the token's ``exp`` in seconds since the Unix epoch, or ``None``.
        meta: the token's ``meta`` claim, or ``None``.
        anonymous: whether the connection has no token.
    """

    user: str
    permissions: Permissions
    expires: float | None = None
    meta: Any = None
    anonymous: bool = False


class Authenticator:
    """Verifies connection tokens.

    Args:
        secret: the HMAC secret for HS256 tokens, at least 32 bytes (a shorter one can be
            brute-forced from a single token).
        public_key: a PEM public key for RS256 (RSA) or ES256 (EC P-256) tokens.
        algorithms: the accepted algorithms; by default HS256 with ``secret`` and RS256 or
            ES256 according to ``public_key``'s type. Each must fit a configured key.
        allow_anonymous: accept connections without a token.
        anonymous_permissions: the ``channels`` entries anonymous connections get (default:
            none).
        require_exp: refuse tokens without ``exp``.
        audience: when set, tokens must carry this ``aud``.
        issuer: when set, tokens must carry this ``iss``.
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf``.
        max_meta_size: largest ``meta`` claim in bytes once encoded.
        clock: returns the current time in seconds since the Unix epoch.

    Raises:
        ValueError: an algorithm is unknown, ``none``, or lacks a configured key; the secret
            is shorter than 32 bytes.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | bytes | None = None,
        algorithms: Sequence[str] | None = None,
        allow_anonymous: bool = False,
        anonymous_permissions: Iterable[str] = (),
        require_exp: bool = True,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        max_meta_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None
        key_algorithms: frozenset[str] = frozenset()
        default: list[str] = []
        if secret is not None:
            _check_secret(secret)
            default.append("HS256")
        if public_key is not None:
            data = public_key.encode() if isinstance(public_key, str) else public_key
            loaded = load_pem_public_key(data)
            if isinstance(loaded, rsa.RSAPublicKey):
                self._public_key, key_algorithms = loaded, _RSA_ALGORITHMS
                default.append("RS256")
            elif isinstance(loaded, ec.EllipticCurvePublicKey):
                self._public_key, key_algorithms = loaded, _EC_ALGORITHMS
                default.append("ES256")
            else:
                raise ValueError("public_key must be an RSA or EC key")
        chosen = list(algorithms) if algorithms is not None else default
        for alg in chosen:
            if alg in _HMAC_ALGORITHMS and secret is None:
                raise ValueError(f"{alg} needs a secret")
            if alg not in _HMAC_ALGORITHMS and alg not in key_algorithms:
                raise ValueError(f"algorithm {alg!r} is not usable with the configured keys")
        self._algorithms = frozenset(chosen)
        self.allow_anonymous = allow_anonymous
        self._anonymous = Permissions.parse(anonymous_permissions)
        self._require_exp = require_exp
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._max_meta_size = max_meta_size
        self._clock = clock

    @property
    def algorithms(self) -> frozenset[str]:
        """The accepted algorithms."""
        return self._algorithms

    @property
    def leeway(self) -> float:
        """Seconds a token stays valid past its ``exp`` (clock skew between issuer and hub)."""
        return self._leeway

    def authenticate(self, token: str | None) -> Identity:
        """Verify ``token`` (``None``: anonymous) and return who the connection is.

        Raises:
            AuthError: 103 when the token is missing (and anonymous is off), malformed,
                forged, uses an algorithm that is not accepted, or has invalid claims;
                113 when it is correctly signed but expired.
        """
        if token is None:
            if not self.allow_anonymous:
                logger.debug("token refused: missing")
                raise _unauthorized()
            return Identity("", self._anonymous, anonymous=True)
        try:
            claims = self._decode(token)
            return self._identity(claims)
        except AuthError:
            raise
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            logger.debug("token refused: %s: %s", type(exc).__name__, exc)
            raise _unauthorized() from exc

    def _decode(self, token: str) -> dict[str, Any]:
        alg = jwt.get_unverified_header(token).get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise ValueError(f"algorithm not accepted: {alg!r}")
        key: Any = self._secret if alg in _HMAC_ALGORITHMS else self._public_key
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=self._audience,
            issuer=self._issuer,
            # Time claims are checked below against our clock; the signature, aud and iss
            # are checked here.
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": self._audience is not None,
                "verify_iss": self._issuer is not None,
            },
        )
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        now = self._clock()
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 256:
            raise ValueError("sub must be a non-empty string")
        exp = claims.get("exp")
        if exp is None:
            if self._require_exp:
                raise ValueError("exp is required")
        elif not _is_number(exp):
            raise ValueError("exp must be a number")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self._leeway):
            raise ValueError("nbf in the future or invalid")
        if exp is not None and exp <= now - self._leeway:
            logger.debug("token refused: expired")
            raise AuthError(ErrorCode.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED.message)
        permissions = Permissions.parse(claims.get("channels", ()))
        meta = claims.get("meta")
        if meta is not None and len(orjson.dumps(meta)) > self._max_meta_size:
            raise ValueError("meta too large")
        return Identity(sub, permissions, None if exp is None else float(exp), meta)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def make_token(
    secret: str | bytes,
    user: str,
    ttl: float | None = 3600.0,
    channels: Iterable[str] = (),
    *,
    algorithm: str = "HS256",
    meta: Any = None,
    now: float | None = None,
) -> str:
    """Create a connection token (what ``wshub token`` prints).

    Args:
        secret: the HMAC secret, or a PEM private key for RS256/ES256.
        user: the user id (``sub``).
        ttl: seconds until the token expires; ``None`` makes a token without ``exp``
            (refused unless the hub runs with ``require_exp=False``).
        channels: permission entries ``"<pattern>:<perms>"`` (checked here).
        algorithm: the signing algorithm.
        meta: the ``meta`` claim (shown in presence and publications).
        now: the issue time in seconds since the Unix epoch (default: now).

    Raises:
        ValueError: an entry of ``channels`` is invalid, ``user`` is empty, or an HMAC
            secret is shorter than 32 bytes.
    """
    if not user:
        raise ValueError("user must not be empty")
    if algorithm in _HMAC_ALGORITHMS:
        _check_secret(secret)
    entries = [grant.serialize() for grant in Permissions.parse(list(channels)).grants]
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user, "iat": int(issued), "channels": entries}
    if ttl is not None:
        claims["exp"] = int(issued + ttl)
    if meta is not None:
        claims["meta"] = meta
    return jwt.encode(claims, secret, algorithm=algorithm)
