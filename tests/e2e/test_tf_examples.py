"""Every root module in examples/ applies, plans clean and destroys, with the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import EXAMPLES, ControlPlane, Installation, Terraform, workdir

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "main.tf").exists())


def test_examples_are_listed() -> None:
    assert {
        "profile-jwks", "profile-static-pem", "profile-advanced", "profile-rar-optional", "profile-disabled",
        "registration-basic", "registration-ceilings", "registration-no-default-ceiling",
        "registration-multiple-ceilings", "registration-namespaced", "complete",
    } <= set(NAMES)


@pytest.mark.parametrize("example", NAMES)
def test_example(example: str, tf: Terraform, control_plane: ControlPlane, installation: Installation,
                 tmp_path: Path) -> None:
    env = control_plane.env
    d = workdir(tmp_path, installation, copy_from=EXAMPLES / example)
    init = tf.init(d)
    assert "Warning" not in init.output, init
    tf.run(d, "validate", "-no-color")
    extra: list[str] = []
    if example == "complete":
        extra = ["-var=issuer=http://127.0.0.1:18999/"]
    apply = tf.apply(d, *extra, env=env)
    assert "Apply complete!" in apply.stdout, apply
    tf.plan(d, *extra, env=env, expect=0)
    outputs = json.loads(tf.run(d, "output", "-json", env=env).stdout)
    for name, value in outputs.items():
        assert value["value"] not in (None, "", []), name
    if example == "complete":
        assert outputs["issuer"]["value"] == "http://127.0.0.1:18999/"
        assert outputs["mount_accessor"]["value"].endswith(outputs["profile_id"]["value"])
    if example == "registration-namespaced":
        # Import by display name, in the namespace named by TERRAFORM_VAULT_NAMESPACE_IMPORT.
        tf.run(d, "state", "rm", "vault_agent_registration.agent", env=env)
        out = tf.run(d, "import", "-no-color", "vault_agent_registration.agent", "team-a-agent",
                     env={**env, "TERRAFORM_VAULT_NAMESPACE_IMPORT": "team-a"})
        assert "Import successful!" in out.stdout, out
        tf.plan(d, env=env, expect=0)
    destroy = tf.destroy(d, *extra, env=env)
    assert "Destroy complete!" in destroy.stdout, destroy
