"""agentceiling.policy -- Vault ACL policies, RAR entries and ceiling containment.

Pure functions, no I/O:

* :func:`parse_policy` parses HCL/JSON ACL policies (:class:`Policy`, :class:`PathRule`);
* :meth:`ACL.build` / :meth:`ACL.check` evaluate policies with Vault's rules;
* :func:`parse_authorization_details`, :func:`render_entry`, :func:`rar_allows` handle RFC 9396
  ``vault:path_access`` entries;
* :func:`entry_within_ceiling` proves a RAR entry is contained in a ceiling ACL.
"""

from __future__ import annotations

from agentceiling.policy._pattern import segment_problem
from agentceiling.policy.acl import ACL, OPERATION_CAPABILITY, AclResult, AclRule
from agentceiling.policy.builtins import DEFAULT_CEILING_POLICY, DEFAULT_POLICY, builtin_policies
from agentceiling.policy.ceiling import CeilingResult, entry_within_ceiling
from agentceiling.policy.errors import (
    POLICY_INVALID,
    POLICY_SYNTAX_ERROR,
    RAR_INVALID,
    RAR_NO_MATCH,
    RAR_NO_MATCH_MESSAGE,
    PolicyParseError,
    RarError,
)
from agentceiling.policy.parser import CAPABILITIES, PathRule, Policy, parse_policy
from agentceiling.policy.rar import (
    PATH_ACCESS_TYPE,
    RAR_CAPABILITIES,
    ForeignEntry,
    RarEntry,
    parse_authorization_details,
    rar_allows,
    render_entry,
)
from agentceiling.policy.templates import AliasInfo, GroupInfo, TemplateContext

__all__ = [
    "ACL",
    "CAPABILITIES",
    "DEFAULT_CEILING_POLICY",
    "DEFAULT_POLICY",
    "OPERATION_CAPABILITY",
    "PATH_ACCESS_TYPE",
    "POLICY_INVALID",
    "POLICY_SYNTAX_ERROR",
    "RAR_CAPABILITIES",
    "RAR_INVALID",
    "RAR_NO_MATCH",
    "RAR_NO_MATCH_MESSAGE",
    "AclResult",
    "AclRule",
    "AliasInfo",
    "CeilingResult",
    "ForeignEntry",
    "GroupInfo",
    "PathRule",
    "Policy",
    "PolicyParseError",
    "RarEntry",
    "RarError",
    "TemplateContext",
    "builtin_policies",
    "entry_within_ceiling",
    "parse_authorization_details",
    "parse_policy",
    "rar_allows",
    "render_entry",
    "segment_problem",
]
