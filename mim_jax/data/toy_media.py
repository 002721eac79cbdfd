"""Small real media files for tests, demos and notebooks: moving squares (PyAV), tones (soundfile).

``write_motion_videos(root, ...)`` writes ``root/<direction>/<i>.<ext>`` clips of a bright square
moving left, right, up or down, 2-3 pixels a frame, over a dark noisy background (the class is the
motion direction, which a single frame cannot tell; start, speed and colour are random).
``write_timbre_audio(root, ...)`` writes ``root/<timbre>/<i>.<ext>`` notes of one of four harmonic
profiles (sine, all harmonics, odd harmonics, octave partials) at a random pitch over two
octaves, so the class is the pattern of partials, not where they lie. ``write_pitch_audio(root,
...)`` writes ``root/<pitch>/<i>.<ext>`` tones whose fundamental is one of a few pitch classes,
with harmonics, random phase, level and vibrato, and some as upward or downward chirps around the
pitch. Audio files use sample rates other than 16 kHz so the resampler is exercised.

The demo configs (``configs/video_demo.py``, ``configs/audio_demo.py``) pretrain on the motion
clips and the timbre notes; a kNN on their frozen encoders beats the same encoders at random
initialisation (``tests/evaluate/test_evaluate_media.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DIRECTIONS = ("down", "left", "right", "up")
_STEP = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> str:
    """Writes ``uint8[T, H, W, 3]`` frames (even H and W) with PyAV; the codec follows the suffix
    (mp4/mkv: H.264, webm: VP9, avi: MPEG-4 part 2). Returns the path."""
    import av

    path = str(path)
    codec = _CODECS[Path(path).suffix.lower()]
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def motion_frames(
    direction: str,
    rng: np.random.Generator,
    num_frames: int = 24,
    size: int = 32,
    square: int = 10,
    speeds: tuple[int, int] = (2, 3),
    noise: int = 10,
) -> np.ndarray:
    """``uint8[num_frames, size, size, 3]``: a ``square``-pixel square moving in ``direction``
    (wrapping around) at a speed drawn from ``speeds`` (pixels per frame, inclusive), random
    start and colour, over uniform noise in ``[0, noise)``."""
    dy, dx = _STEP[direction]
    speed = int(rng.integers(speeds[0], speeds[1] + 1))
    y, x = rng.integers(0, size, 2)
    colour = rng.integers(120, 256, 3)
    out = rng.integers(0, noise, (num_frames, size, size, 3)).astype(np.uint8)
    for t in range(num_frames):
        ys = (y + dy * speed * t + np.arange(square)) % size
        xs = (x + dx * speed * t + np.arange(square)) % size
        out[t][np.ix_(ys, xs, np.arange(3))] = colour
    return out


def write_motion_videos(
    root: str | os.PathLike,
    per_class: int,
    *,
    ext: str = ".mp4",
    num_frames: int = 24,
    size: int = 32,
    seed: int = 0,
) -> list[str]:
    """Writes ``per_class`` clips per direction under ``root/<direction>/``; returns the paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for direction in DIRECTIONS:
        os.makedirs(os.path.join(root, direction), exist_ok=True)
        for i in range(per_class):
            frames = motion_frames(direction, rng, num_frames, size)
            paths.append(write_video(os.path.join(root, direction, f"{i:03d}{ext}"), frames))
    return paths


PITCHES_HZ = (220.0, 330.0, 495.0, 742.5)


def tone(
    pitch_hz: float,
    rng: np.random.Generator,
    seconds: float = 0.7,
    sample_rate: int = 22050,
    chirp: float = 0.0,
) -> np.ndarray:
    """``float32[seconds * sample_rate]`` in [-1, 1]: a tone (fundamental + 2 harmonics) at
    ``pitch_hz`` with random phase, level and slight vibrato; ``chirp`` sweeps the pitch by that
    many octaves over the clip (0 = steady)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sweep = 2.0 ** (chirp * (t / seconds - 0.5))
    vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    phase = 2 * np.pi * np.cumsum(pitch_hz * sweep * vibrato) / sample_rate
    wave = sum((0.6 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))
    wave = wave * rng.uniform(0.3, 0.9) + rng.normal(0, 0.01, t.shape)
    return np.clip(wave, -1, 1).astype(np.float32)


def write_pitch_audio(
    root: str | os.PathLike,
    per_class: int,
    *,
    ext: str = ".wav",
    seconds: float = 0.7,
    sample_rates: tuple[int, ...] = (22050, 16000, 44100, 8000),
    seed: int = 0,
) -> list[str]:
    """Writes ``per_class`` files per pitch class under ``root/<pitch>hz/``: steady tones and
    chirps (every third file), sample rates cycling through ``sample_rates``."""
    import soundfile

    rng = np.random.default_rng(seed)
    paths = []
    for pitch in PITCHES_HZ:
        folder = os.path.join(root, f"{int(pitch):04d}hz")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            rate = sample_rates[i % len(sample_rates)]
            chirp = (0.5 if i % 2 else -0.5) if i % 3 == 2 else 0.0
            path = os.path.join(folder, f"{i:03d}{ext}")
            soundfile.write(path, tone(pitch, rng, seconds, rate, chirp), rate)
            paths.append(path)
    return paths


#: Harmonic profiles: (partial / fundamental, amplitude) pairs.
TIMBRES: dict[str, tuple[tuple[float, float], ...]] = {
    "sine": ((1, 1.0),),
    "all": tuple((k, 1 / k) for k in range(1, 9)),
    "odd": tuple((k, 1 / k) for k in range(1, 9, 2)),
    "octaves": ((1, 1.0), (2, 0.8), (4, 0.6), (8, 0.4)),
}


def note(
    timbre: str,
    rng: np.random.Generator,
    seconds: float = 0.7,
    sample_rate: int = 16000,
    pitch_range: tuple[float, float] = (150.0, 600.0),
) -> np.ndarray:
    """``float32[seconds * sample_rate]`` in [-1, 1]: the partials of ``TIMBRES[timbre]`` (those
    below Nyquist) on a fundamental drawn log-uniformly from ``pitch_range``, with random phases,
    slight vibrato, peak level in [0.3, 0.9] and a little white noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = np.exp(rng.uniform(np.log(pitch_range[0]), np.log(pitch_range[1])))
    vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    phase = 2 * np.pi * np.cumsum(pitch * vibrato) / sample_rate
    wave = sum(
        a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        for k, a in TIMBRES[timbre]
        if k * pitch < sample_rate / 2
    )
    wave = wave / np.abs(wave).max() * rng.uniform(0.3, 0.9) + rng.normal(0, 0.01, t.shape)
    return np.clip(wave, -1, 1).astype(np.float32)


def write_timbre_audio(
    root: str | os.PathLike,
    per_class: int,
    *,
    ext: str = ".wav",
    seconds: float = 0.7,
    sample_rates: tuple[int, ...] = (22050, 16000, 44100),
    seed: int = 0,
) -> list[str]:
    """Writes ``per_class`` notes per timbre under ``root/<timbre>/`` (:data:`TIMBRES`), sample
    rates cycling through ``sample_rates``; returns the paths."""
    import soundfile

    rng = np.random.default_rng(seed)
    paths = []
    for timbre in TIMBRES:
        os.makedirs(os.path.join(root, timbre), exist_ok=True)
        for i in range(per_class):
            rate = sample_rates[i % len(sample_rates)]
            path = os.path.join(root, timbre, f"{i:03d}{ext}")
            soundfile.write(path, note(timbre, rng, seconds, rate), rate)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m mim_jax.data.toy_media video|audio DIR [--per-class N] [--val-per-class M]
    [--seed S]``: writes the motion clips (video) or the timbre notes (audio) to ``DIR/train``
    (N files per class, default 40, seed S) and ``DIR/val`` (M per class, default N / 4, seed
    S + 1)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kind", choices=("video", "audio"))
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--val-per-class", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write = write_motion_videos if args.kind == "video" else write_timbre_audio
    val = args.per_class // 4 if args.val_per_class is None else args.val_per_class
    for split, count, seed in (("train", args.per_class, args.seed), ("val", val, args.seed + 1)):
        paths = write(os.path.join(args.out, split), max(count, 1), seed=seed)
        print(f"{len(paths)} {args.kind} files in {os.path.join(args.out, split)}")


if __name__ == "__main__":
    main()
