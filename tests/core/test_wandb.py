"""Weights & Biases logging, in offline mode: the run's scalars land in W&B's own run file."""

from __future__ import annotations

import json

import pytest

from mim_jax import configs
from mim_jax.core import wandb_log
from mim_jax.core.metrics import read_metrics
from mim_jax.train import run

wandb = pytest.importorskip("wandb")

TINY = [
    "mask=random", "model.patch_size=8", "model.encoder_overrides.depth=1",
    "model.decoder_depth=1", "batch_size=16", "total_steps=2", "log_every=1",
    "checkpoint_every=2", "recon_every=0",
]  # fmt: skip


def read_wandb_history(path) -> list[dict[str, float]]:
    """The history records of a ``run-<id>.wandb`` file (W&B's LevelDB-style log of protobuf
    ``Record`` messages: a 7-byte file header, then 32 KiB blocks of chunks with 7-byte
    headers: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                items = {i.nested_key[0] if i.nested_key else i.key: i for i in record.history.item}
                records.append({k: json.loads(v.value_json) for k, v in items.items()})
    return records


def test_offline_wandb_gets_the_same_scalars_as_metrics_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = configs.load("configs/demo.py", [*TINY, "wandb.enabled=True", "wandb.mode=offline"])
    assert run(config, str(tmp_path)).stopped == "finished"
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [f.name for f in files] == [f"run-{wandb_log.run_id(str(tmp_path))}.wandb"]
    history = read_wandb_history(files[0])
    ours = read_metrics(str(tmp_path))
    assert [h["_step"] for h in history] == [r["step"] for r in ours] == [1, 2]
    for h, r in zip(history, ours, strict=True):
        assert h["train/loss"] == pytest.approx(r["loss"])


def test_wandb_is_off_by_default_and_checks_its_mode(tmp_path):
    config = configs.load("configs/demo.py", TINY)
    assert config.wandb.enabled is False and wandb_log.start(config, str(tmp_path)) is None
    bad = configs.load("configs/demo.py", [*TINY, "wandb.enabled=True", "wandb.mode=sometimes"])
    with pytest.raises(ValueError, match=r"config\.wandb\.mode='sometimes'; valid: online"):
        wandb_log.start(bad, str(tmp_path))
