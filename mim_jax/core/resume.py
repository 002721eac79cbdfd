"""Resuming with another config: which fields differ from the checkpoint's, and is that safe.

A rerun on a workdir resumes its checkpoint; the command's config should be the one the checkpoint
was trained with. :func:`check_resume` compares them field by field:

* identical: resume silently;
* only fields in :data:`SAFE_TO_CHANGE` or under :data:`SAFE_PREFIXES` differ (run length,
  logging and checkpoint intervals, W&B, the mesh, the loader's memory budget): resume, with
  one line naming each change;
* anything else (learning rate, mask, ratio, batch size, weight decay, model, data...): stop with
  :class:`~mim_jax.core.errors.ConfigChanged` listing every differing field, unless the caller
  allows it on purpose (``--allow-config-change``), which resumes with the new values, named.

Fields one side does not have (a config written by an older version) are not compared.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from mim_jax.core.errors import ConfigChanged

# Changing these on resume keeps the trained state meaningful. total_steps/epochs recompute the
# learning-rate schedule for the new length from the current step on (extending a finished run).
SAFE_TO_CHANGE = frozenset(
    {
        "total_steps",
        "epochs",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "recon_every",
        "eval_every",
        "mesh.data",
        "mesh.fsdp",
        "mesh.tensor",
        "data.memory_mb",
        "log_all_processes",
    }
)
SAFE_PREFIXES = ("wandb.",)  # where the same scalars are also logged
ALLOW_FLAG = "--allow-config-change"


@dataclasses.dataclass(frozen=True)
class Difference:
    """One field whose value differs between the stored and the current config."""

    field: str
    stored: Any
    current: Any

    @property
    def safe(self) -> bool:
        return self.field in SAFE_TO_CHANGE or self.field.startswith(SAFE_PREFIXES)

    def __str__(self) -> str:
        return f"{self.field} {self.stored!r} -> {self.current!r}"


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _plain(config: Any) -> dict[str, Any]:
    """A JSON round trip: tuples become lists, as in a stored config."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return json.loads(json.dumps(config, default=str))


def differences(stored: Mapping[str, Any], current: Any) -> list[Difference]:
    """Fields present in both configs whose values differ, sorted by name.

    Args:
      stored: the config JSON saved with a checkpoint.
      current: the config of this run (a ConfigDict or a dict).
    """
    old, new = _flat(_plain(stored)), _flat(_plain(current))
    return [
        Difference(name, old[name], new[name])
        for name in sorted(set(old) & set(new))
        if old[name] != new[name]
    ]


def check_resume(
    stored: Mapping[str, Any] | None, current: Any, *, step: int, allow: bool = False
) -> str | None:
    """Decides whether a run with ``current`` may resume a checkpoint saved with ``stored``.

    Returns:
      None when nothing differs, else a line naming what changed (to print).

    Raises:
      ConfigChanged: a field outside :data:`SAFE_TO_CHANGE` differs and ``allow`` is False; the
        message lists every differing field and names :data:`ALLOW_FLAG`.
    """
    if not stored:
        return None
    found = differences(stored, current)
    if not found:
        return None
    unsafe = [d for d in found if not d.safe]
    listed = "; ".join(map(str, found))
    if unsafe and not allow:
        raise ConfigChanged(
            f"the config differs from the one checkpoint step {step} was trained with, in "
            f"{len(unsafe)} field(s) not safe to change on resume: "
            + "; ".join(map(str, unsafe))
            + (
                f" (also {'; '.join(str(d) for d in found if d.safe)})"
                if len(unsafe) < len(found)
                else ""
            )
            + f". Rerun with the stored values, use a new --workdir, or pass {ALLOW_FLAG} to "
            "resume with the new ones on purpose."
        )
    if unsafe:
        return f"resuming step {step} with a changed config ({ALLOW_FLAG}): {listed}"
    return f"resuming step {step} with changed settings: {listed}"
