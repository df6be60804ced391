"""Enrollment tokens."""
from __future__ import annotations

import hashlib
import math
from collections import Counter

from collector.domain.tokens import hash_token, looks_like_token, new_token, token_matches


def test_new_tokens_look_right_and_differ() -> None:
    tokens = [new_token() for _ in range(200)]
    assert len(set(tokens)) == 200
    for t in tokens:
        assert t.startswith("cfe_") and len(t) == 4 + 43
        assert looks_like_token(t)


def test_tokens_have_high_entropy() -> None:
    body = "".join(new_token()[4:] for _ in range(200))
    counts = Counter(body)
    entropy = -sum(c / len(body) * math.log2(c / len(body)) for c in counts.values())
    assert entropy > 5.8  # base64url alphabet: at most 6 bits per character


def test_hash_is_sha256_hex_and_ignores_surrounding_whitespace() -> None:
    t = new_token()
    h = hash_token(t)
    assert h == hashlib.sha256(t.encode()).hexdigest()
    assert h == hash_token(f"  {t}\n")
    assert t not in h
    assert hash_token(new_token()) != h
    assert token_matches(t + "\n", h) and token_matches(t, h.upper())
    assert not token_matches(new_token(), h)


def test_looks_like_token() -> None:
    t = new_token()
    assert looks_like_token(t + "\n")
    for bad in ["", "cfe_", t[:-1], t + "x", t.replace("cfe_", "cfx_"), "cfe_" + "!" * 43,
                t[:10] + " " + t[11:], t + "\nextra"]:
        assert not looks_like_token(bad), bad
