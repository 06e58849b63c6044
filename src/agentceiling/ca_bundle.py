"""Checks of a CA bundle named by an operator (the CLI's ``--ca-cert``, the provider's
``ca_cert_file``/``ca_cert_dir``), made before gRPC sees it."""

from __future__ import annotations


def ca_bundle_problem(pem: bytes) -> str | None:
    """What makes ``pem`` unusable as a CA bundle, or None. gRPC takes an empty bundle for "trust
    the default roots" (a wider trust than the operator named) and reports garbage only as a failed
    handshake."""
    import re
    import warnings

    from cryptography import x509

    if not pem.strip():
        return "empty: no CA certificate to trust (gRPC would trust its default roots instead)"
    # One certificate that parses is enough: system bundles hold old certificates that cryptography
    # warns about (and may one day refuse) and that gRPC accepts.
    for block in re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x509.load_pem_x509_certificate(block)
        except ValueError:
            continue
        return None
    return "not a PEM certificate bundle (no -----BEGIN CERTIFICATE----- block that parses)"
