"""Precision modes on the tiny models: what gets converted, the converted-checkpoint cache, and
the helpers that make the reduced modes fast (vectorised fbank, unpacked BLSTM)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from asr.errors import ConfigError
from asr.models.precision import cpu_has_bf16, cpu_has_fast_int8, resolve_precision


def with_precision(settings, tmp_path, precision):
    return settings.model_copy(update={
        "runtime": settings.runtime.model_copy(update={"precision": precision}),
        "storage": settings.storage.model_copy(update={"cache_dir": tmp_path / "cache", "state_dir": tmp_path / "state"}),
    })


def test_auto_picks_a_mode_this_cpu_runs_fast():
    precision, why = resolve_precision("auto", torch.device("cpu"))
    expected = "int8" if cpu_has_fast_int8() else "bf16" if cpu_has_bf16() else "fp32"
    assert precision == expected and why.startswith("auto")
    assert resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"


def test_modes_a_cpu_cannot_run_are_config_errors():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
    if not cpu_has_bf16():
        with pytest.raises(ConfigError, match="AVX512_BF16"):
            resolve_precision("bf16", torch.device("cpu"))
    with pytest.raises(ConfigError):
        resolve_precision("int4", torch.device("cpu"))


def test_int8_converts_what_it_should_and_caches_it(settings, tmp_path, speech_with_pauses, caplog):
    import torch.ao.nn.quantized.dynamic as nnqd

    from asr.core.pipeline import Pipeline
    from asr.models.loading import load_models

    s = with_precision(settings, tmp_path, "int8")
    first = load_models(s)
    asr = first.asr.module
    assert first.precision == "int8" and "engine" in first.precision_reason
    assert isinstance(asr.encoder.encoders[0].self_attn.linear_q_k_v, nnqd.Linear)
    assert isinstance(asr.decoder.decoders[0].feed_forward.w_1, nnqd.Linear)
    # the token decision and the CIF predictor stay in fp32
    assert type(asr.decoder.output_layer) is torch.nn.Linear
    assert type(asr.predictor.cif_output) is torch.nn.Linear
    assert first.asr.parameters > 1_000_000  # the architecture's count, not the packed remainder
    cached = sorted((tmp_path / "cache" / "converted").glob("*.pt"))
    assert [p.name.split("-")[0] for p in cached] == ["asr", "punc"]

    caplog.set_level(logging.INFO, logger="asr.models.precision")
    second = load_models(s)
    assert "loaded the cached int8 checkpoint" in caplog.text
    # The cached load packs the layers side by side: every weight must come back exactly.
    for model in ("asr", "punc"):
        saved, loaded = getattr(first, model).module.state_dict(), getattr(second, model).module.state_dict()
        assert list(saved) == list(loaded)
        for key, value in saved.items():
            pairs = zip(value, loaded[key]) if isinstance(value, tuple) else [(value, loaded[key])]
            for x, y in pairs:
                assert (x is None and y is None) or (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y), key
    a = Pipeline(first, s).transcribe(speech_with_pauses)
    b = Pipeline(second, s).transcribe(speech_with_pauses)
    assert a.text and a.text == b.text and a.segments == b.segments
    tokens = [t for sentence in a.sentences for t in sentence.tokens]
    assert all(any(seg.start_ms <= t.start_ms <= t.end_ms <= seg.end_ms for seg in a.segments) for t in tokens)


def test_a_damaged_cache_is_rebuilt(settings, tmp_path, caplog):
    from asr.models.loading import load_models

    s = with_precision(settings, tmp_path, "int8")
    load_models(s)
    for path in (tmp_path / "cache" / "converted").glob("asr-*.pt"):
        path.write_bytes(b"not a checkpoint")
    caplog.set_level(logging.WARNING, logger="asr.models.precision")
    models = load_models(s)
    assert "ignoring the converted checkpoint" in caplog.text
    assert models.asr.module.encoder is not None
    assert all(p.stat().st_size > 1000 for p in (tmp_path / "cache" / "converted").glob("asr-*.pt"))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX512_BF16/AMX")
def test_bf16_runs_with_an_fp32_predictor(settings, tmp_path, speech_with_pauses):
    from asr.core.pipeline import Pipeline
    from asr.models.loading import load_models

    s = with_precision(settings, tmp_path, "bf16")
    models = load_models(s)
    asr = models.asr.module
    assert next(asr.encoder.parameters()).dtype == torch.bfloat16
    assert next(asr.predictor.parameters()).dtype == torch.float32
    transcript = Pipeline(models, s).transcribe(speech_with_pauses)
    assert transcript.text and transcript.sentences


def test_fast_fbank_matches_kaldi_native_fbank(speech_with_pauses):
    from asr.core.fbank import fbank
    from asr.models.funasr_import import import_registered

    import_registered("WavFrontend")
    from funasr.utils import fbank as funasr_fbank

    options = dict(num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0, energy_floor=0.0,
                   window_type="hamming", sample_frequency=16000, snip_edges=True)
    for wave in (speech_with_pauses, speech_with_pauses[:401], np.zeros(16000, np.float32)):
        samples = torch.from_numpy(wave.copy())[None] * 32768
        ours, theirs = fbank(samples, **options), funasr_fbank.fbank(samples, **options)
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=5e-3), (ours - theirs).abs().max()
    assert fbank(torch.zeros(1, 399), **options).shape == (0, 80)


def test_options_the_fast_fbank_lacks_fall_back_to_funasrs_own(speech_with_pauses):
    """A model whose frontend asks for what the fast fbank does not compute (here snip_edges=False, or
    dither) still runs in the reduced modes: FunASR's own fbank answers, not a NotImplementedError."""
    from asr.core.fbank import fast_fbank
    from asr.models.funasr_import import import_registered

    import_registered("WavFrontend")
    import funasr.frontends.wav_frontend as frontends

    samples = torch.from_numpy(speech_with_pauses[:16000].copy())[None] * 32768
    for unsupported in ({"snip_edges": False}, {"window_type": "blackman"}):
        options = dict(num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0, energy_floor=0.0,
                       window_type="hamming", sample_frequency=16000, snip_edges=True) | unsupported
        with fast_fbank():
            inside = frontends.kaldi.fbank(samples, **options)
        outside = frontends.kaldi.fbank(samples, **options)
        assert torch.equal(inside, outside), unsupported


def test_unpacked_blstm_equals_each_sequence_alone(models):
    from asr.core.recognize import Recognizer

    recognizer = Recognizer(models.asr, models.device, "fp32")
    blstm = recognizer.predictor.blstm
    torch.manual_seed(0)
    lengths = torch.tensor([30, 17, 5])
    batch = torch.randn(3, 30, blstm.input_size)
    with torch.inference_mode():
        together = recognizer._blstm_unpadded(batch, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, _ = blstm(batch[i : i + 1, :n])
            assert torch.allclose(together[i, :n], alone[0], atol=1e-5)
