"""A model registry in the bucket: the versions of a model, which one is in production, and every change.

No service: the registry is a folder (``registry_uri``: a local folder, ``gs://``, ``s3://`` or
``minio://`` prefix) with one stable location per model name::

    <registry_uri>/<model_name>/events/00000001.json
                                       00000002.json ...

**An append-only event log.** Each change is one event object: ``register`` (a new version: the
model's URI -- the train artifact's, the weights are never copied --, its metrics, its data
fingerprints, the run that made it), ``promote`` (the production pointer moves to a version) or
``rollback`` (the pointer goes back to the version that was in production before the current one).
Each event records who made the change (:func:`actor`: the user, or the KFP pod and namespace; never a
credential), when (UTC) and why (the reason text). The state -- the versions, their stage and the
production pointer -- is derived from the log by replaying it (:meth:`Registry.versions`,
:meth:`Registry.production`); nothing else is written, so nothing else can disagree with it.

**Concurrency.** Event ``n`` is created only if no object of that name exists
(:func:`components.common.storage.create_bytes`: GCS ``ifGenerationMatch=0``, S3 ``If-None-Match: *``,
a local hard link), so of two writers racing for the same sequence number exactly one wins. The
loser reads the log again: a registration is still valid and is retried at the next number; a
promotion or rollback is a compare-and-swap on the production pointer it read first, so when the
pointer moved meanwhile it fails with :class:`ConflictError`, naming the change that won (run it
again if it should still happen). Replaying checks that each event follows from the ones before it
(numbers without a gap, a promotion of a registered version, a rollback to the previous production
version); a log that does not is refused with the object named.

**Naming a model.** :func:`resolve_model_uri` turns ``<name>@production``, ``<name>@v3`` or
``<name>@latest`` (with a registry root), or ``<registry_uri>#<name>@production``, into the version's
model URI; a plain folder URI passes through unchanged.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.common import storage
from components.common.files import TRAINING_SUMMARY_FILE
from components.common.model_folder import MODEL_VERSION

REGISTER, PROMOTE, ROLLBACK = "register", "promote", "rollback"
ACTIONS = (REGISTER, PROMOTE, ROLLBACK)
CANDIDATE, PRODUCTION, RETIRED = "candidate", "production", "retired"
STAGES = (CANDIDATE, PRODUCTION, RETIRED)
LATEST = "latest"  # resolve_model_uri: the newest registered version
EVENTS_FOLDER = "events"
FORMAT = 1  # the event objects' format
MAX_ATTEMPTS = 25  # writes lost to racing writers before giving up
READ_THREADS = 16  # events of a remote log read at once (each is one small GET)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EVENT_NAME = re.compile(r"(\d{8})\.json")
_SPEC = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)@(?P<selector>[A-Za-z0-9._-]+)")
# The namespace file Kubernetes mounts in every pod: a plain name, not the token beside it.
_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ENV_ACTOR = "REGISTRY_ACTOR"  # overrides who a change is recorded as (e.g. a CI job's name)


class RegistryError(ValueError):
    """A registry change or lookup that cannot be done; the message says why and what to do."""


class ConflictError(RegistryError):
    """Another change won the race: the production pointer moved after this change read it."""


@dataclass(frozen=True)
class Version:
    """One registered version of a model and its stage (candidate, production or retired)."""

    version: str
    model_uri: str
    metrics: dict[str, Any]
    fingerprints: dict[str, Any]
    created: str
    run: str
    stage: str


@dataclass(frozen=True)
class Event:
    """One change of the registry: ``register``, ``promote`` or ``rollback``, who made it, when and why."""

    seq: int
    action: str
    version: str
    previous: str  # the production version before this change ("" if none)
    who: str
    when: str
    reason: str
    run: str


@dataclass
class _State:
    """The registry replayed from its log."""

    registered: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> register event
    stack: list[str] = field(default_factory=list)  # production versions; the last is in production
    events: list[Event] = field(default_factory=list)
    last_change: Event | None = None  # the last promote or rollback

    @property
    def production(self) -> str:
        return self.stack[-1] if self.stack else ""

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def stage_of(self, version: str) -> str:
        if version == self.production:
            return PRODUCTION
        return (
            RETIRED if any(e.action != REGISTER and e.version == version for e in self.events) else CANDIDATE
        )


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def actor() -> str:
    """Who makes a change: ``$REGISTRY_ACTOR``, a KFP task (``kfp:<namespace>/<pod>``) or ``user@host``.

    Only names are read (the pod name the KFP backend sets as ``KFP_POD_NAME``, the namespace file
    Kubernetes mounts); never a token or another credential.
    """
    explicit = os.environ.get(ENV_ACTOR, "").strip()
    if explicit:
        return explicit
    pod = os.environ.get("KFP_POD_NAME", "").strip()
    if pod:
        try:
            namespace = _NAMESPACE_FILE.read_text().strip()
        except OSError:
            namespace = ""
        return f"kfp:{namespace}/{pod}" if namespace else f"kfp:{pod}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_name(model_name: str) -> str:
    """``model_name`` if it can name a registry folder; else a RegistryError saying what to pass."""
    if not isinstance(model_name, str) or not NAME_PATTERN.fullmatch(model_name):
        raise RegistryError(
            f"model name {model_name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or "
            "digit, at most 128 characters), e.g. fashion-classifier"
        )
    return model_name


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON: NaN and infinities become None; anything else not JSON is an error."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item(), where)
    raise RegistryError(f"{where}: {type(value).__name__} is not JSON (give numbers, text, lists, dicts)")


class Registry:
    """The versions of one model in a registry folder, and its production pointer (see the module)."""

    def __init__(self, registry_uri: str, model_name: str, *, config: storage.StorageConfig | None = None):
        if not registry_uri or not registry_uri.strip():
            raise RegistryError(
                "registry_uri is empty: give the registry's folder (a local folder, gs://bucket/models, "
                "s3://bucket/models or minio://mlpipeline/models)"
            )
        self.registry_uri = registry_uri.strip()
        self.model_name = check_name(model_name)
        self.location = storage.join(self.registry_uri, self.model_name)
        self.events_uri = storage.join(self.location, EVENTS_FOLDER)
        self._config = config
        self._cache: dict[int, dict[str, Any]] = {}
        # Tests: called after a change read the log and before its first write (lines writers up).
        self._after_read: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Registry({self.registry_uri!r}, {self.model_name!r})"

    # ---- reading ---------------------------------------------------------------------------------
    def _event_uri(self, seq: int) -> str:
        return storage.join(self.events_uri, f"{seq:08d}.json")

    def _read_raw(self) -> list[dict[str, Any]]:
        """Every event object, in order; each read once per Registry (events never change)."""
        try:
            names = [f.relative for f in storage.list_prefix(self.events_uri, config=self._config)]
        except FileNotFoundError as exc:
            raise RegistryError(f"registry {self.registry_uri}: {exc}; create the bucket first") from exc
        seqs = sorted(int(m.group(1)) for n in names if (m := _EVENT_NAME.fullmatch(n)))
        if seqs and seqs != list(range(1, len(seqs) + 1)):
            missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
            raise RegistryError(
                f"registry {self.location}: event(s) {', '.join(map(str, missing[:5]))} missing from "
                f"{self.events_uri} (events are never deleted); restore them from the bucket's versioning "
                "or backups before changing this model"
            )
        new = [seq for seq in seqs if seq not in self._cache]
        if len(new) > 1 and storage.is_remote(self.events_uri):
            with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(new))) as pool:
                read = list(pool.map(self._read_event, new))
        else:
            read = [self._read_event(seq) for seq in new]
        self._cache.update(zip(new, read, strict=True))
        return [self._cache[s] for s in seqs]

    def _read_event(self, seq: int) -> dict[str, Any]:
        uri = self._event_uri(seq)
        try:
            raw = json.loads(storage.read_bytes(uri, config=self._config))
        except ValueError as exc:
            raise RegistryError(f"{uri}: not a registry event (invalid JSON: {exc})") from exc
        if not isinstance(raw, dict):
            raise RegistryError(f"{uri}: not a registry event (expected a JSON object)")
        return raw

    def _state(self) -> _State:
        state = _State()
        for raw in self._read_raw():
            self._apply(state, raw)
        return state

    def _apply(self, state: _State, raw: dict[str, Any]) -> None:
        """Add one event to ``state``; a RegistryError naming the object when it does not follow."""
        seq = state.last_seq + 1
        uri = self._event_uri(seq)

        def bad(why: str) -> RegistryError:
            return RegistryError(
                f"{uri}: {why}; this event does not follow from the ones before it (was the log changed "
                "by hand?). Restore the object from the bucket's versioning or backups"
            )

        if raw.get("seq") != seq or raw.get("model") != self.model_name:
            raise bad(f"it says seq {raw.get('seq')!r} of model {raw.get('model')!r}")
        action, version = raw.get("action"), str(raw.get("version", ""))
        previous = str(raw.get("previous", ""))
        if previous != state.production:
            raise bad(
                f"it says production was {previous or 'none'!r}, the log says {state.production or 'none'!r}"
            )
        if action == REGISTER:
            if not version or version in state.registered:
                raise bad(f"version {version!r} is registered twice")
            state.registered[version] = raw
        elif action == PROMOTE:
            if version not in state.registered or version == state.production:
                raise bad(f"promotes {version!r}, not a registered version out of production")
            state.stack.append(version)
        elif action == ROLLBACK:
            if len(state.stack) < 2 or version != state.stack[-2]:
                raise bad(f"rolls back to {version!r}, not the previous production version")
            state.stack.pop()
        else:
            raise bad(f"unknown action {action!r} (expected {', '.join(ACTIONS)})")
        event = Event(
            seq=seq,
            action=str(action),
            version=version,
            previous=previous,
            who=str(raw.get("who", "")),
            when=str(raw.get("when", "")),
            reason=str(raw.get("reason", "")),
            run=str(raw.get("run", "")),
        )
        state.events.append(event)
        if action != REGISTER:
            state.last_change = event

    def _version(self, state: _State, version: str) -> Version:
        raw = state.registered[version]
        return Version(
            version=version,
            model_uri=str(raw.get("model_uri", "")),
            metrics=dict(raw.get("metrics") or {}),
            fingerprints=dict(raw.get("fingerprints") or {}),
            created=str(raw.get("when", "")),
            run=str(raw.get("run", "")),
            stage=state.stage_of(version),
        )

    def versions(self) -> list[Version]:
        """Every registered version, oldest first, each with its stage now."""
        state = self._state()
        return [self._version(state, v) for v in state.registered]

    def production(self) -> Version | None:
        """The version in production, or None when none was promoted."""
        state = self._state()
        return self._version(state, state.production) if state.production else None

    def history(self) -> list[Event]:
        """Every change, oldest first."""
        return self._state().events

    def get(self, version: str) -> Version:
        """One version by name (``v3``), ``production`` or ``latest``; a RegistryError naming the known ones."""
        state = self._state()
        if version == PRODUCTION:
            if not state.production:
                raise RegistryError(
                    f"no version of {self.model_name} is in production in {self.registry_uri}"
                    + (
                        f" (registered: {', '.join(state.registered)}); promote one: python pipeline.py promote "
                        f"--registry {self.registry_uri} --model {self.model_name} --version V --reason '...'"
                        if state.registered
                        else "; nothing is registered yet (the training pipeline registers its model)"
                    )
                )
            version = state.production
        elif version == LATEST:
            if not state.registered:
                raise RegistryError(f"no version of {self.model_name} is registered in {self.registry_uri}")
            version = list(state.registered)[-1]
        if version not in state.registered:
            known = ", ".join(state.registered) or "none"
            raise RegistryError(
                f"{self.model_name} has no version {version!r} in {self.registry_uri} (registered: {known})"
            )
        return self._version(state, version)

    # ---- changing --------------------------------------------------------------------------------
    def _append(self, make: Callable[[_State], dict[str, Any]]) -> tuple[_State, dict[str, Any]]:
        """Write the event ``make`` builds from the current state as the next one; retried when another wins.

        ``make`` raises when the change is not (or no longer) valid in the state it gets.
        """
        for attempt in range(MAX_ATTEMPTS):
            state = self._state()
            body = make(state)
            if attempt == 0 and self._after_read is not None:
                self._after_read()
            seq = state.last_seq + 1
            raw = {
                "format": FORMAT,
                "seq": seq,
                "model": self.model_name,
                "id": uuid.uuid4().hex,  # makes each writer's bytes unique (create_bytes' read-back)
                "when": utc_now(),
                "who": actor(),
                "previous": state.production,
                **body,
            }
            data = json.dumps(raw, indent=2, sort_keys=True, allow_nan=False).encode()
            if storage.create_bytes(self._event_uri(seq), data, "application/json", config=self._config):
                self._cache[seq] = json.loads(data)
                self._apply(state, self._cache[seq])
                return state, raw
            time.sleep(random.uniform(0.0, 0.02 * (attempt + 1)))  # another writer took seq: read again
        raise RegistryError(
            f"registry {self.location}: {MAX_ATTEMPTS} attempts to write a change lost to other writers; "
            "nothing was changed by this call. Try again"
        )

    def register(
        self,
        model_uri: str,
        metrics: dict[str, Any],
        fingerprints: dict[str, Any],
        reason: str,
        run: str = "",
    ) -> Version:
        """Record a new version (``v1``, ``v2``, ...) of the model at ``model_uri`` as a candidate.

        The model is not copied: ``model_uri`` (the train artifact's URI) is what is recorded.
        """
        if not model_uri or not model_uri.strip():
            raise RegistryError("register: model_uri is empty; give the trained model folder's URI")
        body = {
            "action": REGISTER,
            "model_uri": model_uri.strip(),
            "metrics": _plain(dict(metrics or {}), "metrics"),
            "fingerprints": _plain(dict(fingerprints or {}), "fingerprints"),
            "reason": str(reason or ""),
            "run": str(run or ""),
        }

        def make(state: _State) -> dict[str, Any]:
            return {**body, "version": f"v{len(state.registered) + 1}"}

        state, raw = self._append(make)
        return self._version(state, raw["version"])

    def _moved(self, state: _State, expected: str, doing: str) -> ConflictError:
        change = state.last_change
        by = (
            f" by {change.action} {change.seq} ({change.who} at {change.when}: {change.reason!r})"
            if change
            else ""
        )
        return ConflictError(
            f"{self.model_name}: production moved from {expected or 'none'} to {state.production or 'none'}{by} "
            f"while {doing} was being written; this change was not made. Check `python pipeline.py models "
            f"--registry {self.registry_uri} --model {self.model_name}` and run it again if it should still happen"
        )

    def promote(self, version: str, reason: str) -> Version:
        """Move the production pointer to ``version``; ConflictError when another change moved it first."""
        if not reason or not reason.strip():
            raise RegistryError("promote: give a reason (it is recorded with the change)")
        expected: list[str] = []

        def make(state: _State) -> dict[str, Any]:
            if not expected:
                expected.append(state.production)
            elif state.production != expected[0]:
                raise self._moved(state, expected[0], f"the promotion of {version}")
            if version not in state.registered:
                known = ", ".join(state.registered) or "none"
                raise RegistryError(
                    f"promote: {self.model_name} has no version {version!r} in {self.registry_uri} "
                    f"(registered: {known})"
                )
            if version == state.production:
                raise RegistryError(f"promote: {version} of {self.model_name} is already in production")
            return {"action": PROMOTE, "version": version, "reason": reason.strip(), "run": ""}

        state, raw = self._append(make)
        return self._version(state, raw["version"])

    def rollback(self, reason: str) -> Version:
        """Move the production pointer back to the version in production before the current one."""
        if not reason or not reason.strip():
            raise RegistryError("rollback: give a reason (it is recorded with the change)")
        expected: list[str] = []

        def make(state: _State) -> dict[str, Any]:
            if not expected:
                expected.append(state.production)
            elif state.production != expected[0]:
                raise self._moved(state, expected[0], "the rollback")
            if not state.production:
                raise RegistryError(f"rollback: no version of {self.model_name} is in production")
            if len(state.stack) < 2:
                raise RegistryError(
                    f"rollback: {state.production} is the first production version of {self.model_name}; "
                    "there is no earlier one to go back to (promote another version instead)"
                )
            return {"action": ROLLBACK, "version": state.stack[-2], "reason": reason.strip(), "run": ""}

        state, raw = self._append(make)
        return self._version(state, raw["version"])


def open_registry(
    registry_uri: str, model_name: str, *, config: storage.StorageConfig | None = None
) -> Registry:
    """The registry of ``model_name`` under ``registry_uri``; nothing is read or written until asked."""
    return Registry(registry_uri, model_name, config=config)


def is_registry_spec(spec: str) -> bool:
    """Whether ``spec`` names a registry version (``name@production``, ``uri#name@v3``), not a folder URI."""
    spec = spec.strip()
    if "#" in spec:
        return True
    return "/" not in spec and "://" not in spec and _SPEC.fullmatch(spec) is not None


def resolve_model_uri(
    spec: str, registry_uri: str = "", *, config: storage.StorageConfig | None = None
) -> str:
    """The model folder URI ``spec`` names.

    - a folder URI or path (``gs://b/models/abc``, ``/data/model``) is returned unchanged;
    - ``<registry_uri>#<name>@<selector>``, or ``<name>@<selector>`` with ``registry_uri`` given:
      the model URI of the version ``selector`` names: ``production``, ``latest`` or a version (``v3``).
    """
    spec = (spec or "").strip()
    if not spec:
        raise RegistryError("model_uri is empty: give a model folder URI or <name>@production")
    if not is_registry_spec(spec):
        return spec
    root, _, ref = spec.rpartition("#")
    root = root or registry_uri
    match = _SPEC.fullmatch(ref)
    if match is None:
        raise RegistryError(
            f"{spec!r}: expected <registry_uri>#<name>@<production|latest|vN>, e.g. "
            "gs://bucket/models#fashion-classifier@production"
        )
    if not root:
        raise RegistryError(
            f"{spec!r} names a registry version but no registry is given: pass registry_uri (the registry's "
            f"folder) or write it as <registry_uri>#{ref}"
        )
    return open_registry(root, match["name"], config=config).get(match["selector"]).model_uri


def fingerprints_from_model_folder(model_dir: str | Path) -> dict[str, Any]:
    """What identifies a model folder's weights and training data, read from its training summary.

    ``model_version`` (the weights' hash), the data fingerprint when the train stage recorded one
    (``data_fingerprint``), the augmentations and extra labelled data the training added, the class
    names and the training settings (``config``). A folder without a readable summary gives an empty
    dict (a model registered from elsewhere).
    """
    path = Path(model_dir) / TRAINING_SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict):
        return {}
    keys = (
        *(MODEL_VERSION, "data_fingerprint", "dataset_fingerprint", "profile", "model_name", "class_names"),
        *("augmentations", "extra_training"),  # what the training added to the data (E3's options)
    )
    out: dict[str, Any] = {k: summary[k] for k in keys if summary.get(k) not in (None, "")}
    if isinstance(summary.get("config"), dict):
        out["training_config"] = summary["config"]
    return out


def metrics_from_model_folder(model_dir: str | Path) -> dict[str, Any]:
    """The training summary's ``metrics`` (validation accuracy, F1, loss, ...); empty when there is none."""
    path = Path(model_dir) / TRAINING_SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    metrics = summary.get("metrics") if isinstance(summary, dict) else None
    return dict(metrics) if isinstance(metrics, dict) else {}
