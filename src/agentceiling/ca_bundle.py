"""Checks of a CA bundle named by an operator (the CLI's ``--ca-cert``, the provider's
``ca_cert_file``/``ca_cert_dir``), made before gRPC sees it."""

from __future__ import annotations


def ca_bundle_problem(pem: bytes) -> str | None:
    """What makes ``pem`` unusable as a CA bundle, or None. gRPC takes an empty bundle for "trust
    the default roots" (a wider trust than the operator named) and reports garbage only as a failed
    handshake."""
    from cryptography import x509

    if not pem.strip():
        return "empty: no CA certificate to trust (gRPC would trust its default roots instead)"
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        return "not a PEM certificate bundle (no -----BEGIN CERTIFICATE----- block that parses)"
    return None
