"""Control-plane use cases. Each write is one transaction that validates, writes and bumps the
global generation counter; uniqueness and referential rules are backed by database constraints,
and a constraint that fires under a race is turned into the same precise error a sequential
request gets (the transaction is re-run and its checks see the winner)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentceiling import __version__
from agentceiling.domain import validation
from agentceiling.domain.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violations,
)
from agentceiling.domain.models import (
    BUILTIN_POLICIES,
    DEFAULT_NAMESPACE,
    ROOT_POLICY,
    ActivationFlag,
    Alias,
    Entity,
    PolicyDoc,
    Profile,
    Registration,
    normalize_issuer,
)
from agentceiling.store import repo
from agentceiling.store.db import Database

T = TypeVar("T")
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Written(Generic[T]):
    obj: T
    warnings: tuple[str, ...]
    generation: int


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def _page_args(page_size: int, token: str) -> tuple[int, str]:
    if page_size < 0:
        raise InvalidArgument.one("page_size", "page_size cannot be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    after = ""
    if token:
        # Only a token this server hands out: canonical base64url of a key that can exist.
        try:
            after = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument.one("page_token", "invalid page_token") from None
        if page_token(after) != token or not after or "\x00" in after or len(after) > validation.NAME_MAX:
            raise InvalidArgument.one("page_token", "invalid page_token")
    return size, after


def page_token(last_key: str) -> str:
    """The opaque token of the page that starts after ``last_key``."""
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def _page(items: list[T], size: int, key: Callable[[T], str]) -> Page[T]:
    return Page(items, page_token(key(items[-1])) if len(items) == size else "")


def namespace_or_default(namespace: str, *, creating: bool = False) -> str:
    ns = namespace or DEFAULT_NAMESPACE
    validation.check_namespace(ns, creating=creating)
    return ns


shown = validation.shown


class ControlPlane:
    def __init__(
        self,
        db: Database,
        *,
        builtin_policy_texts: dict[str, str] | None = None,
        clock: Callable[[], str] = rfc3339_now,
    ) -> None:
        from agentceiling.policy import builtin_policies

        self.db = db
        self.clock = clock
        self.builtins = builtin_policy_texts or builtin_policies()
        self._admin_hashes: set[str] = set()
        self._admin_lock = threading.Lock()

    # ---------------------------------------------------------------- plumbing

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """One write transaction. A constraint violation means a concurrent writer won a race
        the checks inside ``fn`` could not see yet: re-run ``fn`` so that its checks name it."""
        for _ in range(3):
            try:
                return self.db.write(fn)
            except sa.exc.IntegrityError:
                continue
        raise Aborted("the write conflicted with concurrent changes; retry the request")

    def generation(self) -> int:
        with self.db.read() as conn:
            return repo.generation(conn)

    def status(self) -> tuple[str, int, str]:
        return __version__, self.generation(), self.db.dialect

    # ---------------------------------------------------------------- admin tokens

    def ensure_admin_token(self, token_file: Path) -> str | None:
        """Create the first admin token, store only its SHA-256 and write the token to
        ``token_file`` (mode 0600). Returns the new token, or None when one already existed."""

        def create(conn: Connection) -> str | None:
            repo.bump_generation(conn)  # also serialises concurrent first starts
            if repo.admin_token_count(conn):
                return None
            token = "acs." + secrets.token_urlsafe(32)
            repo.insert_admin_token(conn, str(uuid.uuid4()), _sha256(token), self.clock())
            try:
                _write_secret(token_file, token)
            except OSError as exc:
                # The transaction rolls back: remove the token's temporary file too (no copy of a
                # secret that was never committed), and name the file the operator must fix.
                with contextlib.suppress(OSError):
                    token_file.with_name(token_file.name + ".tmp").unlink(missing_ok=True)
                raise OSError(exc.errno, exc.strerror or str(exc), str(token_file)) from None
            return token

        return self._write(create)

    def check_admin_token(self, token: str) -> bool:
        digest = _sha256(token)
        with self._admin_lock:
            known = set(self._admin_hashes)
        if not any(hmac.compare_digest(digest, h) for h in known):
            with self.db.read() as conn:
                known = repo.admin_token_hashes(conn)
            with self._admin_lock:
                self._admin_hashes = known
        return any(hmac.compare_digest(digest, h) for h in known)

    # ---------------------------------------------------------------- profiles

    def create_profile(self, p: Profile) -> Written[Profile]:
        p = replace(p, namespace=namespace_or_default(p.namespace, creating=True))
        warnings = validation.validate_profile(p)
        now = self.clock()
        p = replace(p, config_id=str(uuid.uuid4()), version=1, creation_time=now, last_updated_time=now)

        def tx(conn: Connection) -> int:
            if repo.get_profile(conn, p.namespace, name=p.profile_name):
                raise AlreadyExists(f'profile "{shown(p.profile_name)}" already exists in namespace "{p.namespace}"')
            self._check_issuer_free(conn, p)
            repo.insert_profile(conn, p, normalize_issuer(p.issuer_id))
            return repo.bump_generation(conn)

        return Written(p, tuple(warnings), self._write(tx))

    def _check_issuer_free(self, conn: Connection, p: Profile) -> None:
        other = repo.get_profile_by_issuer(conn, p.namespace, normalize_issuer(p.issuer_id))
        if other and other.config_id != p.config_id:
            raise AlreadyExists(
                f'duplicate issuer_id "{shown(p.issuer_id)}" found in profile "{shown(other.profile_name)}"'
            )

    def read_profile(self, namespace: str, *, name: str = "", config_id: str = "") -> Profile:
        ns = namespace_or_default(namespace)
        if config_id:
            validation.check_key("config_id", config_id, validation.ID_MAX)
        elif name:
            validation.check_key("profile_name", name)
        else:
            raise InvalidArgument.one("profile_name", "profile_name or config_id is required")
        with self.db.read() as conn:
            if config_id:
                found = repo.get_profile(conn, ns, config_id=config_id)
            else:
                found = repo.get_profile(conn, ns, name=name)
        if found is None:
            raise NotFound(f'profile "{shown(config_id or name)}" not found in namespace "{ns}"')
        return found

    def update_profile(self, p: Profile, expected_version: int = 0) -> Written[Profile]:
        ns = namespace_or_default(p.namespace)
        validation.check_key("profile_name", p.profile_name)
        holder: list[list[str]] = []

        def tx(conn: Connection) -> tuple[Profile, int]:
            prior = repo.get_profile(conn, ns, name=p.profile_name)
            if prior is None:
                raise NotFound(f'profile "{shown(p.profile_name)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'profile "{shown(p.profile_name)}"')
            new = replace(
                p,
                namespace=ns,
                config_id=prior.config_id,
                version=prior.version + 1,
                creation_time=prior.creation_time,
                last_updated_time=self.clock(),
            )
            holder[:] = [validation.validate_profile(new, prior)]
            if not repo.update_profile(conn, new, prior.version):
                raise Aborted(f'profile "{shown(p.profile_name)}" was changed concurrently; retry')
            return new, repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, tuple(holder[0]), gen)

    def delete_profile(self, namespace: str, name: str, expected_version: int = 0) -> int:
        ns = namespace_or_default(namespace)
        validation.check_key("profile_name", name)

        def tx(conn: Connection) -> int:
            prior = repo.get_profile(conn, ns, name=name)
            if prior is None:
                raise NotFound(f'profile "{shown(name)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'profile "{shown(name)}"')
            # An alias names its profile's mount accessor; removing the profile under it would leave
            # an alias that reads back but can never authenticate and that blocks a re-created
            # profile's alias. (The profile row is locked, so no alias can be added meanwhile.)
            users, more = repo.aliases_of_accessor(conn, prior.mount_accessor, limit=10)
            if users:
                listed = ", ".join(f'"{shown(a.name, 64)}" ({a.id})' for a in users)
                if more:
                    listed += f" and {more} more"
                raise FailedPrecondition(
                    f'profile "{shown(name)}" is used by entity aliases: {listed}; delete those aliases first'
                )
            repo.delete_profile(conn, prior.config_id)
            return repo.bump_generation(conn)

        return self._write(tx)

    def list_profiles(self, namespace: str, page_size: int = 0, page_token: str = "") -> Page[Profile]:
        ns = namespace_or_default(namespace)
        size, after = _page_args(page_size, page_token)
        with self.db.read() as conn:
            items = repo.list_profiles(conn, ns, after, size)
        return _page(items, size, lambda p: p.profile_name)

    # ---------------------------------------------------------------- policies

    def _parse_policy(self, name: str, text: str) -> None:
        from agentceiling.policy import PolicyParseError, parse_policy

        validation.validate_policy_text(text)
        if not text.strip():
            raise InvalidArgument.one("policy", "policy text cannot be empty")
        try:
            parse_policy(text, name=name)
        except PolicyParseError as exc:
            raise InvalidArgument.one("policy", str(exc)) from None

    def _unwritten_builtin(self, namespace: str, name: str) -> PolicyDoc:
        """A built-in policy of a namespace nobody has written to yet (no row exists)."""
        return PolicyDoc(namespace, name, self.builtins[name], True, 1, "", "")

    def create_policy(self, p: PolicyDoc) -> Written[PolicyDoc]:
        ns = namespace_or_default(p.namespace, creating=True)
        validation.validate_policy_name(p.name)
        if p.name == ROOT_POLICY:
            raise InvalidArgument.one("name", '"root" is a reserved policy name')
        self._parse_policy(p.name, p.text)
        now = self.clock()
        new = PolicyDoc(ns, p.name, p.text, False, 1, now, now)

        def tx(conn: Connection) -> int:
            repo.ensure_builtin_policies(conn, ns, self.builtins, now)
            if repo.get_policy(conn, ns, p.name):
                raise AlreadyExists(f'policy "{shown(p.name)}" already exists in namespace "{ns}"')
            repo.insert_policy(conn, new)
            return repo.bump_generation(conn)

        return Written(new, (), self._write(tx))

    def read_policy(self, namespace: str, name: str) -> PolicyDoc:
        ns = namespace_or_default(namespace)
        validation.check_key("name", name)
        with self.db.read() as conn:
            found = repo.get_policy(conn, ns, name)
        if found is None and name in BUILTIN_POLICIES:
            found = self._unwritten_builtin(ns, name)
        if found is None:
            raise NotFound(f'policy "{shown(name)}" not found in namespace "{ns}"')
        return found

    def update_policy(self, p: PolicyDoc, expected_version: int = 0) -> Written[PolicyDoc]:
        ns = namespace_or_default(p.namespace)
        validation.check_key("name", p.name)
        if p.name == ROOT_POLICY:
            raise InvalidArgument.one("name", '"root" is a reserved policy name')
        self._parse_policy(p.name, p.text)

        def tx(conn: Connection) -> tuple[PolicyDoc, int]:
            now = self.clock()
            repo.ensure_builtin_policies(conn, ns, self.builtins, now)
            prior = repo.get_policy(conn, ns, p.name)
            if prior is None:
                raise NotFound(f'policy "{shown(p.name)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'policy "{shown(p.name)}"')
            new = replace(prior, text=p.text, version=prior.version + 1, last_updated_time=now)
            if not repo.update_policy(conn, new, prior.version):
                raise Aborted(f'policy "{shown(p.name)}" was changed concurrently; retry')
            return new, repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, (), gen)

    def delete_policy(self, namespace: str, name: str, expected_version: int = 0) -> int:
        ns = namespace_or_default(namespace)
        validation.check_key("name", name)
        if name == ROOT_POLICY:
            raise InvalidArgument.one("name", '"root" is a reserved policy name')
        if name in BUILTIN_POLICIES:
            raise FailedPrecondition(f"cannot delete {name} policy")

        def tx(conn: Connection) -> int:
            prior = repo.get_policy(conn, ns, name)
            if prior is None:
                raise NotFound(f'policy "{shown(name)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'policy "{shown(name)}"')
            users = repo.registrations_using_policy(conn, ns, name)
            if users:
                listed = ", ".join(shown(u, 64) for u in users[:10])
                if len(users) > 10:
                    listed += f" and {len(users) - 10} more"
                raise FailedPrecondition(
                    f'policy "{shown(name)}" is a ceiling policy of agent registrations: {listed}; '
                    "remove it from their ceiling_policies first"
                )
            repo.delete_policy(conn, ns, name)
            return repo.bump_generation(conn)

        return self._write(tx)

    def list_policies(self, namespace: str, page_size: int = 0, page_token: str = "") -> Page[PolicyDoc]:
        ns = namespace_or_default(namespace)
        size, after = _page_args(page_size, page_token)
        with self.db.read() as conn:
            stored = repo.list_policies(conn, ns, after, size)
            have = {p.name for p in stored}
            if not any(p.builtin for p in stored):
                # A namespace nobody wrote to yet still has its built-in policies.
                for name in BUILTIN_POLICIES:
                    if name > after and name not in have and not repo.get_policy(conn, ns, name):
                        stored.append(self._unwritten_builtin(ns, name))
        stored.sort(key=lambda p: p.name)
        return _page(stored[:size], size, lambda p: p.name)

    # ---------------------------------------------------------------- entities

    def create_entity(self, e: Entity) -> Written[Entity]:
        ns = namespace_or_default(e.namespace, creating=True)
        validation.validate_entity(e)
        now = self.clock()
        entity_id = str(uuid.uuid4())
        new = replace(
            e,
            namespace=ns,
            name=e.name or f"entity_{entity_id[:8]}",
            id=entity_id,
            version=1,
            creation_time=now,
            last_updated_time=now,
        )

        def tx(conn: Connection) -> int:
            if repo.get_entity(conn, ns, name=new.name):
                raise AlreadyExists(f'entity "{shown(new.name)}" already exists in namespace "{ns}"')
            repo.insert_entity(conn, new)
            return repo.bump_generation(conn)

        return Written(new, (), self._write(tx))

    def read_entity(self, namespace: str, *, id: str = "", name: str = "") -> Entity:
        ns = namespace_or_default(namespace)
        if not id and not name:
            raise InvalidArgument.one("id", "id or name is required")
        if id:
            validation.check_key("id", id, validation.ID_MAX)
        else:
            validation.check_key("name", name)
        with self.db.read() as conn:
            found = repo.get_entity(conn, ns, id=id) if id else repo.get_entity(conn, ns, name=name)
        if found is None:
            raise NotFound(f'entity "{shown(id or name)}" not found in namespace "{ns}"')
        return found

    def update_entity(self, e: Entity, expected_version: int = 0) -> Written[Entity]:
        ns = namespace_or_default(e.namespace)
        validation.check_key("id", e.id, validation.ID_MAX)
        validation.validate_entity(e)

        def tx(conn: Connection) -> tuple[Entity, int]:
            prior = repo.get_entity(conn, ns, id=e.id)
            if prior is None:
                raise NotFound(f'entity "{shown(e.id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'entity "{shown(prior.name)}"')
            name = e.name or prior.name
            if name != prior.name and repo.get_entity(conn, ns, name=name):
                raise AlreadyExists(f'entity "{shown(name)}" already exists in namespace "{ns}"')
            new = replace(
                e,
                namespace=ns,
                name=name,
                version=prior.version + 1,
                creation_time=prior.creation_time,
                last_updated_time=self.clock(),
            )
            if not repo.update_entity(conn, new, prior.version):
                raise Aborted(f'entity "{shown(prior.name)}" was changed concurrently; retry')
            return new, repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, (), gen)

    def delete_entity(self, namespace: str, id: str, expected_version: int = 0) -> int:
        ns = namespace_or_default(namespace)
        validation.check_key("id", id, validation.ID_MAX)

        def tx(conn: Connection) -> int:
            prior = repo.get_entity(conn, ns, id=id)
            if prior is None:
                raise NotFound(f'entity "{shown(id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'entity "{shown(prior.name)}"')
            reg = repo.get_registration(conn, ns, entity_id=id)
            if reg is not None:
                raise FailedPrecondition(
                    f'entity "{shown(prior.name)}" has the agent registration "{shown(reg.display_name)}" ({reg.id}); '
                    "delete the registration first"
                )
            repo.delete_entity(conn, id)
            return repo.bump_generation(conn)

        return self._write(tx)

    def list_entities(self, namespace: str, page_size: int = 0, page_token: str = "") -> Page[Entity]:
        ns = namespace_or_default(namespace)
        size, after = _page_args(page_size, page_token)
        with self.db.read() as conn:
            items = repo.list_entities(conn, ns, after, size)
        return _page(items, size, lambda e: e.id)  # by id, which no update changes: a renamed one is listed once

    # ---------------------------------------------------------------- aliases

    def _resolve_alias_target(self, conn: Connection, a: Alias) -> tuple[str, str]:
        """Check the alias against its entity and profile; return the profile's issuer comparison
        key and its mount accessor."""
        v = Violations()
        if repo.get_entity(conn, a.namespace, id=a.canonical_id) is None:
            v.add("canonical_id", f'entity "{shown(a.canonical_id)}" does not exist in namespace "{a.namespace}"')
        profile: Profile | None = None
        if a.issuer:
            profile = repo.get_profile_by_issuer(conn, a.namespace, normalize_issuer(a.issuer))
            if profile is None:
                v.add("issuer", f"oauth config not found for {shown(a.issuer)}")
            elif a.mount_accessor and a.mount_accessor != profile.mount_accessor:
                v.add(
                    "mount_accessor",
                    f'mount_accessor "{shown(a.mount_accessor)}" does not match the profile of issuer '
                    f'"{shown(a.issuer)}" ("{shown(profile.profile_name)}", mount_accessor "{profile.mount_accessor}")',
                )
        else:
            prefix = f"oauth-resource-server_{a.namespace}_"
            config_id = a.mount_accessor[len(prefix) :] if a.mount_accessor.startswith(prefix) else ""
            profile = repo.get_profile(conn, a.namespace, config_id=config_id) if config_id else None
            if profile is None:
                v.add(
                    "mount_accessor",
                    f'mount_accessor "{shown(a.mount_accessor)}" does not belong to any OAuth resource-server profile '
                    f'in namespace "{a.namespace}"',
                )
        v.raise_if_any()
        assert profile is not None
        return normalize_issuer(profile.issuer_id), profile.mount_accessor

    def _check_alias_unique(self, conn: Connection, a: Alias, issuer_norm: str, accessor: str) -> None:
        if a.external_id:
            other = repo.find_alias(conn, a.namespace, issuer_norm, a.external_id)
            if other and other.id != a.id:
                raise AlreadyExists(
                    f'an alias for issuer "{shown(a.issuer or issuer_norm)}" with external_id "{shown(a.external_id)}" '
                    f"already exists ({other.id})"
                )
        other = repo.find_alias_by_accessor_name(conn, accessor, a.name)
        if other and other.id != a.id:
            raise AlreadyExists(
                f'an alias named "{shown(a.name)}" already exists for mount_accessor "{accessor}" ({other.id})'
            )

    def create_alias(self, a: Alias) -> Written[Alias]:
        ns = namespace_or_default(a.namespace, creating=True)
        a = replace(a, namespace=ns)
        validation.validate_alias(a)
        now = self.clock()
        draft = replace(a, id=str(uuid.uuid4()), version=1, creation_time=now, last_updated_time=now)

        def tx(conn: Connection) -> tuple[Alias, int]:
            issuer_norm, accessor = self._resolve_alias_target(conn, draft)
            self._check_alias_unique(conn, draft, issuer_norm, accessor)
            repo.insert_alias(conn, draft, issuer_norm, accessor)
            # Named by its issuer only: answered with the profile's accessor, as Vault does.
            return replace(draft, mount_accessor=draft.mount_accessor or accessor), repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, (), gen)

    def read_alias(self, namespace: str, id: str) -> Alias:
        ns = namespace_or_default(namespace)
        validation.check_key("id", id, validation.ID_MAX)
        with self.db.read() as conn:
            found = repo.get_alias(conn, ns, id)
        if found is None:
            raise NotFound(f'entity alias "{shown(id)}" not found in namespace "{ns}"')
        return found

    def update_alias(self, a: Alias, expected_version: int = 0) -> Written[Alias]:
        ns = namespace_or_default(a.namespace)
        a = replace(a, namespace=ns)
        validation.check_key("id", a.id, validation.ID_MAX)
        validation.validate_alias(a)

        def tx(conn: Connection) -> tuple[Alias, int]:
            prior = repo.get_alias(conn, ns, a.id)
            if prior is None:
                raise NotFound(f'entity alias "{shown(a.id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'entity alias "{shown(a.id)}"')
            v = Violations()
            if prior.issuer and a.issuer != prior.issuer:
                v.add("issuer", "issuer cannot be changed after creation")
            if prior.external_id and a.external_id != prior.external_id:
                v.add("external_id", "external_id cannot be changed after creation")
            v.raise_if_any()
            new = replace(
                a, version=prior.version + 1, creation_time=prior.creation_time, last_updated_time=self.clock()
            )
            issuer_norm, accessor = self._resolve_alias_target(conn, new)
            self._check_alias_unique(conn, new, issuer_norm, accessor)
            if not repo.update_alias(conn, new, issuer_norm, accessor, prior.version):
                raise Aborted(f'entity alias "{shown(a.id)}" was changed concurrently; retry')
            return replace(new, mount_accessor=new.mount_accessor or accessor), repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, (), gen)

    def delete_alias(self, namespace: str, id: str, expected_version: int = 0) -> int:
        ns = namespace_or_default(namespace)
        validation.check_key("id", id, validation.ID_MAX)

        def tx(conn: Connection) -> int:
            prior = repo.get_alias(conn, ns, id)
            if prior is None:
                raise NotFound(f'entity alias "{shown(id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'entity alias "{shown(id)}"')
            repo.delete_alias(conn, id)
            return repo.bump_generation(conn)

        return self._write(tx)

    def list_aliases(self, namespace: str, page_size: int = 0, page_token: str = "") -> Page[Alias]:
        ns = namespace_or_default(namespace)
        size, after = _page_args(page_size, page_token)
        with self.db.read() as conn:
            items = repo.list_aliases(conn, ns, after, size)
        return _page(items, size, lambda a: a.id)

    # ---------------------------------------------------------------- registrations

    def _check_registration(self, conn: Connection, r: Registration) -> None:
        v = Violations()
        entity = repo.get_entity(conn, r.namespace, id=r.entity_id)
        if entity is None:
            v.add("entity_id", f'entity "{shown(r.entity_id)}" does not exist in namespace "{r.namespace}"')
        wanted = [n for n in r.ceiling_policies if n not in BUILTIN_POLICIES]
        found = repo.get_policies(conn, r.namespace, wanted)
        for i, name in enumerate(r.requested_ceiling_policies):
            if name not in BUILTIN_POLICIES and name not in found:
                v.add(
                    f"ceiling_policies[{i}]",
                    f'ceiling policy "{shown(name, 64)}" does not exist in namespace "{r.namespace}"',
                )
        v.raise_if_any()
        other = repo.get_registration(conn, r.namespace, display_name=r.display_name)
        if other and other.id != r.id:
            raise AlreadyExists(
                f'an agent registration named "{shown(r.display_name)}" already exists in namespace '
                f'"{r.namespace}" ({other.id})'
            )
        other = repo.get_registration(conn, r.namespace, entity_id=r.entity_id)
        if other and other.id != r.id:
            raise AlreadyExists(
                f'entity "{r.entity_id}" already has the agent registration '
                f'"{shown(other.display_name)}" ({other.id}); '
                "delete the existing registration first"
            )

    def create_registration(self, r: Registration) -> Written[Registration]:
        ns = namespace_or_default(r.namespace, creating=True)
        validation.validate_registration(r)
        now = self.clock()
        new = replace(r, namespace=ns, id=str(uuid.uuid4()), version=1, creation_time=now, last_updated_time=now)

        def tx(conn: Connection) -> int:
            repo.ensure_builtin_policies(conn, ns, self.builtins, now)
            self._check_registration(conn, new)
            repo.insert_registration(conn, new)
            return repo.bump_generation(conn)

        return Written(new, (), self._write(tx))

    def read_registration(
        self, namespace: str, *, id: str = "", display_name: str = "", entity_id: str = ""
    ) -> Registration:
        ns = namespace_or_default(namespace)
        if id:
            validation.check_key("id", id, validation.ID_MAX)
        elif display_name:
            validation.check_key("display_name", display_name)
        elif entity_id:
            validation.check_key("entity_id", entity_id, validation.ID_MAX)
        else:
            raise InvalidArgument.one("id", "id, display_name or entity_id is required")
        with self.db.read() as conn:
            if id:
                found = repo.get_registration(conn, ns, id=id)
            elif display_name:
                found = repo.get_registration(conn, ns, display_name=display_name)
            else:
                found = repo.get_registration(conn, ns, entity_id=entity_id)
        if found is None:
            key = shown(id or display_name or entity_id)
            raise NotFound(f'agent registration "{key}" not found in namespace "{ns}"')
        return found

    def update_registration(self, r: Registration, expected_version: int = 0) -> Written[Registration]:
        ns = namespace_or_default(r.namespace)
        validation.check_key("id", r.id, validation.ID_MAX)
        validation.validate_registration(r)

        def tx(conn: Connection) -> tuple[Registration, int]:
            prior = repo.get_registration(conn, ns, id=r.id)
            if prior is None:
                raise NotFound(f'agent registration "{shown(r.id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'agent registration "{shown(prior.display_name)}"')
            now = self.clock()
            if now <= prior.last_updated_time:  # last_updated_time always moves forward
                now = _after(prior.last_updated_time)
            new = replace(
                r,
                namespace=ns,
                version=prior.version + 1,
                creation_time=prior.creation_time,
                last_updated_time=now,
            )
            repo.ensure_builtin_policies(conn, ns, self.builtins, now)
            self._check_registration(conn, new)
            if not repo.update_registration(conn, new, prior.version):
                raise Aborted(f'agent registration "{shown(prior.display_name)}" was changed concurrently; retry')
            return new, repo.bump_generation(conn)

        new, gen = self._write(tx)
        return Written(new, (), gen)

    def delete_registration(self, namespace: str, id: str, expected_version: int = 0) -> int:
        ns = namespace_or_default(namespace)
        validation.check_key("id", id, validation.ID_MAX)

        def tx(conn: Connection) -> int:
            prior = repo.get_registration(conn, ns, id=id)
            if prior is None:
                raise NotFound(f'agent registration "{shown(id)}" not found in namespace "{ns}"')
            _check_version(prior.version, expected_version, f'agent registration "{shown(prior.display_name)}"')
            repo.delete_registration(conn, id)
            return repo.bump_generation(conn)

        return self._write(tx)

    def list_registrations(self, namespace: str, page_size: int = 0, page_token: str = "") -> Page[Registration]:
        ns = namespace_or_default(namespace)
        size, after = _page_args(page_size, page_token)
        with self.db.read() as conn:
            items = repo.list_registrations(conn, ns, after, size)
        return _page(items, size, lambda r: r.id)  # by id: display_name can change between pages

    # ---------------------------------------------------------------- activation flags

    def activate_feature(self, feature: str) -> tuple[ActivationFlag, int]:
        validation.validate_feature(feature)

        def tx(conn: Connection) -> tuple[ActivationFlag, int]:
            flag = repo.activate_feature(conn, feature, self.clock())
            return flag, repo.bump_generation(conn)

        return self._write(tx)

    def list_activation_flags(self) -> Sequence[ActivationFlag]:
        with self.db.read() as conn:
            return repo.list_activation_flags(conn)


def _check_version(stored: int, expected: int, what: str) -> None:
    if expected and expected != stored:
        raise Aborted(f"{what} is at version {stored}, not {expected}: it was changed since you read it")


def _after(stamp: str) -> str:
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    from datetime import timedelta

    return (parsed + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


__all__ = ["ControlPlane", "DomainError", "Page", "Written", "namespace_or_default", "rfc3339_now"]
