"""Strict parsing of the JWS compact serialisation (RFC 7515 §7.1) and of its JSON members.

RFC 8725bis "Check JWT Format Type": a JWT contains only ``A-Z a-z 0-9 - _ .``; anything else is
refused, which also refuses padding, JSON serialisation and (by segment count) JWE. Segments must be
canonical unpadded base64url so one token has exactly one spelling. JSON is parsed with duplicate
members refused (RFC 7515 §4 / RFC 7519 §4 allow reject-or-last-wins; last-wins is a parser
differential risk, RFC 8725 §2.6), ``NaN``/``Infinity`` refused, and only objects accepted.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import TokenError, invalid

__all__ = [
    "MAX_TOKEN_BYTES",
    "UnverifiedToken",
    "b64url_decode",
    "decode_segment",
    "decode_signature",
    "parse_json_object",
    "peek",
    "peek_issuer",
    "split_token",
]

MAX_TOKEN_BYTES = 8192
"""Vault's default ``max_token_header_size`` is 8 KB; legitimate access tokens are far smaller."""

_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


class _Malformed(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Malformed(f"duplicate member {json.dumps(key[:64])}")
            seen.add(key)
    return obj


def _no_constants(name: str) -> Any:
    raise _Malformed(f"{name} is not valid JSON")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}


def b64url_decode(segment: str) -> bytes:
    """Decode canonical, unpadded base64url; raise ``ValueError`` on anything else."""
    if not _B64URL.fullmatch(segment):
        raise ValueError("invalid base64url")
    return _decode_alphabet_checked(segment)


def _decode_alphabet_checked(segment: str) -> bytes:
    rem = len(segment) % 4
    if rem == 1:
        raise ValueError("invalid base64url length")
    # Non-zero unused trailing bits decode to the same bytes; refuse them so a value has exactly
    # one encoding.
    if rem and _INDEX[segment[-1]] & (0x0F if rem == 2 else 0x03):
        raise ValueError("non-canonical base64url")
    padded = segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64url") from exc


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


#: A JSON escape of a UTF-16 surrogate (``\ud800``-``\udfff``): paired, it spells one character;
#: unpaired, it decodes to a Python string that no encoder (and no database) accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object, refusing duplicate members, NaN/Infinity and
    unpaired surrogate escapes."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except _Malformed as exc:
        raise invalid(f"malformed {what}: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid(f"malformed {what}: invalid JSON") from None
    if not isinstance(value, dict):
        raise invalid(f"malformed {what}: not a JSON object")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(f"malformed {what}: a string holds an unpaired UTF-16 surrogate escape") from None
    return value


def split_token(token: object) -> tuple[str, str, str]:
    """Size cap and structure: exactly three base64url segments, the third possibly empty.

    An empty signature is left for the signature step so that ``alg: none`` gets its own reason.
    """
    if not isinstance(token, str):
        raise invalid("token must be a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise invalid(f"token exceeds {MAX_TOKEN_BYTES} bytes")
    match = _COMPACT.fullmatch(token)
    if match is None:
        if token.count(".") == 4:
            raise invalid("JWE (encrypted) tokens are not supported")
        raise invalid("token is not a compact JWS")
    h64, p64, s64 = match.groups()
    return h64, p64, s64


def decode_segment(segment: str, what: str) -> dict[str, Any]:
    """Decode a segment that :func:`split_token` already checked against the alphabet."""
    try:
        raw = _decode_alphabet_checked(segment)
    except ValueError:
        raise invalid(f"malformed {what}: invalid base64url") from None
    return parse_json_object(raw, what)


def decode_signature(segment: str) -> bytes:
    """Decode the (alphabet-checked) signature segment; ``b""`` if it is not canonical."""
    try:
        return _decode_alphabet_checked(segment)
    except ValueError:
        return b""


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token split into its segments and its payload decoded, *nothing verified*: what a caller
    needs to choose the profile, handed to :meth:`TokenValidator.validate` so that the payload is
    not decoded twice. The validator still checks the header, the signature and every claim."""

    text: str
    h64: str
    p64: str
    s64: str
    payload: dict[str, Any]

    @property
    def issuer(self) -> str:
        """The unverified ``iss``, as written. Raises ``TokenError(TOKEN_INVALID)`` when missing."""
        iss = self.payload.get("iss")
        if iss is None:
            raise invalid('claim "iss" is required')
        if not isinstance(iss, str) or not iss:
            raise invalid('claim "iss" must be a non-empty string')
        return iss


def peek(token: object) -> UnverifiedToken:
    """Split ``token`` and decode its payload without verifying anything.

    Raises ``TokenError(TOKEN_INVALID)`` on anything malformed (and nothing else)."""
    try:
        h64, p64, s64 = split_token(token)
        payload = decode_segment(p64, "payload")
    except TokenError:
        raise
    except Exception:  # defensive: nothing but TokenError leaves this module
        raise invalid("token is not a compact JWS") from None
    assert isinstance(token, str)
    return UnverifiedToken(token, h64, p64, s64, payload)


def peek_issuer(token: str) -> str:
    """Return the unverified ``iss`` of ``token``, only to choose which profile validates it.

    Nothing here is trusted: the validator redoes every check after the signature. The value is
    returned as written; route with ``normalize_issuer(peek_issuer(token))``. Raises
    ``TokenError(TOKEN_INVALID)`` on anything malformed.
    """
    return peek(token).issuer
