"""Cognito-style RS256 tokens checked against a JWKS served over HTTP (pyjwt[crypto]), and the
local HS256 secret."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hotshard.edge.auth import AuthError, TokenVerifier, mint_token


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return _key(), _key()


@pytest.fixture
def issuer(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Iterator[str]:
    """A user pool stand-in: /.well-known/jwks.json with the first key (kid k1)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys[0].public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _rs256(key: rsa.RSAPrivateKey, issuer: str, kid: str = "k1", **claims: object) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iss": issuer, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_rs256_tokens_are_checked_against_the_pools_jwks(keys, issuer):
    verifier = TokenVerifier(issuer=issuer, audience="app-1")
    # access tokens name the app client in client_id, ID tokens in aud
    assert verifier.user(_rs256(keys[0], issuer, client_id="app-1")) == "alice"
    assert verifier.user(_rs256(keys[0], issuer, aud="app-1")) == "alice"
    for token in (
        _rs256(keys[1], issuer, client_id="app-1"),  # signed by a key not in the JWKS
        _rs256(keys[0], issuer, kid="k9", client_id="app-1"),  # unknown key id
        _rs256(keys[0], "http://elsewhere", client_id="app-1"),  # another issuer
        _rs256(keys[0], issuer, client_id="app-2"),  # another app client
        _rs256(keys[0], issuer, client_id="app-1", exp=int(time.time()) - 60),
        mint_token("s", "alice"),  # HS256 where RS256 is expected
    ):
        with pytest.raises(AuthError):
            verifier.user(token)


def test_hs256_with_the_local_secret():
    verifier = TokenVerifier(secret="s")
    assert verifier.user(mint_token("s", "bob")) == "bob"
    with pytest.raises(AuthError):
        verifier.user(mint_token("other", "bob"))
    with pytest.raises(AuthError):
        TokenVerifier().user(mint_token("s", "bob"))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per signature check (jwt.decode call) from now on."""
    calls: list[int] = []
    real = jwt.decode

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_verified_token_is_not_verified_again_until_it_expires(decodes: list[int]) -> None:
    now = [time.time()]
    verifier = TokenVerifier(secret="s" * 32, clock=lambda: now[0])
    token = mint_token("s" * 32, "alice", ttl_s=60)
    calls = decodes
    assert verifier.user(token) == "alice"
    claims = verifier.claims(token)
    claims["sub"] = "mallory"  # a caller's copy: the cache keeps what was verified
    assert verifier.user(token) == "alice"
    assert len(calls) == 1
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(AuthError):
        verifier.claims(forged)  # another string: verified, refused
    calls.clear()
    now[0] += 60 + 6  # past exp + leeway (on the verifier's clock): verified again
    verifier.claims(token)
    assert len(calls) == 1


def test_the_cache_answers_at_most_for_its_ttl(decodes: list[int]) -> None:
    from hotshard.edge import auth  # noqa: PLC0415

    now = [time.time()]
    verifier = TokenVerifier(secret="s" * 32, clock=lambda: now[0])
    token = mint_token("s" * 32, "bob", ttl_s=3600)
    calls = decodes
    verifier.claims(token)
    now[0] += auth.CACHE_TTL_S - 1
    verifier.claims(token)
    assert len(calls) == 1
    now[0] += 2
    verifier.claims(token)
    assert len(calls) == 2
