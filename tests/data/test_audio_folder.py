"""audio_folder source: Kaldi-compatible fbank (against kaldi-native-fbank), resampling, AudioMAE
padding/normalisation, labels, skips and grain state."""

from __future__ import annotations

import numpy as np
import pytest

from mim_jax import data
from mim_jax.data import audio_folder, fbank, toy_media
from mim_jax.data.audio_folder import AudioFolderSource
from mim_jax.data.toy_media import PITCHES_HZ, tone, write_pitch_audio

soundfile = pytest.importorskip("soundfile")


def signals(rate: int = 16_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * rate)) / rate
    return {
        "tone": tone(440.0, rng, 1.3, rate),
        "chirp": tone(300.0, rng, 1.3, rate, chirp=2.0),
        "noise": (0.1 * rng.normal(size=t.shape)).astype(np.float32),
        "click+dc": (0.2 + (np.arange(len(t)) % 997 == 0)).astype(np.float32),
    }


def kaldi_reference(wave: np.ndarray, bins: int, frame_ms: float, rate: int = 16_000):
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.frame_opts.frame_length_ms = frame_ms
    opts.mel_opts.num_bins = bins
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(rate, wave.tolist())
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


# Kaldi refuses 128 bins with 25 ms frames (one filter falls between FFT bins, see below), so the
# 128-bin filters are compared with 50 ms frames and the 25 ms path with fewer bins.
@pytest.mark.parametrize(("bins", "frame_ms"), [(23, 25.0), (80, 25.0), (128, 50.0)])
def test_fbank_matches_kaldi_native_fbank(bins, frame_ms):
    for name, wave in signals().items():
        ours = fbank.fbank(wave, 16_000, bins, frame_length_ms=frame_ms)
        ref = kaldi_reference(wave, bins, frame_ms)
        assert ours.shape == ref.shape, name
        np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-3, err_msg=name)


def test_audiomae_geometry_and_the_empty_128_bin_filter():
    wave = signals()["tone"][:16_000]
    feats = fbank.fbank(wave)  # 25 ms / 10 ms at 16 kHz, 128 bins
    assert feats.shape == (1 + (16_000 - 400) // 160, 128) and feats.dtype == np.float32
    # At 128 bins and a 512-point FFT, filter 3 (about 45-80 Hz) holds no FFT bin: torchaudio's
    # Kaldi fbank (which AudioMAE calls) then logs the floor, as this implementation does.
    banks = fbank.mel_banks(128, 512, 16_000)
    assert banks.shape == (257, 128)
    assert np.flatnonzero(banks.sum(0) == 0).tolist() == [3]
    np.testing.assert_allclose(feats[:, 3], np.log(np.finfo(np.float32).eps))
    # The pitch shows: the strongest filter of a sine rises with its frequency.
    t = np.arange(8000) / 16_000
    peaks = [int(fbank.fbank(np.sin(2 * np.pi * p * t)).mean(0).argmax()) for p in PITCHES_HZ]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks)


def test_resampling_keeps_the_pitch():
    rng = np.random.default_rng(0)
    for rate in (8_000, 22_050, 44_100, 48_000):
        wave = tone(495.0, rng, 1.0, rate)
        out = fbank.resample(wave, rate)
        assert out.dtype == np.float32 and abs(len(out) - 16_000) <= 1
        spectrum = np.abs(np.fft.rfft(out))
        assert abs(np.argmax(spectrum) * 16_000 / len(out) - 495.0) < 8
    with pytest.raises(ValueError, match="sample rate"):
        fbank.resample(np.zeros(10), 0)


def test_source_pads_cuts_normalises_and_labels(tmp_path):
    paths = write_pitch_audio(tmp_path / "train", per_class=2, seconds=0.5)
    long_wave = tone(220.0, np.random.default_rng(0), 12.0, 16_000)
    soundfile.write(tmp_path / "train" / "0220hz" / "long.flac", long_wave, 16_000)
    stereo = np.stack([tone(330.0, np.random.default_rng(0), 0.5, 32_000), np.zeros(16_000)], 1)
    soundfile.write(tmp_path / "train" / "0330hz" / "stereo.wav", stereo, 32_000)
    source = AudioFolderSource(tmp_path / "train")
    assert len(source) == len(paths) + 2 and source.num_classes == 4
    assert source.class_names == ["0220hz", "0330hz", "0495hz", "0742hz"]
    long_i = source.paths.index(str(tmp_path / "train" / "0220hz" / "long.flac"))
    short = source[0]
    assert short["image"].shape == (1024, 128, 1) and short["image"].dtype == np.float32
    assert short["label"] == 0 and source[long_i]["label"] == 0
    # 0.5 s -> 48 frames of features, then zeros normalised as (0 - mean) / (2 std).
    pad = (0 - fbank.AUDIOSET_MEAN) / (2 * fbank.AUDIOSET_STD)
    np.testing.assert_allclose(short["image"][48:], pad, rtol=1e-6)
    assert not np.allclose(short["image"][47], pad)
    # 12 s is cut to its first 1024 frames, exactly the fbank of the start.
    stored, _ = soundfile.read(tmp_path / "train" / "0220hz" / "long.flac", dtype="float32")
    wave = stored - stored.mean()  # FLAC stores 16-bit samples
    expected = (fbank.fbank(wave)[:1024] - fbank.AUDIOSET_MEAN) / (2 * fbank.AUDIOSET_STD)
    np.testing.assert_allclose(source[long_i]["image"][..., 0], expected, atol=1e-5)
    # Multi-channel files use the first channel (resampled from 32 kHz), as torchaudio's fbank.
    stereo_i = source.paths.index(str(tmp_path / "train" / "0330hz" / "stereo.wav"))
    stored, _ = soundfile.read(tmp_path / "train" / "0330hz" / "stereo.wav", dtype="float32")
    mono = fbank.audiomae_input(stored[:, 0], 32_000)
    np.testing.assert_allclose(source[stereo_i]["image"], mono, atol=1e-5)
    small = AudioFolderSource(tmp_path / "train", target_length=64, num_mel_bins=32, mean=0, std=1)
    assert small[0]["image"].shape == (64, 32, 1)
    with pytest.raises(ValueError, match="std"):
        AudioFolderSource(tmp_path / "train", std=0)


def test_bad_audio_files_are_skipped_counted_and_reported(tmp_path):
    write_pitch_audio(tmp_path, per_class=1, seconds=0.3)
    (tmp_path / "0220hz" / "empty.wav").write_bytes(b"")
    (tmp_path / "0330hz" / "garbage.flac").write_bytes(b"not audio at all" * 20)
    soundfile.write(tmp_path / "0495hz" / "silent.wav", np.zeros((0,), np.float32), 16_000)
    source = AudioFolderSource(tmp_path, target_length=32, num_mel_bins=16)
    records = [source[i] for i in range(len(source))]
    assert all(r["image"].shape == (32, 16, 1) for r in records)
    assert source.num_skipped == 3
    assert {p.rsplit("/", 1)[1] for p in source.skipped} == {
        "empty.wav",
        "garbage.flac",
        "silent.wav",
    }
    assert any("no audio samples" in e for e in source.skipped.values())
    checked = AudioFolderSource(tmp_path, target_length=32, num_mel_bins=16, validate=True)
    assert len(checked) == 4 and checked.num_skipped == 3


def test_list_file_and_pipeline_resume(tmp_path):
    paths = write_pitch_audio(tmp_path / "clips", per_class=3, seconds=0.3)
    lines = ["path\tlabel"] + [f"{p}\t{i % 3}" for i, p in enumerate(paths)]  # absolute paths
    (tmp_path / "train.tsv").write_text("\n".join(lines))
    source = AudioFolderSource(tmp_path / "train.tsv", target_length=32, num_mel_bins=16)
    assert source.labels.tolist() == [i % 3 for i in range(12)]
    it = data.make_pipeline(source, batch_size=4, image_size=32, seed=0)
    first = next(it)
    assert first["image"].shape == (4, 32, 16, 1) and first["label"].dtype == np.int32
    state = it.get_state()
    rest = [next(it) for _ in range(4)]
    resumed = data.make_pipeline(source, batch_size=4, image_size=32, seed=0)
    resumed.set_state(state)
    for a in rest:
        np.testing.assert_array_equal(a["image"], next(resumed)["image"])
    index = {source.paths[i]: source[i]["image"] for i in range(len(source))}
    for image in first["image"]:
        assert any(np.array_equal(image, v) for v in index.values())


def test_cached_source_reads_each_file_once(tmp_path, monkeypatch):
    write_pitch_audio(tmp_path, per_class=1, seconds=0.3)
    plain = AudioFolderSource(tmp_path, target_length=32, num_mel_bins=16)
    cached = AudioFolderSource(tmp_path, target_length=32, num_mel_bins=16, cache_decoded=True)
    reads, read_audio = [], audio_folder.read_audio
    monkeypatch.setattr(audio_folder, "read_audio", lambda p: reads.append(p) or read_audio(p))
    for _ in range(2):
        for i in range(len(plain)):
            np.testing.assert_array_equal(cached[i]["image"], plain[i]["image"])
    assert sorted(reads) == sorted(plain.paths * 3)  # plain: each epoch (2); cached: once


def test_toy_media_writes_timbre_splits(tmp_path, capsys):
    toy_media.main(["audio", str(tmp_path), "--per-class", "2", "--val-per-class", "1"])
    assert "8 audio files" in capsys.readouterr().out
    train = AudioFolderSource(tmp_path / "train", target_length=32, num_mel_bins=16)
    val = AudioFolderSource(tmp_path / "val", target_length=32, num_mel_bins=16)
    assert train.class_names == val.class_names == sorted(toy_media.TIMBRES)
    assert (len(train), len(val)) == (8, 4)
    # A sine's energy sits in one band; the all-harmonics note spreads it over several.
    sine, rich = (toy_media.note(t, np.random.default_rng(0)) for t in ("sine", "all"))
    assert np.all(np.abs(sine) <= 1) and sine.dtype == rich.dtype == np.float32
    bands = [fbank.fbank(w).mean(0) for w in (sine, rich)]
    loud = [int((b > b.max() - 3).sum()) for b in bands]  # bands within e^3 of the peak
    assert loud[0] < loud[1]
