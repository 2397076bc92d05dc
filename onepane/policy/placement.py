"""Placement and compliance: a deployment may only run where the location's labels satisfy
its requirements (region, country, certifications such as hipaa or pci)."""

from __future__ import annotations

from collections.abc import Mapping


def _values(label: str | None) -> set[str]:
    return {v.strip() for v in (label or "").split(",") if v.strip()}


def violation(require: Mapping[str, str | list[str]], labels: Mapping[str, str]) -> str | None:
    """Why a location with `labels` cannot hold the deployment, or None if it can."""
    for key, wanted in require.items():
        if wanted == labels.get(key):
            continue  # the common case: the label is exactly the one value required
        need = {wanted} if isinstance(wanted, str) else set(wanted)
        have = _values(labels.get(key))
        missing = need - have
        if missing:
            shown = ",".join(sorted(have)) or "nothing"
            return f"needs {key}={','.join(sorted(missing))} (the location has {key}: {shown})"
    return None


def allowed(require: Mapping[str, str | list[str]], labels: Mapping[str, str]) -> bool:
    return violation(require, labels) is None
