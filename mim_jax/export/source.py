"""What an export reads: a run's workdir, a :class:`Pretrained`, an MAE or a bare encoder.

:func:`resolve` turns any of them into an :class:`ExportSource` (encoder, optional decoder and
the training facts the transformers config records); the ``check_*`` helpers raise a clear
``ValueError`` for models a target layout cannot hold.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.workdir import Pretrained, checkpoint_directory, load_pretrained
from mim_jax.evaluate.classifier import is_finetuned
from mim_jax.export.head import ClassifierHead, load_finetuned
from mim_jax.models.crossmae import CrossMAEDecoder
from mim_jax.models.mae import MAE, MAEDecoder
from mim_jax.models.vit import ViTEncoder


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """An encoder (and decoder) to export, with the facts a target config needs.

    Attributes:
      encoder: the ViT encoder.
      decoder: the MAE or CrossMAE decoder, or None (a bare encoder was given).
      norm_pix_loss: whether the model was trained on per-patch normalised pixels.
      mask_ratio: the run's mask ratio, when known (a workdir / Pretrained); else None.
      head: the classifier head of a fine-tuned checkpoint, else None.
    """

    encoder: ViTEncoder
    decoder: MAEDecoder | CrossMAEDecoder | None
    norm_pix_loss: bool = True
    mask_ratio: float | None = None
    head: ClassifierHead | None = None


def _stored_config(path: str | os.PathLike, step: int | None) -> tuple[str, dict | None]:
    """The checkpoint folder under ``path`` and the config stored with ``step`` (None if unread)."""
    directory = checkpoint_directory(path)
    store = CheckpointStore(directory, async_save=False)
    try:
        return directory, store.read_config(step)
    except Exception:  # no / damaged / unknown step: the loader reports it properly
        return directory, None
    finally:
        store.close()


def resolve(source: Any, step: int | None = None) -> ExportSource:
    """An :class:`ExportSource` from a checkpoint folder, ``Pretrained``, ``MAE`` or ``ViTEncoder``.

    Args:
      source: a run's workdir (str / PathLike, restored with
        :func:`mim_jax.core.workdir.load_pretrained`), the folder a fine-tuning run saved
        its classifier to (:func:`mim_jax.evaluate.classifier.load_finetuned`: encoder + head), a
        ``Pretrained``, an ``MAE`` or a ``ViTEncoder``.
      step: checkpoint step for a workdir (None = latest); must be None otherwise.

    Raises:
      TypeError: for any other kind of object.
      ValueError: ``step`` given with an in-memory model.
    """
    if isinstance(source, str | os.PathLike):
        directory, config = _stored_config(source, step)
        if is_finetuned(config):
            encoder, head = load_finetuned(directory, step)
            return ExportSource(encoder=encoder, decoder=None, head=head)
        source = load_pretrained(source, step)
    elif step is not None:
        raise ValueError("step selects a checkpoint in a workdir; pass a path to use it.")
    if isinstance(source, Pretrained):
        return ExportSource(
            encoder=source.model.encoder,
            decoder=source.model.decoder,
            norm_pix_loss=bool(source.model.config.norm_pix_loss),
            mask_ratio=float(source.config.mask_ratio),
        )
    if isinstance(source, MAE):
        return ExportSource(
            encoder=source.encoder,
            decoder=source.decoder,
            norm_pix_loss=bool(source.config.norm_pix_loss),
        )
    if isinstance(source, ViTEncoder):
        return ExportSource(encoder=source, decoder=None)
    raise TypeError(
        f"cannot export a {type(source).__name__}; pass a run's (or fine-tuning's) checkpoint "
        "folder, a Pretrained "
        "(mim_jax.core.workdir.load_pretrained), an MAE or a ViTEncoder."
    )


def check_image_encoder(encoder: ViTEncoder, target: str, *, square: bool) -> None:
    """Raises ValueError unless ``encoder`` is an image ViT with a cls token (square if asked).

    Args:
      encoder: the encoder to export.
      target: the layout's name, for the message (e.g. "timm VisionTransformer").
      square: require a square token grid and square patches.
    """
    tokens = encoder.tokens
    supported = "supported: image encoders (2-D token grid) with a cls token" + (
        ", square images and square patches" if square else ""
    )
    if len(tokens.grid) != 2:
        raise ValueError(
            f"{target} holds image models only; this encoder has a {len(tokens.grid)}-D token "
            f"grid {tokens.grid} (video). {supported}."
        )
    if not encoder.use_cls:
        raise ValueError(f"{target} needs a cls token; this encoder has none. {supported}.")
    if square and (tokens.grid[0] != tokens.grid[1] or tokens.patch[0] != tokens.patch[1]):
        raise ValueError(
            f"{target} needs square images and patches; this encoder has a {tokens.grid} grid of "
            f"{tokens.patch} patches (e.g. a spectrogram). {supported} (the timm export takes "
            "rectangular ones)."
        )


def check_mae_decoder(source: ExportSource, target: str) -> MAEDecoder:
    """The source's MAE decoder; ValueError for a bare encoder or a CrossMAE decoder."""
    if source.decoder is None:
        raise ValueError(
            f"{target} needs the MAE decoder, but only an encoder was given; pass the MAE model, "
            "its Pretrained or the run's workdir, or export the encoder alone (ViTModel / timm)."
        )
    if not isinstance(source.decoder, MAEDecoder):
        raise ValueError(
            f"{target} holds MAE's decoder only; this model has a {type(source.decoder).__name__} "
            "(CrossMAE cross-attention). Export its encoder (ViTModel / timm) instead."
        )
    return source.decoder
