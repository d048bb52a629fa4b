"""The image config: the base's config with what kiln's Dockerfile would set (a pure function).

``image_config`` gives what ``docker build`` gives for the Dockerfile that
``kiln.image.dockerfile.render`` renders from the same ImageSpec: the same ENTRYPOINT (and no
CMD inherited from the base, as Docker resets it), ENV with ``$PATH`` expanded against
the base's PATH, USER, WORKDIR, EXPOSE, STOPSIGNAL, HEALTHCHECK and LABELs, each read from
the spec or ``kiln.image.facts``, never re-stated here. It depends
on nothing but its arguments: no clock (``created`` is SOURCE_DATE_EPOCH), no tag, no
host path, so the same inputs give the same bytes and the same image ID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kiln.image import facts
from kiln.image.facts import Healthcheck
from kiln.image.spec import ImageSpec
from kiln.oci.types import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME
from kiln.version import __version__

_NANOSECONDS = 1_000_000_000
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_DROPPED = ("OnBuild", "Cmd")
"""ONBUILD triggers run in the child's build and are not inherited; CMD is reset by ENTRYPOINT."""


@dataclass(frozen=True)
class History:
    """One layer kiln added, as the config's history tells it."""

    diff_id: str
    created_by: str


def created(epoch: int) -> str:
    """RFC 3339 UTC for ``epoch`` seconds (``1970-01-01T00:00:00Z`` for 0)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(value: str, env: Mapping[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` replaced from ``env`` (unset: empty), as Dockerfile ENV does."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def merge_env(base_env: Sequence[str], additions: Sequence[tuple[str, str]]) -> list[str]:
    """The base's ``KEY=VALUE`` list with ``additions`` applied in order: an existing key keeps its
    place with the new value, a new key goes last (Docker's order)."""
    order: list[str] = []
    values: dict[str, str] = {}
    for item in base_env:
        key, _, value = item.partition("=")
        if key not in values:
            order.append(key)
        values[key] = value
    for key, value in additions:
        if key not in values:
            order.append(key)
        values[key] = expand(value, values)
    return [f"{key}={values[key]}" for key in order]


def labels(
    base_labels: Mapping[str, str] | None, spec: ImageSpec, *, base_name: str, base_digest: str
) -> dict[str, str]:
    """The base's labels, then kiln's and the user's (``spec.labels``); the base is named by
    ``base_name`` (a reference, never a host path) and pinned by ``base_digest``."""
    merged = dict(base_labels or {})
    for key, value in spec.labels:
        if key == ANNOTATION_BASE_NAME and value == spec.base_image:
            value = base_name  # kiln's own label: the transport-free name, not --base-image's path
        merged[key] = value
    merged[ANNOTATION_BASE_DIGEST] = base_digest
    return merged


def healthcheck(check: Healthcheck) -> dict[str, Any]:
    """The config's ``Healthcheck``: Docker's schema, durations in nanoseconds."""
    return {
        "Test": ["CMD", *check.command],
        "Interval": check.interval * _NANOSECONDS,
        "Timeout": check.timeout * _NANOSECONDS,
        "StartPeriod": check.start_period * _NANOSECONDS,
        "Retries": check.retries,
    }


def image_config(
    base: Mapping[str, Any],
    spec: ImageSpec,
    *,
    history: Sequence[History],
    epoch: int,
    base_name: str,
    base_digest: str,
) -> dict[str, Any]:
    """The config for ``spec`` on top of the base whose config is ``base`` (parsed JSON).

    ``history`` names kiln's layers in order (their diff ids follow the base's).
    """
    base_runtime = dict(base.get("config") or {})
    runtime = {key: value for key, value in base_runtime.items() if key not in _DROPPED}
    runtime.update(
        Env=merge_env(base_runtime.get("Env") or [], spec.environment),
        Entrypoint=list(spec.entrypoint),
        WorkingDir=facts.WORKDIR,
        User=f"{spec.uid}:{spec.gid}",
        ExposedPorts={**(base_runtime.get("ExposedPorts") or {}), f"{facts.EXPOSED_PORT}/tcp": {}},
        StopSignal=facts.STOP_SIGNAL,
        Healthcheck=healthcheck(spec.healthcheck),
        Labels=labels(base_runtime.get("Labels"), spec, base_name=base_name, base_digest=base_digest),
    )
    rootfs = base.get("rootfs") or {}
    base_diff_ids = list(rootfs.get("diff_ids") or [])
    stamp = created(epoch)
    config: dict[str, Any] = {
        "architecture": base.get("architecture", "amd64"),
        "os": base.get("os", "linux"),
        "created": stamp,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [*base_diff_ids, *(h.diff_id for h in history)]},
        "history": [
            *_base_history(base, len(base_diff_ids), stamp),
            *(
                {"created": stamp, "created_by": h.created_by, "comment": f"kiln {__version__}"}
                for h in history
            ),
            {
                "created": stamp,
                "created_by": "kiln: ENTRYPOINT, ENV, USER, WORKDIR, EXPOSE, STOPSIGNAL, HEALTHCHECK, LABEL",
                "comment": f"kiln {__version__}",
                "empty_layer": True,
            },
        ],
    }
    for key in ("variant", "os.version", "os.features"):
        if key in base:
            config[key] = base[key]
    return config


def _base_history(base: Mapping[str, Any], layers: int, stamp: str) -> list[dict[str, Any]]:
    """The base's history when it accounts for its layers, else one plain entry per layer; every
    entry with a ``created`` time (some tools, umoci 0.4 among them, fail on one without)."""
    history = [dict(item) for item in base.get("history") or [] if isinstance(item, Mapping)]
    if sum(not item.get("empty_layer", False) for item in history) != layers:
        history = [{"created_by": "base image layer"} for _ in range(layers)]
    return [item if item.get("created") else {**item, "created": stamp} for item in history]
