"""Logical axis names on every variable, the default rules table, and building under a mesh."""

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from mim_jax import models
from mim_jax.models import LOGICAL_AXIS_RULES, rules_for_mesh


def _value(v):
    return v.get_value() if isinstance(v, nnx.Variable) else v


def abstract_model(**kwargs):
    kw = dict(image_size=32, patch_size=8, encoder_overrides=dict(depth=1), decoder_depth=1)
    kw.update(kwargs)
    return nnx.eval_shape(lambda: models.mae_model("vit_small", **kw))


def test_every_variable_has_logical_axes_in_the_rules():
    known = {name for name, _ in LOGICAL_AXIS_RULES}
    for kwargs in (
        dict(),
        dict(decoder="crossmae", weight_fm=True, use_input=True, self_attn=True),
        dict(num_frames=4, cls_token=False),
    ):
        state = nnx.state(abstract_model(**kwargs))
        specs = nnx.get_partition_spec(state)
        flat = dict(nnx.to_flat_state(state))
        for path, spec in nnx.to_flat_state(specs):
            shape = flat[path].shape
            spec = _value(spec)
            assert isinstance(spec, PartitionSpec), path
            assert len(spec) == len(shape), (path, spec, shape)
            names = {n for n in spec if n is not None}
            assert names <= known, (path, spec)
            # Every dimension larger than 1 is named, so a rules table can shard it.
            for n, d in zip(spec, shape, strict=True):
                assert n is not None or d == 1 or path[-1] == "weight", (path, spec)
            assert len(names) == len([n for n in spec if n is not None]), (path, spec)


def test_axis_names_of_key_parameters():
    state = nnx.state(abstract_model())
    specs = {".".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.get_partition_spec(state))}

    def spec(path):
        return tuple(_value(specs[path]))

    assert spec("encoder.patch_embed.kernel") == ("patch", "embed")
    assert spec("encoder.blocks.0.attn.qkv.kernel") == ("embed", "qkv", "heads", "kv")
    assert spec("encoder.blocks.0.attn.proj.kernel") == ("heads", "kv", "embed")
    assert spec("encoder.blocks.0.mlp.fc1.kernel") == ("embed", "mlp")
    assert spec("encoder.blocks.0.mlp.fc2.bias") == ("embed",)
    assert spec("encoder.cls_token") == (None, None, "embed")
    assert spec("encoder.pos_embed") == ("pos", "embed")
    assert spec("decoder.embed.kernel") == ("embed", "embed_out")
    assert spec("decoder.pred.kernel") == ("embed", "patch")


def test_rules_for_mesh_drops_missing_axes():
    rules = dict(rules_for_mesh(("data",)))
    assert rules["batch"] == "data" and rules["embed"] is None and rules["mlp"] is None
    rules = dict(rules_for_mesh(("data", "fsdp", "tensor")))
    assert rules["batch"] == ("data", "fsdp") and rules["embed"] == "fsdp"
    assert rules["heads"] == "tensor"


def test_builds_sharded_under_a_mesh():
    devices = np.array(jax.devices()[:1]).reshape(1, 1, 1)
    mesh = jax.sharding.Mesh(devices, ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        enc = models.vit_encoder(
            "vit_tiny", image_size=16, patch_size=8, width=16, depth=1, num_heads=2, mlp_dim=32
        )
    kernel = enc.blocks[0].mlp.fc1.kernel[...]
    assert isinstance(kernel.sharding, NamedSharding)
    assert kernel.sharding.spec == PartitionSpec("fsdp", "tensor")
    assert enc.pos_embed[...].sharding.spec == PartitionSpec(None, "fsdp")
