"""Package metadata for mim_jax: masked image modelling pretraining in JAX/Flax."""

from pathlib import Path

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.6,<0.11",
    "flax>=0.11,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "ml-collections>=1.0,<2",
    "chex>=0.1.89,<0.2",
    "grain>=0.2.10,<0.3",
    "tensorflow-datasets>=4.9.8,<5",
    "numpy>=1.26,<3",
    "scipy>=1.11,<2",
    "matplotlib>=3.8,<4",
    "tensorboardX>=2.6,<3",
    "fsspec>=2023.1",  # mim_jax.core.paths: workdirs as local paths or URLs
    "scikit-learn>=1.4",
    "Pillow>=10",
]

EXTRAS = {
    "dev": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "pytest-timeout>=2.3,<3",
        "hypothesis>=6.100,<7",
        "ruff>=0.17,<0.18",
        "nbclient>=0.10,<1",
        "nbformat>=5.10,<6",
        "ipykernel>=6.29,<8",
        "wandb>=0.19,<1",  # tests/core/test_wandb.py runs W&B offline
        "gcsfs>=2024.2",  # tests/train/test_gcs_workdir.py: a gs:// workdir on a local emulator
        "gcp-storage-emulator>=2024.1",
        "av>=14,<19",
        "soundfile>=0.12,<0.15",
        # the Kaldi-compatible reference the fbank test compares against
        "kaldi-native-fbank>=1.20,<2",
    ],
    # gs:// workdirs (Orbax reaches Cloud Storage through TensorStore; the rest through gcsfs).
    "gcs": ["gcsfs>=2024.2"],
    # Optional logging: Weights & Biases (config.wandb.enabled=True), and the TensorBoard viewer
    # for WORKDIR/tensorboard/ (the loop writes events with tensorboardX either way).
    "wandb": ["wandb>=0.19,<1"],
    "tensorboard": ["tensorboard>=2.16,<3"],
    # video_folder / audio_folder sources (VideoMAE / AudioMAE inputs from users' files)
    "video": ["av>=14,<19"],
    "audio": ["soundfile>=0.12,<0.15"],
    "tfds": ["tensorflow-cpu>=2.16"],
    # safetensors writes the exports; torch reads .pth files; timm / transformers load the results
    # (timm >= 1.0.16 for create_model("local-dir:...")). Tested: torch 2.13, timm 1.0.31,
    # transformers 5.24, safetensors 0.8.
    "torch-export": [
        "torch>=2.4,<3",
        "safetensors>=0.4,<1",
        "timm>=1.0.16,<2",
        "transformers>=4.44,<6",
    ],
}

setup(
    name="mim_jax",
    version="0.1.0",
    description="Masked image modelling (MAE family) pretraining in JAX/Flax with on-device masks.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mim_jax", "mim_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
