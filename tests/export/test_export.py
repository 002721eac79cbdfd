"""Export to timm / transformers and import of MAE's PyTorch layout, checked on real PyTorch models.

Every model here has random weights in all parameters (norm scales, biases, tokens included), so
a wrong transpose, split or name shows up as a numeric mismatch. Torch, timm and transformers run
offline; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mim_jax import masking, models
from mim_jax.export import (
    ClassifierHead,
    export_timm,
    export_transformers,
    load_mae_state_dict,
    mae_from_state_dict,
    mae_state_dict,
    timm_model_args,
)

try:  # the [torch-export] extra; the layout / error tests below run without it
    import safetensors
    import torch
except ImportError:
    torch = safetensors = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch and safetensors")

SMALL = dict(
    image_size=32,
    patch_size=8,
    encoder_overrides=dict(width=32, depth=2, num_heads=2, mlp_dim=64),
    decoder_width=16,
    decoder_depth=2,
    decoder_num_heads=2,
)
RTOL, ATOL = 1e-4, 1e-5

# Forward passes compiled whole (one XLA program each) rather than op by op.
encode = nnx.jit(lambda encoder, x: encoder.encode(x))
mae_forward = nnx.jit(lambda mae, x, masks: mae(x, masks))
call = nnx.jit(lambda module, x: module(x))


def randomized(module: nnx.Module, seed: int) -> nnx.Module:
    """``module`` with random values in every nnx.Param (LayerNorm scales around 1)."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        value = rng.normal(0.0, 0.3, var.shape)
        if path[-1] == "scale":
            value = 1.0 + 0.2 * value
        var.set_value(jnp.asarray(value, var.dtype))
    return module


@pytest.fixture(scope="module")
def model() -> models.MAE:
    return randomized(models.mae_model("vit_tiny", rngs=0, **SMALL), seed=1)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def masks(model):
    gen = masking.get("random")
    return gen(jax.random.key(3), batch_size=2, grid=model.config.tokens.grid, mask_ratio=0.75)


def nchw(x: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def layer_norm(x: np.ndarray, scale, bias) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6) * np.asarray(scale) + np.asarray(bias)


def close(actual, expected, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), RTOL, ATOL, err_msg=what)


# ------------------------------------------------------------------------------------------------
# timm
# ------------------------------------------------------------------------------------------------


@needs_torch
def test_timm_features_and_fine_tuned_logits_match(model, images, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import load_file

    x = jnp.asarray(images)
    tokens, hidden = nnx.jit(lambda enc, p: enc(p, return_hidden=True))(
        model.encoder, model.config.tokens.patchify(x)
    )
    tokens, last = np.asarray(tokens), np.asarray(hidden[-1])

    # Headless export, loaded the way a user would: create_model on the folder.
    export_timm(model, tmp_path / "headless")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'headless'}", pretrained=True).eval()
    with torch.no_grad():
        close(loaded.forward_features(nchw(images)), tokens, "timm forward_features")
        close(loaded(nchw(images)), tokens[:, 0], "timm pooled cls features")

    rng = np.random.default_rng(4)
    kernel, bias = rng.normal(size=(32, 5)), rng.normal(size=5)
    scale, shift = 1 + 0.1 * rng.normal(size=32), rng.normal(size=32)
    heads = {
        "avg+fc_norm": (
            ClassifierHead(kernel, bias, "avg", scale, shift),
            layer_norm(last[:, 1:].mean(1), scale, shift) @ kernel + bias,
        ),
        "avg": (ClassifierHead(kernel, bias, "avg"), tokens[:, 1:].mean(1) @ kernel + bias),
        "token": (ClassifierHead(kernel, bias, "token"), tokens[:, 0] @ kernel + bias),
    }
    for name, (head, expected) in heads.items():
        out = export_timm(model, tmp_path / name, head=head)
        vit = timm.models.vision_transformer.VisionTransformer(
            **timm_model_args(model.encoder, head)
        )
        vit.load_state_dict(load_file(out / "model.safetensors"), strict=True)
        with torch.no_grad():
            close(vit.eval()(nchw(images)), expected, f"timm logits, head {name}")


@needs_torch
def test_timm_takes_a_rectangular_bare_encoder(tmp_path):
    timm = pytest.importorskip("timm")
    encoder = randomized(
        models.vit_encoder(
            "vit_tiny", image_size=(16, 32), patch_size=8, width=32, depth=1, num_heads=2
        ),
        seed=5,
    )
    x = np.random.default_rng(6).normal(size=(2, 16, 32, 3)).astype(np.float32)
    export_timm(encoder, tmp_path)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    with torch.no_grad():
        close(loaded.forward_features(nchw(x)), encode(encoder, jnp.asarray(x)), "rectangular")


# ------------------------------------------------------------------------------------------------
# transformers
# ------------------------------------------------------------------------------------------------


@needs_torch
def test_transformers_vit_model_matches_the_encoder(model, images, tmp_path):
    transformers = pytest.importorskip("transformers")
    export_transformers(model, tmp_path, arch="vit")
    vit, info = transformers.ViTModel.from_pretrained(
        tmp_path, add_pooling_layer=False, output_loading_info=True
    )
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    with torch.no_grad():
        out = vit.eval()(pixel_values=nchw(images)).last_hidden_state
    close(out, encode(model.encoder, jnp.asarray(images)), "ViTModel last_hidden_state")


@needs_torch
def test_transformers_vit_mae_loss_and_predictions_match(model, images, masks, tmp_path):
    transformers = pytest.importorskip("transformers")
    export_transformers(model, tmp_path, arch="vit_mae")
    hf, info = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    assert hf.config.norm_pix_loss and hf.config.layer_norm_eps == 1e-6
    # argsort(restore) == concat(keep, masked): ViTMAE then keeps exactly mim_jax's patches.
    noise = torch.from_numpy(np.asarray(masks.restore, np.float32))
    with torch.no_grad():
        out = hf.eval()(pixel_values=nchw(images), noise=noise)
    loss, mine = mae_forward(model, jnp.asarray(images), masks)
    np.testing.assert_array_equal(out.mask.numpy(), np.asarray(masks.mask, np.float32))
    close(out.logits, mine.pred, "ViTMAE logits")
    close(out.loss, loss, "ViTMAE loss")


# ------------------------------------------------------------------------------------------------
# Import of facebookresearch/mae's layout
# ------------------------------------------------------------------------------------------------


def torch_mae(depth=2, decoder_depth=2, seed=7):
    """``models_mae.py``'s MaskedAutoencoderViT structure rebuilt from timm parts (reference)."""
    pytest.importorskip("timm")
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import Block

    nn = torch.nn
    norm = functools.partial(nn.LayerNorm, eps=1e-6)

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = PatchEmbed(32, 8, 3, 32)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 32))
            self.pos_embed = nn.Parameter(torch.zeros(1, 17, 32), requires_grad=False)
            self.blocks = nn.ModuleList(
                [Block(32, 2, 2.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)]
            )
            self.norm = norm(32)
            self.decoder_embed = nn.Linear(32, 16)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, 16))
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 17, 16), requires_grad=False)
            self.decoder_blocks = nn.ModuleList(
                [Block(16, 2, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(decoder_depth)]
            )
            self.decoder_norm = norm(16)
            self.decoder_pred = nn.Linear(16, 8 * 8 * 3)

        def encode(self, imgs, noise=None, keep=None):
            x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
            restore = None
            if noise is not None:
                shuffle = torch.argsort(noise, dim=1)
                restore = torch.argsort(shuffle, dim=1)
                ids = shuffle[:, :keep, None].expand(-1, -1, x.shape[-1])
                x = torch.gather(x, 1, ids)
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.norm(x), restore

        def forward(self, imgs, noise, keep):
            latent, restore = self.encode(imgs, noise, keep)
            x = self.decoder_embed(latent)
            b, n = restore.shape
            fill = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
            x_ = torch.cat([x[:, 1:], fill], dim=1)
            x_ = torch.gather(x_, 1, restore[:, :, None].expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
            for block in self.decoder_blocks:
                x = block(x)
            pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
            target = imgs.reshape(b, 3, 4, 8, 4, 8).permute(0, 2, 4, 3, 5, 1).reshape(b, 16, -1)
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
            mask = torch.ones(b, n)
            mask[:, :keep] = 0
            mask = torch.gather(mask, 1, restore)
            loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
            return loss, pred

    torch.manual_seed(seed)
    ref = Reference().eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(
                1 + 0.2 * torch.randn_like(p)
                if "norm" in name and p.ndim == 1 and name.endswith("weight")
                else 0.3 * torch.randn_like(p)
            )
        for p in (ref.pos_embed, ref.decoder_pos_embed):  # learned-looking tables are kept too
            p.copy_(torch.randn_like(p))
    return ref


@needs_torch
def test_import_of_mae_pth_matches_the_pytorch_model(images, masks, tmp_path):
    ref = torch_mae()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": ref.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=1.0)}, path)
    mae = mae_from_state_dict(path, num_heads=2, decoder_num_heads=2)
    assert mae.config.encoder == models.ViTConfig(32, 2, 2, 64)
    assert mae.config.decoder.stack == models.ViTConfig(16, 2, 2, 64)
    noise = torch.from_numpy(np.asarray(masks.restore, np.float32))
    with torch.no_grad():
        loss, pred = ref(nchw(images), noise, masks.keep.shape[1])
    mine_loss, mine = mae_forward(mae, jnp.asarray(images), masks)
    close(mine.pred, pred, "imported MAE predictions")
    close(mine_loss, loss, "imported MAE loss")

    # The released encoder-only checkpoints: no mask_token / decoder_* keys.
    encoder_only = {
        k: v
        for k, v in ref.state_dict().items()
        if k.startswith(("cls", "pos", "p", "blocks", "norm"))
    }
    encoder = mae_from_state_dict(encoder_only, encoder_only=True, num_heads=2)
    with torch.no_grad():
        features, _ = ref.encode(nchw(images))
    close(encode(encoder, jnp.asarray(images)), features, "imported encoder features")


def test_export_then_import_is_exact(model):
    state = mae_state_dict(model)
    back = mae_from_state_dict(state, num_heads=2, decoder_num_heads=2)
    mine = nnx.to_flat_state(nnx.state(model))
    theirs = dict(nnx.to_flat_state(nnx.state(back)))
    for path, var in mine:
        np.testing.assert_array_equal(theirs[path].get_value(), var.get_value(), err_msg=str(path))


# ------------------------------------------------------------------------------------------------
# Clear errors
# ------------------------------------------------------------------------------------------------


def test_import_errors_name_the_key_and_leave_the_model_unchanged(model):
    state = mae_state_dict(model)
    target = nnx.clone(model)
    before = np.asarray(target.encoder.blocks[0].attn.qkv.kernel[...])

    bad = dict(state, **{"blocks.1.mlp.fc1.weight": np.zeros((48, 32), np.float32)})
    with pytest.raises(
        ValueError, match=r"blocks\.1\.mlp\.fc1\.weight: shape \(48, 32\).*\(64, 32\)"
    ):
        load_mae_state_dict(target, bad)
    np.testing.assert_array_equal(target.encoder.blocks[0].attn.qkv.kernel[...], before)

    encoder_keys = {k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))}
    with pytest.raises(ValueError, match="holds no decoder"):
        load_mae_state_dict(target, encoder_keys)
    load_mae_state_dict(target, encoder_keys, missing_decoder="keep")

    with pytest.raises(ValueError, match=r"no place for head.weight"):
        load_mae_state_dict(target, dict(state, **{"head.weight": np.zeros((5, 32))}))
    deeper = dict(
        state, **{f"blocks.2.{k[9:]}": v for k, v in state.items() if k.startswith("blocks.1.")}
    )
    with pytest.raises(ValueError, match=r"3 blocks .*depth 2"):
        load_mae_state_dict(target, deeper)
    with pytest.raises(ValueError, match=r"lacks blocks.1.norm1.bias"):
        load_mae_state_dict(target, {k: v for k, v in state.items() if k != "blocks.1.norm1.bias"})
    with pytest.raises(ValueError, match="cannot infer the encoder head count"):
        mae_from_state_dict(state)


def abstract(build):
    """A model with shape-only leaves (no compute): enough for the export's model checks."""
    return nnx.eval_shape(build)


def test_unsupported_models_are_refused_with_what_is_supported(tmp_path):
    tiny = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
    video = abstract(
        lambda: models.vit_encoder("vit_tiny", image_size=16, patch_size=8, num_frames=4, **tiny)
    )
    with pytest.raises(ValueError, match=r"image models only.*3-D token grid.*supported: image"):
        export_timm(video, tmp_path)
    no_cls = abstract(
        lambda: models.vit_encoder("vit_tiny", image_size=16, patch_size=8, cls_token=False, **tiny)
    )
    with pytest.raises(ValueError, match="needs a cls token"):
        export_transformers(no_cls, tmp_path, arch="vit")
    spectrogram = abstract(
        lambda: models.vit_encoder("vit_tiny", image_size=(32, 16), patch_size=8, **tiny)
    )
    with pytest.raises(ValueError, match=r"square images and patches.*timm export takes"):
        export_transformers(spectrogram, tmp_path, arch="vit")
    square = abstract(lambda: models.vit_encoder("vit_tiny", image_size=16, patch_size=8, **tiny))
    with pytest.raises(ValueError, match="needs the MAE decoder, but only an encoder"):
        export_transformers(square, tmp_path, arch="vit_mae")
    cross = abstract(
        lambda: models.mae_model(
            "vit_tiny",
            image_size=16,
            patch_size=8,
            decoder="crossmae",
            decoder_width=16,
            decoder_depth=1,
            decoder_num_heads=2,
            encoder_overrides=tiny,
        )
    )
    with pytest.raises(ValueError, match=r"CrossMAEDecoder.*Export its encoder"):
        export_transformers(cross, tmp_path, arch="vit_mae")
    with pytest.raises(ValueError, match="arch must be one of"):
        export_transformers(cross, tmp_path, arch="vitmae")
    assert not any(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------------------------------------
# End to end: a training run's workdir and a saved fine-tuned classifier through the CLI
# ------------------------------------------------------------------------------------------------

RUN = [
    "mask=random",
    "model.patch_size=8",
    "model.encoder_overrides.width=32",
    "model.encoder_overrides.depth=2",
    "model.encoder_overrides.num_heads=2",
    "model.encoder_overrides.mlp_dim=64",
    "model.decoder_width=16",
    "model.decoder_depth=2",
    "model.decoder_num_heads=2",
    "model.norm_pix_loss=True",
    "batch_size=16",
    "total_steps=2",
    "log_every=1",
    "checkpoint_every=1",
    "recon_every=0",
]


@pytest.mark.slow
@needs_torch
def test_cli_init_run_then_exports_of_the_run_and_a_fine_tuned_classifier(
    model, images, masks, tmp_path, capsys
):
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    from mim_jax import configs
    from mim_jax.core.state import TrainState
    from mim_jax.core.workdir import load_pretrained
    from mim_jax.evaluate.classifier import classifier_from_pretrained, save_classifier
    from mim_jax.export.__main__ import main
    from mim_jax.train.pretrain import run

    # Start a run from MAE-layout weights in a .pth (the fixture model's), train one step.
    weights = tmp_path / "weights.pth"
    torch.save({"model": {k: torch.tensor(v) for k, v in mae_state_dict(model).items()}}, weights)
    workdir = str(tmp_path / "run")
    overrides = [f"--config.{r}" for r in RUN]
    argv = ["init-run", "--weights", str(weights), "--config", "configs/demo.py", "--workdir"]
    assert main([*argv, workdir, *overrides]) == 0
    assert run(configs.load("configs/demo.py", RUN), workdir, max_steps=1).step == 1
    pretrained = load_pretrained(workdir)
    # The first step's warmup learning rate is 0, so the run still holds the imported weights.
    theirs = dict(nnx.to_flat_state(nnx.state(pretrained.model)))
    for path, var in nnx.to_flat_state(nnx.state(model)):
        np.testing.assert_allclose(theirs[path].get_value(), var.get_value(), 0, 1e-6, str(path))
    with pytest.raises(SystemExit):  # the workdir has checkpoints now
        main([*argv, workdir, *overrides])
    assert "already holds checkpoints [0, 1]" in capsys.readouterr().err
    x = jnp.asarray(images)

    assert main(["timm", "--checkpoint", workdir, "--out", str(tmp_path / "timm")]) == 0
    assert "local-dir:" in capsys.readouterr().out
    vit = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        close(vit.forward_features(nchw(images)), encode(pretrained.encoder, x), "CLI timm")

    out = str(tmp_path / "hf")
    assert main(["transformers", "--checkpoint", workdir, "--out", out, "--step", "1"]) == 0
    hf = transformers.ViTMAEForPreTraining.from_pretrained(out).eval()
    assert hf.config.mask_ratio == 0.75
    noise = torch.from_numpy(np.asarray(masks.restore, np.float32))
    with torch.no_grad():
        result = hf(pixel_values=nchw(images), noise=noise)
    loss, _ = mae_forward(pretrained.model, x, masks)
    close(result.loss, loss, "CLI ViTMAE loss")

    # A fine-tuned classifier (global pool + fc_norm), saved by mim_jax.evaluate's own writer.
    classifier = classifier_from_pretrained(pretrained, 5, global_pool=True)
    randomized(classifier, seed=8)
    _, params, constants = nnx.split(classifier, nnx.Param, ...)
    state = TrainState(step=jnp.asarray(3), params=params, constants=constants, opt_state=None)
    saved = str(tmp_path / "finetuned")
    save_classifier(saved, state, pretrained.config, {"global_pool": True}, 5)
    assert main(["timm", "--checkpoint", saved, "--out", str(tmp_path / "cls")]) == 0
    vit = timm.create_model(f"local-dir:{tmp_path / 'cls'}", pretrained=True).eval()
    with torch.no_grad():
        close(vit(nchw(images)), call(classifier, x), "CLI timm fine-tuned logits")

    for argv, message in (
        (["transformers", "--checkpoint", saved], "no place for a fine-tuned classifier"),
        (["timm", "--checkpoint", str(tmp_path / "nowhere")], "does not exist"),
        (["timm", "--checkpoint", workdir, "--step", "7"], r"step 7 is not in .*\[0, 1\]"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "x")])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err), message


def test_timm_config_names_the_model_it_holds():
    from mim_jax.export.to_timm import timm_config

    small = models.vit_encoder(
        "vit_tiny", image_size=32, patch_size=4, width=64, depth=4, num_heads=4, mlp_dim=256
    )
    config = timm_config(small)
    assert config["architecture"] == "vit_tiny_patch16_224"  # the nearest width's factory
    assert config["model_args"]["embed_dim"] == 64 and config["model_args"]["depth"] == 4
    assert config["model_description"].startswith("ViT: width 64, depth 4, 4 heads, MLP 256")
    assert "4x4 patches on 32x32 inputs" in config["model_description"]
    base = timm_config(models.vit_encoder("vit_base", depth=1))
    assert base["architecture"] == "vit_base_patch16_224"
    assert timm_config(models.vit_encoder("vit_base"))["architecture"] == "vit_base_patch16_224"
