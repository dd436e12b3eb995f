"""Optional API keys with tiers (``free`` < ``pro`` < ``admin``), stored hashed, compared in constant time.

Keys come from ``serve.api_keys_file`` (YAML or JSON: a list of ``{name, sha256, tier}``, or ``{keys: [...]}``)
and/or ``$FITAD_API_KEYS`` (``name:tier:sha256hex,name:tier:sha256hex``). Only the SHA-256 of a key is ever
stored; :func:`new_key` makes a key and :func:`hash_key` its hash (:func:`make_entry` both, as a file entry).

With no key configured auth is off: every caller is an anonymous ``free`` principal identified by its
caller id (the client address), so the free tier's quota still applies per caller. With keys configured,
``Authorization: Bearer <key>`` is required (401 with ``WWW-Authenticate: Bearer`` without it or with an
unknown key) and :func:`require` refuses a key below a route's tier with 403.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable, Mapping

from fitad.config import ConfigError
from fitad.serve.errors import ApiError

__all__ = ["ENV_VAR", "KeyEntry", "KeyStore", "Principal", "TIERS", "hash_key", "make_entry", "new_key", "require",
           "tier_rank"]

TIERS = ("free", "pro", "admin")
ENV_VAR = "FITAD_API_KEYS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# RFC 6750 b64token; a key longer than this is not one of ours
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_MAX_TOKEN = 512
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fitad"'}


def hash_key(raw: str) -> str:
    """The SHA-256 hex digest of a raw API key (what the key file and ``$FITAD_API_KEYS`` store)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A new random API key (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def make_entry(name: str, tier: str) -> tuple[str, dict[str, str]]:
    """A new key and its key-file entry: ``(raw_key, {"name", "sha256", "tier"})``. Show the raw key once."""
    entry = KeyEntry(name, hash_key(raw := new_key()), tier)
    return raw, {"name": entry.name, "sha256": entry.sha256, "tier": entry.tier}


def tier_rank(tier: str) -> int:
    return TIERS.index(tier)


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and tier, or an anonymous caller (auth off) named by its caller id."""

    name: str
    tier: str
    anonymous: bool = False

    @property
    def quota_id(self) -> str:
        """The identity quotas are counted against: ``key:<name>`` or ``anon:<caller id>``."""
        return f"{'anon' if self.anonymous else 'key'}:{self.name}"

    @property
    def job_owner(self) -> str | None:
        """Whose jobs it starts are only its own to read: its key; None when anonymous (auth off: a job id is the
        only secret, and a stored task may come back without the caller's address)."""
        return None if self.anonymous else self.quota_id

    def at_least(self, tier: str) -> bool:
        return tier_rank(self.tier) >= tier_rank(tier)


@dataclasses.dataclass(frozen=True)
class KeyEntry:
    name: str
    sha256: str
    tier: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"API key name {self.name!r} is not valid (letters, digits, '.', '_', '-', '@'; "
                              "1-64 characters)")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256.lower()):
            raise ConfigError(f"API key {self.name!r}: sha256 must be 64 hex digits (the SHA-256 of the key, "
                              "see fitad.serve.auth.hash_key), not the key itself")
        object.__setattr__(self, "sha256", self.sha256.lower())
        if self.tier not in TIERS:
            raise ConfigError(f"API key {self.name!r}: tier {self.tier!r} is not one of {', '.join(TIERS)}")


def require(principal: Principal, tier: str) -> Principal:
    """``principal`` when its tier is at least ``tier`` (admin > pro > free), else 403 ``forbidden``."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    if not principal.at_least(tier):
        who = "an anonymous caller" if principal.anonymous else f"key {principal.name!r}"
        raise ApiError(403, "forbidden", f"this route needs a key of the {tier} tier or above; {who} has the "
                                         f"{principal.tier} tier")
    return principal


class KeyStore:
    """The configured keys. ``enabled`` is False when none is configured (auth off)."""

    def __init__(self, entries: Iterable[KeyEntry] = (), *, enabled: bool | None = None) -> None:
        self._entries: tuple[KeyEntry, ...] = tuple(entries)
        seen: dict[str, str] = {}
        for entry in self._entries:
            if entry.sha256 in seen:
                raise ConfigError(f"API keys {seen[entry.sha256]!r} and {entry.name!r} have the same hash")
            seen[entry.sha256] = entry.name
        # a configured but empty key file still turns auth on (fail closed), hence the explicit flag
        self.enabled = bool(self._entries) if enabled is None else enabled
        self._digests = [bytes.fromhex(e.sha256) for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_config(cls, config: Any, env: Mapping[str, str] | None = None) -> "KeyStore":
        """Keys of ``config.api_keys_file`` plus ``$FITAD_API_KEYS``; neither set: auth off."""
        env = os.environ if env is None else env
        entries: list[KeyEntry] = []
        enabled = False
        path = getattr(config, "api_keys_file", None)
        if path:
            entries += load_key_file(path)
            enabled = True
        text = (env.get(ENV_VAR) or "").strip()
        if text:
            entries += parse_env_keys(text)
            enabled = True
        return cls(entries, enabled=enabled)

    # ---------------------------------------------------------------- checking

    def authenticate(self, authorization: str | None, caller_id: str = "unknown") -> Principal:
        """The principal of an ``Authorization`` header value; auth off: anonymous ``free`` named ``caller_id``.

        401 ``unauthorized`` (with ``WWW-Authenticate: Bearer``) for a missing, malformed or unknown key.
        Every configured hash is compared, with :func:`hmac.compare_digest`, whatever matches first.
        """
        if not self.enabled:
            return Principal(name=str(caller_id or "unknown")[:128], tier="free", anonymous=True)
        if authorization is None or not str(authorization).strip():
            raise ApiError(401, "unauthorized", "an API key is required: send the header "
                                                "'Authorization: Bearer <key>'", headers=_CHALLENGE)
        parts = str(authorization).strip().split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <key>'",
                           headers=_CHALLENGE)
        token = parts[1].strip()
        if not token or len(token) > _MAX_TOKEN or not _TOKEN.match(token):
            raise ApiError(401, "unauthorized", "the API key in the Authorization header is malformed",
                           headers=_CHALLENGE)
        entry = self._match(hashlib.sha256(token.encode("ascii")).digest())
        if entry is None:
            raise ApiError(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)
        return Principal(name=entry.name, tier=entry.tier)

    def _match(self, digest: bytes) -> KeyEntry | None:
        """The entry whose hash is ``digest``: every entry is compared (no early exit), in constant time each."""
        found = -1
        for i, stored in enumerate(self._digests):
            same = hmac.compare_digest(stored, digest)
            found = i if same else found  # no branch on the result beyond this select
        return self._entries[found] if found >= 0 else None


def _entries_from(data: Any, source: str) -> list[KeyEntry]:
    if isinstance(data, Mapping) and set(data) == {"keys"}:
        data = data["keys"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{source}: expected a list of {{name, sha256, tier}} entries")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: entry {i} must be a mapping with name, sha256 and tier")
        unknown = sorted(set(item) - {"name", "sha256", "tier"})
        if unknown:
            hint = " (store the key's SHA-256 in 'sha256', never the key itself)" if {"key", "raw", "token",
                                                                                     "secret"} & set(unknown) else ""
            raise ConfigError(f"{source}: entry {i} has unknown field(s) {unknown}{hint}")
        missing = [k for k in ("name", "sha256", "tier") if k not in item]
        if missing:
            raise ConfigError(f"{source}: entry {i} lacks {missing}")
        if not isinstance(item["sha256"], str):  # YAML reads an all-digit hex string as a number
            raise ConfigError(f"{source}: entry {i}: sha256 must be a quoted string of 64 hex digits")
        try:
            out.append(KeyEntry(str(item["name"]), item["sha256"], str(item["tier"])))
        except ConfigError as exc:
            raise ConfigError(f"{source}: entry {i}: {exc}") from None
    return out


def load_key_file(path: str | os.PathLike) -> list[KeyEntry]:
    """Entries of a YAML or JSON key file; a missing or malformed file is a ConfigError (auth must not fail open)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"serve.api_keys_file: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"serve.api_keys_file: {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{exc}") from None
    return _entries_from(data, f"serve.api_keys_file {path}")


def parse_env_keys(text: str) -> list[KeyEntry]:
    """``name:tier:sha256hex,...`` (spaces around items ignored) as entries."""
    out = []
    for i, item in enumerate(t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(f"${ENV_VAR}: item {i} must look like name:tier:sha256hex")
        try:
            out.append(KeyEntry(parts[0].strip(), parts[2].strip(), parts[1].strip()))
        except ConfigError as exc:
            raise ConfigError(f"${ENV_VAR}: item {i}: {exc}") from None
    return out
