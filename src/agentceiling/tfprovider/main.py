"""Entry point of the provider plugin: ``python -I -m agentceiling.tfprovider``.

Terraform runs the plugin with no arguments and the go-plugin environment. Imports are kept to
what the handshake needs; the provider (``provider.build_provider``) is imported after the
handshake line, on first use. ``--debug`` serves in the foreground for ``TF_REATTACH_PROVIDERS``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentceiling.tfprovider.framework.types import Provider

DEFAULT_ADDRESS = "terraform.local/agentceiling/vault"


def build_provider() -> Provider:
    from agentceiling.tfprovider.provider import build_provider as build

    return build()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from agentceiling.tfprovider.framework import plugin

    if not args:
        return plugin.serve(build_provider)
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m agentceiling.tfprovider",
        description="agentceiling's Terraform provider plugin. Terraform starts it; run by hand only with --debug.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="serve in the foreground and print a TF_REATTACH_PROVIDERS value for terraform",
    )
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"provider source address terraform knows this provider by (default {DEFAULT_ADDRESS})",
    )
    ns = parser.parse_args(args)
    if ns.debug:
        return plugin.serve_debug(build_provider, ns.address)
    return plugin.serve(build_provider)
