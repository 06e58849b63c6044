"""``agentceiling provider install`` and ``agentceiling provider lock``.

``install`` makes this installation's provider available to terraform without a registry:

* a filesystem mirror, unpacked layout:
  ``DIR/mirror/<host>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>``,
  a ``#!/bin/sh`` launcher that execs this interpreter (``sys.executable -I -m
  agentceiling.tfprovider``). The launcher names the code version and a hash of the installed
  package's source files, so the lock file's ``h1:`` hash, which covers only the package
  directory, changes whenever the code does;
* ``DIR/terraformrc``, a CLI configuration whose ``provider_installation`` takes the installed
  sources from the mirror and everything else from the registry; ``TF_CLI_CONFIG_FILE`` must
  point at it (printed on stdout as an ``export`` line: ``eval "$(agentceiling provider
  install)"``);
* ``DIR/.terraform.lock.hcl`` with the ``h1:`` hashes, which ``lock`` copies into a working
  directory so that ``terraform init`` prints no "Incomplete lock file information" warning.

With ``--source registry.terraform.io/hashicorp/vault --version 5.11.0``, configurations written
for the real provider (``source = "hashicorp/vault"``) run unchanged and offline.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOURCE = "terraform.local/agentceiling/vault"
DEFAULT_HOST = "registry.terraform.io"
LOCK_FILE = ".terraform.lock.hcl"
MARKER = "# agentceiling-provider-launcher"

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_LABEL = re.compile(r"^[0-9A-Za-z](?:[0-9A-Za-z-]*[0-9A-Za-z])?$")
_HOST = re.compile(r"^[0-9A-Za-z.-]+(?::\d+)?$")
_TYPE = re.compile(r"^[a-z0-9]+$")


class InstallError(ValueError):
    """A bad argument or an unusable directory; the message is for a human."""


@dataclass(frozen=True)
class ProviderSource:
    hostname: str
    namespace: str
    type: str

    def __str__(self) -> str:
        return f"{self.hostname}/{self.namespace}/{self.type}"


@dataclass(frozen=True)
class InstallResult:
    dir: Path
    source: ProviderSource
    version: str
    platform: str
    launcher: Path
    cli_config: Path
    lock_file: Path
    h1: str
    code_version: str
    code_hash: str

    @property
    def export_line(self) -> str:
        return f"export TF_CLI_CONFIG_FILE={shlex.quote(str(self.cli_config))}"


def default_dir() -> Path:
    home = os.environ.get("AGENTCEILING_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".agentceiling") / "terraform"


def parse_source(source: str) -> ProviderSource:
    """``[hostname/]namespace/type``, like terraform's ``required_providers`` source."""
    parts = source.strip().split("/")
    if len(parts) == 2:
        parts.insert(0, DEFAULT_HOST)
    if len(parts) != 3:
        raise InstallError(f"invalid provider source {source!r}: use [HOSTNAME/]NAMESPACE/TYPE")
    host, namespace, type_ = parts[0].lower(), parts[1].lower(), parts[2].lower()
    if not _HOST.match(host) or not _LABEL.match(namespace) or not _TYPE.match(type_):
        raise InstallError(f"invalid provider source {source!r}: use [HOSTNAME/]NAMESPACE/TYPE")
    return ProviderSource(host, namespace, type_)


def default_version() -> str:
    """A semver for the package version (PEP 440 ``0.1.0.dev3`` becomes ``0.1.0-dev3``)."""
    from agentceiling import __version__

    m = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$", __version__)
    if not m:
        return "0.0.0"
    core = ".".join(x or "0" for x in m.group(1, 2, 3))
    rest = re.sub(r"[^0-9A-Za-z.-]", "", m.group(4).lstrip(".-+"))
    return f"{core}-{rest}" if rest else core


def current_platform() -> str:
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "386"}.get(
        machine, machine
    )
    return f"{system}_{arch}"


def package_hash() -> tuple[str, str]:
    """(code version, sha256 over the installed ``agentceiling`` package's source files)."""
    import agentceiling

    root = Path(agentceiling.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi")
    )
    for path in files:
        rel = path.relative_to(root).as_posix()
        h.update(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n".encode())
    return agentceiling.__version__, h.hexdigest()


def launcher_script(source: ProviderSource, version: str, code_version: str, code_hash: str) -> str:
    return (
        "#!/bin/sh\n"
        f"{MARKER} {source} {version}\n"
        f"# agentceiling {code_version}, package source sha256 {code_hash}\n"
        "# Written by `agentceiling provider install`; the lock file's h1 hash covers this file.\n"
        f'exec {shlex.quote(sys.executable)} -I -m agentceiling.tfprovider "$@"\n'
    )


def dirhash_h1(directory: Path) -> str:
    """Terraform's ``h1:`` package hash (Go's dirhash Hash1) of a provider package directory."""
    directory = Path(os.path.realpath(directory))
    files = sorted(
        p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() or p.is_symlink()
    )
    summary = hashlib.sha256()
    for rel in files:
        digest = hashlib.sha256((directory / rel).read_bytes()).hexdigest()
        summary.update(f"{digest}  {rel}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def install(
    dir: Path | str | None = None, source: str | None = None, version: str | None = None
) -> InstallResult:
    """Install the provider into ``dir``'s mirror and (re)write its CLI config and lock file."""
    base = Path(dir).expanduser() if dir else default_dir()
    base = Path(os.path.abspath(base))
    for target in (base / "terraformrc", base / LOCK_FILE):  # checked before anything is written
        if target.exists() and not target.is_file():
            raise InstallError(f"{target} exists and is not a regular file: nothing was installed")
    src = parse_source(source or DEFAULT_SOURCE)
    ver = (version or default_version()).strip().lstrip("v")
    if not _SEMVER.match(ver):
        raise InstallError(f"invalid version {version!r}: use a semantic version such as 0.1.0")
    plat = current_platform()
    code_version, code_hash = package_hash()

    package_dir = base / "mirror" / src.hostname / src.namespace / src.type / ver / plat
    package_dir.mkdir(parents=True, exist_ok=True)
    launcher = package_dir / f"terraform-provider-{src.type}_v{ver}"
    for stale in package_dir.iterdir():  # terraform runs the first terraform-provider-<type>* file
        if stale != launcher and stale.is_file():
            stale.unlink()
    _write_atomic(launcher, launcher_script(src, ver, code_version, code_hash).encode(), 0o755)

    refresh(base, plat)
    return InstallResult(
        dir=base,
        source=src,
        version=ver,
        platform=plat,
        launcher=launcher,
        cli_config=base / "terraformrc",
        lock_file=base / LOCK_FILE,
        h1=dirhash_h1(package_dir),
        code_version=code_version,
        code_hash=code_hash,
    )


def refresh(dir: Path | str, plat: str | None = None) -> None:
    """Rewrite ``dir``'s CLI config and lock file from what its mirror holds (every source we
    installed there, the newest version of each)."""
    base = Path(dir)
    installed = _installed_packages(base / "mirror", plat or current_platform())
    sources = sorted({s for s, _, _ in installed}, key=str)
    _write_atomic(base / "terraformrc", _cli_config_text(base / "mirror", sources).encode(), 0o644)
    _write_atomic(
        base / LOCK_FILE, render_lock_blocks([(s, v, [h]) for s, v, h in installed]).encode(), 0o644
    )


def _installed_packages(mirror: Path, plat: str) -> list[tuple[ProviderSource, str, str]]:
    """(source, version, h1) of every launcher we installed in the mirror for this platform.
    When a source has several versions, only the newest one is kept in the lock file."""
    newest: dict[str, tuple[ProviderSource, str, str]] = {}
    for launcher in sorted(mirror.glob(f"*/*/*/*/{plat}/terraform-provider-*")):
        try:
            head = launcher.read_text(errors="replace")[:512]
        except OSError:
            continue
        if MARKER not in head:
            continue
        rel = launcher.relative_to(mirror).parts
        src, ver = ProviderSource(rel[0], rel[1], rel[2]), rel[3]
        key = str(src)
        if key not in newest or _semver_key(ver) > _semver_key(newest[key][1]):
            newest[key] = (src, ver, dirhash_h1(launcher.parent))
    return [newest[k] for k in sorted(newest)]


def _semver_key(v: str) -> tuple[int, int, int, int, str]:
    m = _SEMVER.match(v)
    if not m:
        return (0, 0, 0, 0, v)
    pre = m.group(4) or ""
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre)


def _cli_config_text(mirror: Path, sources: list[ProviderSource]) -> str:
    names = ", ".join(_hcl_string(str(s)) for s in sources)
    return (
        "# Written by `agentceiling provider install`. Select it with TF_CLI_CONFIG_FILE.\n"
        "# The providers below come from the local filesystem mirror; all others from their registries.\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {_hcl_string(str(mirror))}\n"
        f"    include = [{names}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{names}]\n"
        "  }\n"
        "}\n"
    )


def _hcl_string(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${").replace("%{", "%%{")
    # HCL strings hold no raw control characters: a newline in a path would end the string.
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


# ---------------------------------------------------------------------------------------------
# Lock files

_PROVIDER_HEAD = re.compile(r'provider[ \t]+"((?:[^"\\\n]|\\.)*)"[ \t]*\{')
_LOCK_HEADER = "".join(
    (
        '# This file is maintained automatically by "terraform init".\n',
        "# Manual edits may be lost in future updates.\n",
    )
)


def render_lock_blocks(entries: list[tuple[ProviderSource, str, list[str]]]) -> str:
    blocks = [_lock_block(str(s), v, hashes) for s, v, hashes in entries]
    return _LOCK_HEADER + "".join("\n" + b for b in blocks)


def _lock_block(address: str, version: str, hashes: list[str]) -> str:
    lines = "".join(f"    {_hcl_string(h)},\n" for h in sorted(set(hashes)))
    return f'provider "{address}" {{\n  version = "{version}"\n  hashes = [\n{lines}  ]\n}}\n'


class LockFileError(InstallError):
    """A lock file this module cannot take apart block by block; it is left unchanged."""


def parse_lock_blocks(text: str) -> list[tuple[str, str]]:
    """The ``provider "ADDRESS" { ... }`` blocks of a lock file, as (address, the block's exact
    text), in file order. Comments and blank lines between blocks are skipped; anything else, an
    unbalanced block or the same address twice raises :class:`LockFileError` (so that a merge
    never drops what it did not understand)."""
    blocks: list[tuple[str, str]] = []
    seen: set[str] = set()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n\ufeff":
            i += 1
        elif (after := _after_comment(text, i)) is not None:
            i = after
        else:
            m = _PROVIDER_HEAD.match(text, i)
            if m is None:
                snippet = text[i:_end_of_line(text, i)].strip()
                raise LockFileError(f"line {_line_of(text, i)}: not a provider block: {snippet[:60]!r}")
            address = m.group(1)
            end = _end_of_block(text, m.end(), i)
            key = address.lower()
            if key in seen:
                raise LockFileError(f"line {_line_of(text, i)}: provider {address!r} appears twice")
            seen.add(key)
            blocks.append((address, text[i:end].rstrip() + "\n"))
            i = end
    return blocks


def _after_comment(text: str, i: int) -> int | None:
    """The offset after the comment that starts at ``i`` (``#``, ``//`` or ``/* */``), or None."""
    if text.startswith(("#", "//"), i):
        return _end_of_line(text, i)
    if text.startswith("/*", i):
        close = text.find("*/", i + 2)
        if close < 0:
            raise LockFileError(f"line {_line_of(text, i)}: unterminated /* comment")
        return close + 2
    return None


def _end_of_line(text: str, i: int) -> int:
    nl = text.find("\n", i)
    return len(text) if nl < 0 else nl + 1


def _line_of(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1


def _end_of_block(text: str, i: int, start: int) -> int:
    """Offset just after the ``}`` that closes the block whose ``{`` ends at ``i``."""
    depth = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\n":
                    break
                i += 2 if text[i] == "\\" else 1
            if i >= n or text[i] != '"':
                raise LockFileError(f"line {_line_of(text, i)}: unterminated string")
            i += 1
        elif (after := _after_comment(text, i)) is not None:
            i = after
        elif text.startswith("<<", i):
            raise LockFileError(f"line {_line_of(text, i)}: heredoc strings are not supported in a lock file")
        else:
            if c in "{[(":
                depth += 1
            elif c in "}])":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    raise LockFileError(f"line {_line_of(text, start)}: the block is not closed (missing }})")


def merge_lock(existing: str, ours: str) -> str:
    """Replace or add our provider blocks in an existing lock file, keeping every other block
    exactly as it was, ordered by address as terraform writes them. :class:`LockFileError` if
    ``existing`` cannot be taken apart safely."""
    blocks = {address.lower(): (address, text) for address, text in parse_lock_blocks(existing)}
    for address, text in parse_lock_blocks(ours):
        blocks[address.lower()] = (address, text)
    return _LOCK_HEADER + "".join("\n" + blocks[k][1] for k in sorted(blocks))


def lock(workdir: Path | str = ".", dir: Path | str | None = None) -> Path:
    """Write (or update) ``workdir/.terraform.lock.hcl`` with the hashes of the providers installed
    in ``dir``. Returns the lock file's path."""
    base = Path(dir).expanduser() if dir else default_dir()
    source = base / LOCK_FILE
    if not source.is_file():
        raise InstallError(f"{source} does not exist: run `agentceiling provider install` first")
    target_dir = Path(workdir).expanduser()
    if not target_dir.is_dir():
        raise InstallError(f"{target_dir} is not a directory")
    target = target_dir / LOCK_FILE
    ours = _read_lock(source)
    try:
        parse_lock_blocks(ours)
    except LockFileError as exc:
        raise InstallError(f"{source}: {exc}; run `agentceiling provider install` again") from None
    if target.exists() or target.is_symlink():
        if not target.is_file():
            raise InstallError(f"{target} is not a regular file; not changing it")
        try:
            text = merge_lock(_read_lock(target), ours)
        except LockFileError as exc:
            raise InstallError(
                f"cannot update {target}: {exc}; it was left unchanged (fix it, or remove it and run "
                "`terraform init` again)"
            ) from None
    else:
        text = ours
    try:
        _write_atomic(target, text.encode(), 0o644)
    except OSError as exc:
        raise InstallError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _read_lock(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not a lock file (not UTF-8 text); it was left unchanged") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# CLI: `agentceiling provider install|lock`


def _nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty (leave the option out for the default)")
    return text


def _dir_arg(text: str) -> Path:
    """A directory path; empty is refused (``Path("")`` is the working directory)."""
    return Path(_nonempty(text))


def add_cli_arguments(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provider = subparsers.add_parser("provider", help="install the Terraform provider for terraform to use")
    sub = provider.add_subparsers(dest="provider_command", required=True)
    inst = sub.add_parser(
        "install",
        help="install the provider into a filesystem mirror; prints the TF_CLI_CONFIG_FILE export line",
        description=(
            "Install this agentceiling's Terraform provider into DIR/mirror and write DIR/terraformrc and "
            'DIR/.terraform.lock.hcl. Prints one line for the shell: eval "$(agentceiling provider install)".'
        ),
    )
    inst.add_argument(
        "--dir", type=_dir_arg, default=None, help=f"default: {default_dir()} ($AGENTCEILING_HOME/terraform)"
    )
    inst.add_argument(
        "--source",
        type=_nonempty,
        default=DEFAULT_SOURCE,
        help=f"provider source address (default {DEFAULT_SOURCE}; use registry.terraform.io/hashicorp/vault "
        "to serve configurations written for the real provider)",
    )
    inst.add_argument(
        "--version", type=_nonempty, default=None, help=f"provider version (default {default_version()})"
    )
    lk = sub.add_parser(
        "lock",
        help="write the installed providers' hashes into a terraform working directory's lock file",
    )
    lk.add_argument(
        "workdir", nargs="?", default=".", type=Path, help="terraform working directory (default .)"
    )
    lk.add_argument(
        "--dir", type=_dir_arg, default=None, help=f"installation directory (default {default_dir()})"
    )
    provider.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    try:
        if args.provider_command == "install":
            result = install(args.dir, args.source, args.version)
            print(
                f"Installed {result.source} v{result.version} ({result.platform}) into {result.dir}\n"
                f"  launcher:   {result.launcher}\n"
                f"  lock file:  {result.lock_file} ({result.h1})\n"
                f"  code:       agentceiling {result.code_version}, source sha256 {result.code_hash[:16]}...\n"
                "Run the line below (or eval this command's output), then `agentceiling provider lock` in "
                "your terraform working directory.",
                file=sys.stderr,
            )
            print(result.export_line)
            return 0
        if args.provider_command == "lock":
            target = lock(args.workdir, args.dir)
            print(f"Wrote {target}", file=sys.stderr)
            return 0
    except InstallError as exc:
        print(f"agentceiling provider: {exc}", file=sys.stderr)
        return 1
    return 2
