"""Which MLflow goes into the image: mlflow-skinny unless the user asks for the full package.

A model's requirements pin the full ``mlflow`` because that is what was installed when it
was logged, but serving only loads it through ``mlflow.pyfunc``, which ``mlflow-skinny``
(same version, same ``mlflow`` package) provides without the tracking server, the UI and
their dependencies: hundreds of megabytes less. pyfunc imports numpy and pandas, which
the full ``mlflow`` requires and ``mlflow-skinny`` does not, so those are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MLFLOW = "mlflow"
SKINNY = "mlflow-skinny"
PYFUNC_NEEDS = ("numpy", "pandas")
"""In mlflow's Requires-Dist, not in mlflow-skinny's, imported by mlflow.pyfunc."""


@dataclass(frozen=True)
class MlflowChoice:
    """The requirements with MLflow settled, and what to tell the user about it."""

    requirements: tuple[Requirement, ...]
    notes: tuple[str, ...] = ()
    fallback: tuple[Requirement, ...] | None = None
    """The requirements to use instead if mlflow-skinny at that version is not on the index."""
    fallback_note: str | None = None


def host_mlflow_version() -> str | None:
    """The MLflow version installed on the host (full or skinny), if any."""
    for name in (MLFLOW, SKINNY):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def choose_mlflow(
    requirements: Sequence[Requirement],
    *,
    install_mlflow: bool = False,
    local_mlflow: tuple[str, str] | None = None,
    default_version: str | None = None,
) -> MlflowChoice:
    """Settle MLflow in ``requirements``.

    ``local_mlflow`` is ``(name, version)`` of a wheel built from ``--mlflow-home``;
    ``default_version`` is used when the requirements name no MLflow at all.
    """
    reqs = list(requirements)
    full = [r for r in reqs if _name(r) == MLFLOW]
    skinny = [r for r in reqs if _name(r) == SKINNY]
    others = [r for r in reqs if _name(r) not in (MLFLOW, SKINNY)]
    if local_mlflow is not None:
        name, version = local_mlflow
        pinned = Requirement(f"{name}=={version}")
        added = _missing_pyfunc_needs(others) if canonicalize_name(name) == SKINNY else []
        replaced = ", ".join(str(r) for r in full + skinny) or "no MLflow requirement"
        note = f"MLflow from --mlflow-home: {pinned} replaces {replaced}"
        return MlflowChoice((*others, pinned, *added), (note,))
    if install_mlflow:
        return _full(reqs, full, skinny, others, default_version)
    if full:
        return _skinny(reqs, full, others)
    if skinny:
        added = _missing_pyfunc_needs(others)
        notes = (
            (f"added {_names(added)} for mlflow.pyfunc (mlflow-skinny does not require them)",)
            if added
            else ()
        )
        return MlflowChoice((*reqs, *added), notes)
    pin = f"=={default_version}" if default_version else ""
    added = _missing_pyfunc_needs(others)
    note = (
        f"no MLflow requirement found: added {SKINNY}{pin}"
        + (f" and {_names(added)}" if added else "")
        + " to load the model (use --install-mlflow for the full mlflow package)"
    )
    return MlflowChoice(
        (*reqs, Requirement(f"{SKINNY}{pin}"), *added),
        (note,),
        fallback=(*reqs, Requirement(f"{MLFLOW}{pin}")),
        fallback_note=f"{SKINNY}{pin} is not on the index: added {MLFLOW}{pin} instead",
    )


def _full(
    reqs: list[Requirement],
    full: list[Requirement],
    skinny: list[Requirement],
    others: list[Requirement],
    default_version: str | None,
) -> MlflowChoice:
    if full:
        return MlflowChoice(
            tuple(r for r in reqs if _name(r) != SKINNY), (f"keeping {_names(full)} (--install-mlflow)",)
        )
    if skinny:
        swapped = [_renamed(r, MLFLOW) if _name(r) == SKINNY else r for r in reqs]
        note = f"{_names(skinny)} -> {_names([_renamed(r, MLFLOW) for r in skinny])} (--install-mlflow)"
        return MlflowChoice(tuple(swapped), (note,))
    pinned = Requirement(f"{MLFLOW}=={default_version}" if default_version else MLFLOW)
    return MlflowChoice((*others, pinned), (f"installing {pinned} (--install-mlflow)",))


def _skinny(reqs: list[Requirement], full: list[Requirement], others: list[Requirement]) -> MlflowChoice:
    if any(r.extras for r in full):
        note = f"keeping the full {_names(full)}: mlflow-skinny does not offer those extras"
        return MlflowChoice(tuple(reqs), (note,))
    swapped = [_renamed(r, SKINNY) if _name(r) == MLFLOW else r for r in reqs if _name(r) != SKINNY]
    added = _missing_pyfunc_needs(others)
    before = _names(full)
    after = _names([_renamed(r, SKINNY) for r in full])
    extra = f" (+ {_names(added)}, which pyfunc needs)" if added else ""
    note = (
        f"{before} -> {after}{extra}: serving needs only mlflow.pyfunc; "
        "use --install-mlflow to keep the full mlflow package"
    )
    return MlflowChoice(
        (*swapped, *added),
        (note,),
        fallback=tuple(reqs),
        fallback_note=f"{after} is not on the index: keeping {before}",
    )


def _renamed(requirement: Requirement, name: str) -> Requirement:
    renamed = Requirement(str(requirement))
    renamed.name = name
    return renamed


def _missing_pyfunc_needs(others: Sequence[Requirement]) -> list[Requirement]:
    present = {_name(r) for r in others}
    return [Requirement(name) for name in PYFUNC_NEEDS if name not in present]


def _name(requirement: Requirement) -> str:
    return canonicalize_name(requirement.name)


def _names(requirements: Sequence[Requirement]) -> str:
    return ", ".join(str(r) for r in requirements)
