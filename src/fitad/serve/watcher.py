"""Which LoRA a request renders with: registry references resolved to local adapters, and the alias watcher.

* :class:`LoraRef` -- a resolved adapter pinned to one registry version (or a fixed local path): what a
  request captured at admission renders with, whatever the alias does meanwhile.
* :class:`LoraResolver` -- ``NAME``, ``NAME@alias`` and ``NAME/VERSION`` against the tracking store at one
  URI; downloads go through :func:`fitad.generate.lora_source.resolve_adapter` (one download per version,
  cached under ``$FITAD_HOME/adapters``), failures become :class:`~fitad.serve.errors.ApiError` (404 for an
  unknown model/version/alias, 422 for a malformed reference, 503 when the store cannot be reached).
* :class:`AliasWatcher` -- a daemon thread that calls a check function every ``interval`` seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import threading
from typing import Any, Callable

from fitad.serve.config import _ALIAS, _MODEL_NAME
from fitad.serve.errors import ApiError

log = logging.getLogger("fitad.serve")

__all__ = ["LoraRef", "LoraResolver", "AliasWatcher", "parse_lora_spec"]

_SPEC = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>[^@/]+))?$")


@dataclasses.dataclass(frozen=True)
class LoraRef:
    """One adapter, resolved: ``ref`` is ``models:/NAME/VERSION`` (pinned) or the configured path/URI."""

    ref: str
    requested: str
    source: Any                        # fitad.generate.lora_source.AdapterSource
    name: str | None = None
    version: str | None = None
    alias: str | None = None

    @property
    def path(self) -> str:
        """The local adapter the renderer loads (make_ad resolves it again: a file key, no registry call)."""
        return str(self.source.path)

    @property
    def family(self) -> str | None:
        return self.source.meta.family

    def describe(self) -> dict[str, Any]:
        return {"ref": self.ref, "requested": self.requested, "name": self.name, "version": self.version,
                "alias": self.alias, "family": self.family, "trigger": self.source.meta.trigger}


def parse_lora_spec(spec: str, default_alias: str) -> tuple[str, str | None, str | None]:
    """``NAME`` -> (NAME, default_alias, None); ``NAME@alias``; ``NAME/3`` -> (NAME, None, "3").

    Anything else (paths, URIs, ``../../etc/passwd``) is a 422 naming ``lora``: a request picks a registered
    model, never a file on the server.
    """
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    name, alias, version = match.group("name", "alias", "version") if match else (None, None, None)
    if not match or not _MODEL_NAME.match(name) or (alias is not None and not _ALIAS.match(alias)) \
            or (version is not None and not (version.isdigit() and len(version) <= 9 and int(version) > 0)):
        shown = repr(spec) if isinstance(spec, str) and len(spec) <= 80 and spec.isprintable() else "this value"
        raise ApiError(422, "invalid_field", f"lora: {shown} is not a registered model reference; use NAME, "
                       "NAME@ALIAS or NAME/VERSION (letters, digits, '.', '_', '-')", "lora")
    return name, (alias if alias is not None else (None if version is not None else default_alias)), version


class LoraResolver:
    """Registry look-ups and adapter downloads against the tracking store at ``tracking_uri``."""

    def __init__(self, tracking_uri: str, cache_size: int = 64) -> None:
        self.tracking_uri = tracking_uri
        self._registry: Any = None
        self._lock = threading.Lock()
        self._sources: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self._cache_size = cache_size

    # ---- registry
    def registry(self) -> Any:
        """The :class:`~fitad.tracking.registry.Registry` (made on first success; raises 503 until then)."""
        if self._registry is None:
            from fitad.tracking.registry import Registry
            from fitad.tracking.store import TrackingUnavailableError

            try:
                self._registry = Registry(self.tracking_uri, create=False)
            except TrackingUnavailableError as exc:
                raise ApiError(503, "not_ready", f"model registry unavailable: {exc}") from None
        return self._registry

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run a registry call; an unreachable store or a server error is a 503."""
        from mlflow.exceptions import MlflowException

        from fitad.tracking.store import TrackingUnavailableError

        try:
            return fn()
        except (TrackingUnavailableError, MlflowException, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise ApiError(503, "not_ready", f"model registry unavailable: {message}") from None

    def alias_version(self, name: str, alias: str) -> str | None:
        return self._call(lambda: self.registry().alias_version(name, alias))

    def model_exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        def exists() -> bool:
            try:
                self.registry().client.get_registered_model(name)
                return True
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return False
                raise
        return self._call(exists)

    def version_exists(self, name: str, version: str) -> bool:
        from mlflow.exceptions import MlflowException

        def exists() -> bool:
            try:
                self.registry().client.get_model_version(name, version)
                return True
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return False
                raise
        return self._call(exists)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Versions of ``name`` with their aliases and gate state ([] when the model does not exist)."""
        from fitad.tracking.registry import RegistryError

        try:
            rows = self._call(lambda: self.registry().versions(name))
        except RegistryError:
            return []
        return [{"version": r.version, "aliases": r.aliases, "created": r.created, "gate": r.gate,
                 "metrics": r.metrics, "approved_at": r.approved_at, "rolled_back_at": r.rolled_back_at,
                 "family": r.tags.get("fitad.family"), "base_model": r.tags.get("fitad.base_model")}
                for r in rows]

    # ---- adapters
    def _resolve(self, ref: str) -> Any:
        """:func:`resolve_adapter` against this store (MLflow reads the store from process-wide state)."""
        from fitad.generate.lora_source import resolve_adapter
        from fitad.lora.load import LoraLoadError
        from fitad.tracking.store import use_tracking_uri

        try:
            if not ref.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
                return resolve_adapter(ref)
            with use_tracking_uri(self.tracking_uri):  # one block per process; the env is restored after
                os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
                return resolve_adapter(ref)
        except LoraLoadError as exc:
            raise ApiError(422, "invalid_field", f"lora: {exc}", "lora") from None

    def pinned(self, name: str, version: str, *, alias: str | None = None, requested: str | None = None
               ) -> LoraRef:
        """Version ``version`` of ``name``, downloaded once; 404 when there is no such version."""
        key = (name, str(version))
        with self._lock:
            source = self._sources.get(key)
            if source is not None:
                self._sources.move_to_end(key)
        if source is None:
            if not self.version_exists(name, str(version)):
                raise self.not_found(name, version=str(version))
            source = self._resolve(f"models:/{name}/{version}")
            with self._lock:
                self._sources[key] = source
                while len(self._sources) > self._cache_size:
                    self._sources.popitem(last=False)
        requested = requested or (f"{name}@{alias}" if alias else f"{name}/{version}")
        return LoraRef(f"models:/{name}/{version}", requested, source, name, str(version), alias)

    def fixed(self, ref: str) -> LoraRef:
        """A configured LoRA path or URI (``serve.lora``), as it is."""
        source = self._resolve(ref)
        reg = source.registry or {}
        return LoraRef(ref, ref, source, reg.get("name"), reg.get("version"), reg.get("alias") or None)

    def request(self, spec: str, default_alias: str) -> LoraRef:
        """A per-request ``lora`` (``NAME``, ``NAME@alias``, ``NAME/VERSION``) pinned to one version."""
        name, alias, version = parse_lora_spec(spec, default_alias)
        if version is None:
            version = self.alias_version(name, alias)
            if version is None:
                raise self.not_found(name, alias=alias)
        return self.pinned(name, version, alias=alias, requested=spec)

    def not_found(self, name: str, *, alias: str | None = None, version: str | None = None) -> ApiError:
        if not self.model_exists(name):
            why = f"no registered model {name!r} in the model registry"
        elif alias is not None:
            why = f"no version of {name!r} carries the alias {alias!r}"
        else:
            why = f"{name!r} has no version {version}"
        return ApiError(404, "not_found", f"lora: {why}", "lora")


class AliasWatcher:
    """Calls ``check()`` every ``interval`` seconds on a daemon thread until :meth:`stop`; errors are logged."""

    def __init__(self, check: Callable[[], Any], interval: float, name: str = "fitad-alias-watcher") -> None:
        self.check = check
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "AliasWatcher":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a failed poll must not end the watcher; the next one retries
                log.exception("alias check failed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
