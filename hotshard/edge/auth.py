"""Who is calling: JWT verification for the WebSocket `$connect` and the local HTTP API.

Locally tokens are HS256 with a shared secret (`mint_token` makes them); in AWS they are
Cognito tokens (RS256), checked against the user pool's JWKS at JWT_ISSUER, with JWT_AUDIENCE
matched against `aud` (ID tokens) or `client_id` (access tokens). The user is one claim
(`sub` by default). A verifier without a secret or an issuer refuses everything.
"""

import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from hotshard.reasons import HotshardError, Reason

LEEWAY_S = 5
CACHE_TTL_S = 300.0
"""How long a verified token's claims are answered without verifying it again (bounded
also by its exp)."""
CACHE_SIZE = 10_000


class AuthError(HotshardError):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNAUTHENTICATED, detail)


class TokenVerifier:
    def __init__(
        self,
        *,
        secret: str = "",
        issuer: str = "",
        audience: str = "",
        user_claim: str = "sub",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.user_claim = user_claim
        self.clock = clock
        self._cache: dict[str, tuple[dict[str, Any], float]] = {}
        """token -> (its verified claims, until when they may be answered again)."""
        self._jwks: jwt.PyJWKClient | None = None
        if not secret and issuer:
            self._jwks = jwt.PyJWKClient(f"{self.issuer}/.well-known/jwks.json", lifespan=3600)

    def claims(self, token: str) -> dict[str, Any]:
        """The token's verified claims; raises AuthError. A token verified before is not
        verified again while it is valid (at most CACHE_TTL_S): an RS256 check costs
        milliseconds, and clients reconnect and call with the same token again and again."""
        if not token:
            raise AuthError("a token is required")
        now = self.clock()
        cached = self._cache.get(token)
        if cached is not None:
            claims, until = cached
            if now < until and _current(claims, now):
                return dict(claims)
            self._cache.pop(token, None)
        claims = self._verify(token)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = (claims, min(float(exp) + LEEWAY_S, now + CACHE_TTL_S))
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            if self.secret:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self.secret,
                    algorithms=["HS256"],
                    options={"require": ["exp"], "verify_aud": False},
                    leeway=LEEWAY_S,
                )
            elif self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    issuer=self.issuer,
                    options={"require": ["exp", "iss"], "verify_aud": False},
                    leeway=LEEWAY_S,
                )
            else:
                raise AuthError("no token verifier is configured")
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if self.audience and self.audience not in (claims.get("aud"), claims.get("client_id")):
            raise AuthError("token is for another audience")
        return claims

    def user(self, token: str) -> str:
        return user_of(self.claims(token), self.user_claim)


def _current(claims: Mapping[str, Any], now: float) -> bool:
    """Not expired and already valid (exp, nbf with LEEWAY_S), as pyjwt checks them."""
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and now > float(exp) + LEEWAY_S:
        return False
    return not (isinstance(nbf, int | float) and now < float(nbf) - LEEWAY_S)


def user_of(claims: Mapping[str, Any], claim: str) -> str:
    user = claims.get(claim)
    if not isinstance(user, str | int) or isinstance(user, bool) or str(user) == "":
        raise AuthError(f"token has no {claim} claim")
    return str(user)


def bearer(headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> str:
    """The token of a request: `Authorization: Bearer ...` or `?token=...` (browsers cannot
    set headers on a WebSocket)."""
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return (query or {}).get("token", "")


def mint_token(secret: str, user: str, ttl_s: int = 3600, **claims: Any) -> str:
    """An HS256 token for the local gateway (what Cognito issues in AWS)."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s, **claims}, secret, "HS256")
