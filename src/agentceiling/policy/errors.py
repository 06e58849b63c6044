"""Errors raised by :mod:`agentceiling.policy`, each with a stable ``code``."""

from __future__ import annotations

__all__ = [
    "POLICY_INVALID",
    "POLICY_SYNTAX_ERROR",
    "RAR_INVALID",
    "RAR_NO_MATCH",
    "RAR_NO_MATCH_MESSAGE",
    "PolicyParseError",
    "RarError",
]

#: The policy text is not well-formed HCL/JSON.
POLICY_SYNTAX_ERROR = "POLICY_SYNTAX_ERROR"
#: The policy text is well-formed but violates Vault's policy rules (unknown capability, bad glob...).
POLICY_INVALID = "POLICY_INVALID"
#: ``authorization_details`` is malformed.
RAR_INVALID = "RAR_INVALID"
#: No ``authorization_details`` entry matches the request (Vault's wording below).
RAR_NO_MATCH = "RAR_NO_MATCH"
RAR_NO_MATCH_MESSAGE = "No valid authorization_details claim found matching this request."


class PolicyParseError(ValueError):
    """A policy could not be parsed.

    ``str(err)`` is ``policy <name>: line L, column C: <detail>`` (``policy: line ...`` when the
    policy has no name). ``line``/``column`` are 1-based. For semantic errors inside a ``path``
    block they point at that block; ``detail`` then also names the offending element's position.
    """

    def __init__(
        self,
        detail: str,
        line: int,
        column: int,
        *,
        policy_name: str = "",
        code: str = POLICY_SYNTAX_ERROR,
    ) -> None:
        self.detail = detail
        self.line = line
        self.column = column
        self.policy_name = policy_name
        self.code = code
        prefix = f"policy {policy_name}" if policy_name else "policy"
        super().__init__(f"{prefix}: line {line}, column {column}: {detail}")


class RarError(ValueError):
    """``authorization_details`` was rejected. ``code`` is stable (``RAR_INVALID``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")
