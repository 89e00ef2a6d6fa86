"""Tests for wshub.hub.auth: tokens, pinned algorithms, permissions, anonymous mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wshub.apps.chat import DEMO_ANONYMOUS_PERMISSIONS
from wshub.exceptions import AuthError
from wshub.hub.auth import (
    Authenticator,
    Grant,
    Permissions,
    make_token,
)

SECRET = "test-secret-that-is-long-enough-for-hs256"
NOW = 1_700_000_000.0


def clock() -> float:
    return NOW


def pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """Build a JWT by hand (PyJWT refuses to make the malicious ones)."""
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(NOW) + 60, "channels": ["chat:*:spr"], **extra}


def refused(auth: Authenticator, token: str | None) -> int:
    with pytest.raises(AuthError) as info:
        auth.authenticate(token)
    return info.value.code


def test_hs256_token_gives_identity() -> None:
    """A valid HS256 token yields its user, expiry, permissions and meta."""
    auth = Authenticator(secret=SECRET, clock=clock)
    token = make_token(SECRET, "alice", 60, ["chat:*:spr", "ticker:*:s"], meta={"n": 1}, now=NOW)
    identity = auth.authenticate(token)
    assert (identity.user, identity.expires, identity.meta, identity.anonymous) == (
        "alice",
        NOW + 60,
        {"n": 1},
        False,
    )
    assert identity.permissions.allows("chat:lobby", "p")
    assert identity.permissions.allows("ticker:AAPL", "s")
    assert not identity.permissions.allows("ticker:AAPL", "p")
    assert not identity.permissions.allows("board:x", "s")


def test_expired_token_is_113_only_when_correctly_signed() -> None:
    """Expired + valid signature → 113; expired + forged → 103 (expiry is not revealed)."""
    auth = Authenticator(secret=SECRET, clock=clock)
    expired = make_token(SECRET, "alice", 10, now=NOW - 20)
    assert refused(auth, expired) == 113
    forged_expired = make_token("another-secret-of-enough-length!!", "alice", 10, now=NOW - 20)
    assert refused(auth, forged_expired) == 103


def test_leeway_tolerates_skew() -> None:
    """leeway accepts a token that expired a moment ago."""
    auth = Authenticator(secret=SECRET, clock=clock, leeway=30)
    assert auth.authenticate(make_token(SECRET, "alice", 10, now=NOW - 20)).user == "alice"


def test_forged_signature_is_refused() -> None:
    """A token signed with another secret, or tampered with, is 103."""
    auth = Authenticator(secret=SECRET, clock=clock)
    assert refused(auth, make_token("not-the-secret-but-long-enough!!", "alice", now=NOW)) == 103
    header, _payload, signature = make_token(SECRET, "alice", now=NOW).split(".")
    tampered = b64(orjson.dumps(claims(sub="admin")))
    assert refused(auth, f"{header}.{tampered}.{signature}") == 103


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..", "é.é.é"])
def test_garbage_tokens_are_refused(garbage: str) -> None:
    """Anything that is not a JWT is 103, never another exception."""
    assert refused(Authenticator(secret=SECRET, clock=clock), garbage) == 103


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_refused(alg: str) -> None:
    """Unsigned tokens are refused whatever the spelling of none."""
    auth = Authenticator(secret=SECRET, clock=clock)
    token = hand_made({"alg": alg, "typ": "JWT"}, claims(), None)
    assert refused(auth, token) == 103


def test_unconfigured_algorithm_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """A correctly signed RS256 token is refused by a hub configured for HS256 only."""
    auth = Authenticator(secret=SECRET, clock=clock)
    token = jwt.encode(claims(), pem_private(rsa_key), algorithm="RS256")
    assert refused(auth, token) == 103
    hs512 = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    assert refused(auth, hs512) == 103


def test_key_confusion_attack_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token signed with the RS256 public key as secret is refused."""
    public = pem_public(rsa_key)
    forged = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), public)
    only_rsa = Authenticator(public_key=public, clock=clock)
    assert only_rsa.algorithms == {"RS256"}
    assert refused(only_rsa, forged) == 103
    # With both configured, HS256 is checked with the secret, never with the public key.
    both = Authenticator(secret=SECRET, public_key=public, clock=clock)
    assert refused(both, forged) == 103
    genuine = jwt.encode(claims(), pem_private(rsa_key), algorithm="RS256")
    assert both.authenticate(genuine).user == "alice"
    assert both.authenticate(make_token(SECRET, "bob", now=NOW)).user == "bob"


def test_rs256_and_es256(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    """Public keys select RS256 or ES256; make_token signs with the private key."""
    rsa_auth = Authenticator(public_key=pem_public(rsa_key).decode(), clock=clock)
    rs = make_token(pem_private(rsa_key), "alice", 60, algorithm="RS256", now=NOW)
    assert rsa_auth.authenticate(rs).user == "alice"
    ec_auth = Authenticator(public_key=pem_public(ec_key), clock=clock)
    assert ec_auth.algorithms == {"ES256"}
    es = make_token(pem_private(ec_key), "carol", 60, algorithm="ES256", now=NOW)
    assert ec_auth.authenticate(es).user == "carol"
    assert refused(rsa_auth, es) == 103
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(rsa_auth, make_token(pem_private(other), "x", algorithm="RS256", now=NOW)) == 103


@pytest.mark.parametrize(
    "bad",
    [
        {"sub": None},
        {"sub": ""},
        {"sub": 5},
        {"exp": None},
        {"exp": "tomorrow"},
        {"exp": True},
        {"nbf": NOW + 100},
        {"channels": "chat:*:s"},
        {"channels": ["chat:*"]},
        {"channels": ["chat:*:x"]},
        {"channels": [5]},
        {"meta": "x" * 2000},
    ],
)
def test_invalid_claims_are_refused(bad: dict[str, Any]) -> None:
    """Missing sub/exp, bad types, future nbf, bad channels or meta: all 103."""
    auth = Authenticator(secret=SECRET, clock=clock)
    values = {k: v for k, v in claims(**bad).items() if v is not None}
    assert refused(auth, jwt.encode(values, SECRET, algorithm="HS256")) == 103


def test_exp_optional_when_configured() -> None:
    """require_exp=False accepts tokens without exp (expires is None)."""
    auth = Authenticator(secret=SECRET, require_exp=False, clock=clock)
    assert auth.authenticate(make_token(SECRET, "alice", None, now=NOW)).expires is None


def test_audience_and_issuer() -> None:
    """aud and iss are enforced when configured."""
    auth = Authenticator(secret=SECRET, audience="hub", issuer="me", clock=clock)
    good = jwt.encode(claims(aud="hub", iss="me"), SECRET, algorithm="HS256")
    assert auth.authenticate(good).user == "alice"
    for wrong in (claims(aud="other", iss="me"), claims(iss="me"), claims(aud="hub", iss="you")):
        assert refused(auth, jwt.encode(wrong, SECRET, algorithm="HS256")) == 103


def test_refusals_are_generic_and_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """The error says only "unauthorized"; the reason goes to the debug log."""
    auth = Authenticator(secret=SECRET, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="wshub.hub"), pytest.raises(AuthError) as info:
        auth.authenticate(make_token("wrong-secret-but-long-enough-too!", "alice", now=NOW))
    assert str(info.value) == "103: unauthorized"
    assert "Signature" in caplog.text


def test_anonymous_mode() -> None:
    """Without a token: refused unless anonymous is allowed, then limited permissions."""
    assert refused(Authenticator(secret=SECRET), None) == 103
    nothing = Authenticator(allow_anonymous=True).authenticate(None)  # the library's default
    assert not nothing.permissions.allows("chat:lobby", "s")
    auth = Authenticator(allow_anonymous=True, anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS)
    identity = auth.authenticate(None)
    assert (identity.user, identity.anonymous, identity.expires) == ("", True, None)
    assert identity.permissions.allows("chat:lobby", "p")
    assert not identity.permissions.allows("ticker:AAPL", "p")
    assert not identity.permissions.allows("admin:x", "s")
    custom = Authenticator(allow_anonymous=True, anonymous_permissions=["ticker:*:s"])
    assert not custom.authenticate(None).permissions.allows("chat:lobby", "s")
    assert DEMO_ANONYMOUS_PERMISSIONS[0] == "chat:*:spr"


def test_permission_entries() -> None:
    """Entries split at the last colon; permissions are a union over matching globs."""
    assert Grant.parse("chat:*:sp") == Grant("chat:*", frozenset("sp"))
    perms = Permissions.parse(["chat:*:s", "chat:vip-?:p", "*:r"])
    assert perms.allows("chat:vip-1", "p") and perms.allows("chat:vip-1", "s")
    assert not perms.allows("chat:vip-10", "p")
    assert perms.allows("ticker:X", "r") and not perms.allows("ticker:X", "s")
    assert not perms.allows("Chat:x", "s")  # case-sensitive
    for bad in ["", ":s", "chat", "chat:*:", "chat:*:w"]:
        with pytest.raises(ValueError):
            Grant.parse(bad)


def test_make_token_checks_its_input() -> None:
    """make_token refuses an empty user and invalid permission entries."""
    with pytest.raises(ValueError):
        make_token(SECRET, "", 60)
    with pytest.raises(ValueError):
        make_token(SECRET, "alice", 60, ["chat"])
    decoded = jwt.decode(
        make_token(SECRET, "alice", 60, ["c:*:ps"], now=NOW),
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert decoded == {
        "sub": "alice",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "channels": ["c:*:ps"],
    }


def test_configuration_errors(rsa_key: rsa.RSAPrivateKey) -> None:
    """Algorithms must be usable with the configured keys; none is never usable."""
    with pytest.raises(ValueError):
        Authenticator(secret=SECRET, algorithms=["none"])
    with pytest.raises(ValueError):
        Authenticator(secret=SECRET, algorithms=["RS256"])
    with pytest.raises(ValueError):
        Authenticator(public_key=pem_public(rsa_key), algorithms=["HS256"])
    with pytest.raises(ValueError):
        Authenticator(public_key=pem_public(rsa_key), algorithms=["ES256"])
    with pytest.raises(ValueError):
        Authenticator(secret="")
    with pytest.raises(ValueError):
        Authenticator(secret="s3cret")
    with pytest.raises(ValueError):
        make_token("s3cret", "alice")
    ed = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError):
        Authenticator(public_key=ed)
