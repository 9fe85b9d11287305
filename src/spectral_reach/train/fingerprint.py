"""What a run is: everything that shapes its result, and a fingerprint of it.

    identity    = {"version": result_version(trainable), "spec": the run's settings, "inputs": {role: file identity}}
    fingerprint = sha256(identity as canonical JSON), first 16 hex digits

The settings are the spec's fields less :data:`NOT_RESULT` (how often to log and checkpoint: a
resumed run is bitwise equal to an uninterrupted one whatever they are). A data file's identity is
the sha256 its sidecar records (written with the file) and its size; data written before sidecars
carried checksums falls back to size, mtime and the sidecar's own sha256. Any other input (a probe's
backbone weights) is hashed whole. Checkpoints, ``done.json`` and every run table record both, so a
checkpoint of other settings is never resumed (:mod:`.resume`) and a result says what it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..data.memmap import read_meta, sha256_file, sidecar_path
from ..version import result_version

#: Spec fields that change no number of a run.
NOT_RESULT = ("checkpoint_every", "log_every", "tracking")


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """A data file (``.bin`` with a sidecar) by its recorded checksum, any other file by its own."""
    path = Path(path)
    size = path.stat().st_size
    if not sidecar_path(path).exists() or path.suffix != ".bin":
        return {"bytes": size, "sha256": sha256_file(path)}
    meta = read_meta(path)
    if "sha256" in meta:
        return {"bytes": size, "sha256": meta["sha256"]}
    return {"bytes": size, "mtime_ns": path.stat().st_mtime_ns, "sidecar_sha256": sha256_file(sidecar_path(path))}


def identity(spec: Any, inputs: dict[str, str | os.PathLike]) -> dict[str, Any]:
    """The identity of a run with settings ``spec`` (a dataclass) reading the files ``inputs``
    (``{role: path}``; roles, not paths, name them, so a run started from another folder is the same run)."""
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k not in NOT_RESULT}
    files = {role: file_identity(path) for role, path in inputs.items()}
    return json.loads(
        json.dumps(
            {"version": result_version(getattr(spec, "trainable", "all")), "spec": settings, "inputs": files},
            sort_keys=True,
        )
    )


def fingerprint(ident: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` of nested dicts."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting or input that differs (``spec.`` left off the keys),
    e.g. ``lr: 0.01 -> 0.001``; ``(none)`` for a key one side lacks."""
    a, b = flat(old), flat(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "(none)") != b.get(key, "(none)"):
            name = key.removeprefix("spec.")
            out.append(f"{name}: {a.get(key, '(none)')} -> {b.get(key, '(none)')}")
    return out
