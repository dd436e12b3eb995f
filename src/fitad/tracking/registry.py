"""The model registry: one registered model per character, a version per training run, aliases for state.

``candidate`` marks the newest version; ``approved`` is what the ad service deploys and moves only through the
gate or a reviewer (:meth:`Registry.approve`), or back with :meth:`Registry.rollback`. Every move of
``approved`` is written into the tags of the versions involved (when, by whom, why, forced or not, plus an
``fitad.approval_history`` list), so the history survives in the registry itself.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
import time
from typing import Any, Mapping

from fitad.tracking.config import APPROVED, CANDIDATE
from fitad.tracking.gate import DECISION_TAG, REASONS_TAG, metrics_from_tags
from fitad.tracking.store import check_reachable, default_tracking_uri, normalize_uri, use_tracking_uri

APPROVED_AT = "fitad.approved_at"
HISTORY_TAG = "fitad.approval_history"
ROLLED_BACK_AT = "fitad.rolled_back_at"
_HISTORY_CHARS = 50_000   # MLflow 3 takes 100k characters in a version tag


class RegistryError(ValueError):
    """A registry request that cannot be done as asked; the message names the model/version."""


def who() -> str:
    """``user@host`` of the person or machine acting (``$FITAD_USER`` overrides)."""
    import os

    if os.environ.get("FITAD_USER"):
        return os.environ["FITAD_USER"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    """UTC with milliseconds; these strings sort in time order (rollback relies on it)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclasses.dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    run_id: str | None
    created: str
    metrics: dict[str, float]
    gate: str
    gate_reasons: str
    approved_at: str | None
    rolled_back_at: str | None
    tags: dict[str, str]


def _logged_model_id(source: str) -> str | None:
    """``m-...`` of a ``models:/m-...`` source (a server checks the version against that logged model)."""
    rest = source[len("models:/"):] if source.startswith("models:/") else ""
    return rest if rest.startswith("m-") and "/" not in rest else None


class Registry:
    """Registry operations against the tracking server (or embedded store) at ``tracking_uri``."""

    def __init__(self, tracking_uri: str | None = None, timeout_s: float = 10.0, create: bool = True) -> None:
        """``create=False`` for commands that only read or move aliases: no empty store is made on the way."""
        self.tracking_uri = normalize_uri(tracking_uri) if tracking_uri else default_tracking_uri()
        check_reachable(self.tracking_uri, timeout_s, create=create)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # ---- reading
    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            known = sorted(m.name for m in self.client.search_registered_models(max_results=100))
            raise RegistryError(f"no registered model {name!r} in {self.tracking_uri} (registered: {known or 'none'})"
                                ) from None

    def _version(self, name: str, version: str | int) -> Any:
        from mlflow.exceptions import MlflowException

        self._model(name)
        if not str(version).isdigit():
            raise RegistryError(f"{name}: version must be a number, got {version!r}")
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            have = ", ".join(v.version for v in self.versions(name)) or "none"
            raise RegistryError(f"{name} has no version {version} (versions: {have})") from None

    def alias_version(self, name: str, alias: str = APPROVED) -> str | None:
        """The version carrying ``alias``, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            return None

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first, with aliases, metrics and gate/approval state."""
        by_version: dict[str, list[str]] = {}
        for alias, version in (getattr(self._model(name), "aliases", None) or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        found = self.client.search_model_versions(f"name='{name}'", max_results=10000)
        rows = []
        for mv in sorted(found, key=lambda v: int(v.version)):
            tags = dict(mv.tags or {})
            rows.append(VersionInfo(
                version=str(mv.version), aliases=sorted(by_version.get(str(mv.version), [])), run_id=mv.run_id,
                created=time.strftime("%Y-%m-%d %H:%M", time.gmtime((mv.creation_timestamp or 0) / 1000)),
                metrics=metrics_from_tags(tags), gate=tags.get(DECISION_TAG, "-"),
                gate_reasons=tags.get(REASONS_TAG, ""), approved_at=tags.get(APPROVED_AT),
                rolled_back_at=tags.get(ROLLED_BACK_AT), tags=tags))
        return rows

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded move of ``approved`` across the versions, oldest first."""
        events = []
        for row in self.versions(name):
            for event in json.loads(row.tags.get(HISTORY_TAG) or "[]"):
                events.append({"version": row.version, **event})
        # one move writes two events with the same time: the version leaving `approved` first
        return sorted(events, key=lambda e: (e.get("at", ""), e.get("action") not in ("replaced", "rolled_back")))

    # ---- writing
    def create_version(self, name: str, source: str, run_id: str | None, tags: Mapping[str, Any],
                       description: str = "") -> str:
        """A new version of ``name`` (created if needed) from the logged model ``source``; it becomes ``candidate``."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, tags={"fitad.kind": "lora"},
                                                description="LoRA adapters of one character/project (fitad)")
        # A SQLite registry resolves a `models:/m-...` source through MLflow's process-wide tracking store.
        with use_tracking_uri(self.tracking_uri):
            mv = self.client.create_model_version(name, source=source, run_id=run_id,
                                                  tags={k: str(v) for k, v in tags.items()}, description=description,
                                                  model_id=_logged_model_id(source))
        self.client.set_registered_model_alias(name, CANDIDATE, mv.version)
        return str(mv.version)

    def set_tags(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def _append_history(self, name: str, version: str, event: dict[str, Any]) -> None:
        tags = dict(self.client.get_model_version(name, version).tags or {})
        history = json.loads(tags.get(HISTORY_TAG) or "[]") + [event]
        while len(json.dumps(history)) > _HISTORY_CHARS and len(history) > 1:
            history.pop(0)  # the per-version tags keep the latest state; the oldest list entries go first
        self.client.set_model_version_tag(name, version, HISTORY_TAG, json.dumps(history))

    def approve(self, name: str, version: str | int, reason: str, *, by: str | None = None, force: bool = False,
                via: str = "reviewer") -> dict[str, Any]:
        """Move ``approved`` to ``version``. A version that failed the gate needs ``force`` (and a reason)."""
        if not reason or not reason.strip():
            raise RegistryError("approving needs a reason (--reason TEXT): it is recorded with the version")
        mv = self._version(name, version)
        version, tags = str(mv.version), dict(mv.tags or {})
        if tags.get(DECISION_TAG) == "fail" and not force:
            raise RegistryError(f"{name} v{version} failed the gate ({tags.get(REASONS_TAG) or 'no reasons'}); "
                                "approving it anyway needs --force and a --reason")
        previous = self.alias_version(name, APPROVED)
        event = {"action": "approved", "at": _now(), "by": by or who(), "reason": reason.strip(), "forced": force,
                 "via": via, "previous": previous}
        if previous == version:
            return {**event, "action": "unchanged"}
        # The alias moves first: tags then describe a move that happened, never one that failed half-way.
        self.client.set_registered_model_alias(name, APPROVED, version)
        self.set_tags(name, version, {APPROVED_AT: event["at"], "fitad.approved_by": event["by"],
                                      "fitad.approved_reason": event["reason"], "fitad.approved_forced": force,
                                      "fitad.approved_via": via})
        if ROLLED_BACK_AT in tags:  # approved again on purpose: a rollback target once more
            self.client.delete_model_version_tag(name, version, ROLLED_BACK_AT)
        self._append_history(name, version, event)
        if previous is not None:
            self._append_history(name, previous, {"action": "replaced", "at": event["at"], "by": event["by"],
                                                  "reason": f"v{version} approved: {event['reason']}"})
        return {**event, "version": version}

    def rollback(self, name: str, reason: str = "rollback", *, by: str | None = None) -> dict[str, Any]:
        """Move ``approved`` back to the version approved before the current one (skipping rolled-back ones)."""
        self._model(name)
        current = self.alias_version(name, APPROVED)
        if current is None:
            raise RegistryError(f"{name}: no version is approved, so there is nothing to roll back")
        rows = {r.version: r for r in self.versions(name)}
        target = self._rollback_target(rows, current)
        if target is None:
            raise RegistryError(f"{name}: no version was approved before v{current} (or all were rolled back); "
                                "approve one by hand: fitad registry approve NAME VERSION --reason TEXT")
        at, actor = _now(), by or who()
        self.client.set_registered_model_alias(name, APPROVED, target.version)
        self.set_tags(name, current, {ROLLED_BACK_AT: at, "fitad.rolled_back_by": actor,
                                      "fitad.rolled_back_reason": reason})
        self._append_history(name, current, {"action": "rolled_back", "at": at, "by": actor, "reason": reason,
                                             "to": target.version})
        self.set_tags(name, target.version, {APPROVED_AT: at, "fitad.approved_by": actor,
                                             "fitad.approved_reason": f"rollback from v{current}: {reason}",
                                             "fitad.approved_via": "rollback"})
        self._append_history(name, target.version, {"action": "restored", "at": at, "by": actor, "reason": reason,
                                                    "from": current})
        return {"from": current, "to": target.version, "at": at, "by": actor, "reason": reason}

    @staticmethod
    def _rollback_target(rows: Mapping[str, VersionInfo], current: str) -> VersionInfo | None:
        """Follow the ``previous`` pointer each approval recorded (the version approved before it), skipping
        versions that were rolled back. No clocks are compared: approvals made on machines whose clocks
        disagree still roll back in the order they happened. When ``current`` got the alias outside fitad
        (the MLflow UI), fall back to the most recent version fitad approved other than it."""
        def approvals(version: str) -> list[dict[str, Any]]:
            row = rows.get(version)
            events = json.loads(row.tags.get(HISTORY_TAG) or "[]") if row else []
            return [e for e in events if e.get("action") == "approved"]

        if not approvals(current):
            others = [r for r in rows.values() if r.version != current and r.approved_at and not r.rolled_back_at]
            return max(others, key=lambda r: r.approved_at or "") if others else None
        seen = {current}
        target = approvals(current)[-1].get("previous")
        while target is not None and (target in seen or target not in rows or rows[target].rolled_back_at):
            seen.add(target)
            found = approvals(target)
            target = found[-1].get("previous") if found else None
        return rows[target] if target is not None else None
