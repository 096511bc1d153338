"""Model loading from local directories: strict, fast-failing, and never silently untrained."""

from __future__ import annotations

import contextlib
import random
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml

from asr.errors import ManifestMismatchError, ModelError, ModelIncompleteError, ModelNotFoundError
from tests.conftest import REPO

LIVE = "vad+asr+punc+live"
#: What FunASR's streaming servers pass: 600 ms chunks, 4 encoder chunks and 1 decoder chunk of look-back.
STREAMING = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}


def copy_models(test_models, tmp_path):
    target = tmp_path / "cache"
    shutil.copytree(test_models / "models", target / "models")
    return target


def settings_for(settings, cache_dir, **models):
    return settings.model_copy(update={"models": settings.models.model_copy(update={"cache_dir": cache_dir, **models})})


def asr_dir(models_root):
    # the offline model's: iic--speech_paraformer* alone also matches the streaming one
    return next((models_root / "models").glob("iic--speech_paraformer-large-vad-punc*/snapshots/v2.0.4"))


def test_loaded_models_are_complete_and_on_cpu(models):
    assert str(models.device) == "cpu" and models.uses_test_models
    for model in models.models():
        tensors = list(model.module.parameters()) + list(model.module.buffers())
        assert tensors and not any(t.is_meta for t in tensors), model.role
        assert not model.module.training
    assert models.asr.frontend.dither == 0.0


def test_weights_are_the_checkpoints(models):
    state = torch.load(models.asr.location.directory / "model.pt", map_location="cpu", weights_only=True)
    ours = models.asr.module.state_dict()
    assert set(state) == set(ours)
    assert all(torch.equal(state[k], ours[k]) for k in state)


def test_missing_model_names_the_model_and_the_fix(settings, tmp_path):
    from asr.models.loading import load_models

    with pytest.raises(ModelNotFoundError) as e:
        load_models(settings_for(settings, tmp_path / "empty"))
    message = str(e.value)
    assert settings.models.vad.id in message and "asr download" in message and "v2.0.4" in message


def test_checkpoint_missing_parameters_is_refused(settings, test_models, tmp_path):
    from asr.models.loading import load_models

    cache = copy_models(test_models, tmp_path)
    directory = asr_dir(cache)
    state = torch.load(directory / "model.pt", weights_only=True)
    dropped = next(k for k in state if k.startswith("decoder."))
    del state[dropped]
    torch.save(state, directory / "model.pt")
    (directory / ".asr-manifest.json").unlink()  # a hand-made directory without a manifest
    with pytest.raises(ModelIncompleteError, match="untrained") as e:
        load_models(settings_for(settings, cache))
    assert dropped in str(e.value)


def test_checkpoint_with_wrong_shapes_is_refused(settings, test_models, tmp_path):
    from asr.models.loading import load_models

    cache = copy_models(test_models, tmp_path)
    directory = asr_dir(cache)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["encoder_conf"]["linear_units"] = 96
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / ".asr-manifest.json").unlink()
    with pytest.raises(ModelIncompleteError, match="shape mismatch"):
        load_models(settings_for(settings, cache))


def test_truncated_checkpoint_fails_fast_on_the_manifest(settings, test_models, tmp_path):
    from asr.models.loading import load_models

    cache = copy_models(test_models, tmp_path)
    path = asr_dir(cache) / "model.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ManifestMismatchError, match="model.pt"):
        load_models(settings_for(settings, cache))


def test_unknown_model_class_is_a_clear_error(settings, test_models, tmp_path):
    from asr.models.loading import load_models

    cache = copy_models(test_models, tmp_path)
    directory = asr_dir(cache)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["model"] = "NoSuchParaformer"
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / ".asr-manifest.json").unlink()
    with pytest.raises(ModelError, match="NoSuchParaformer") as e:
        load_models(settings_for(settings, cache))
    assert "is not registered" not in str(e.value)


def test_old_format_model_dir_is_explained(settings, test_models, tmp_path):
    from asr.models.loading import load_models

    cache = copy_models(test_models, tmp_path)
    directory = asr_dir(cache)
    (directory / "config.yaml").write_text("encoder: sanm\n")  # v1.x layout has no 'model:'
    (directory / ".asr-manifest.json").unlink()
    with pytest.raises(ModelError, match="v2"):
        load_models(settings_for(settings, cache))


def test_explicit_path_wins_over_the_cache(settings, test_models, tmp_path):
    from asr.models.files import locate_model

    directory = asr_dir(test_models)
    elsewhere = tmp_path / "my-asr-model"
    shutil.copytree(directory, elsewhere)
    s = settings_for(settings, tmp_path / "empty")
    s = s.model_copy(update={"models": s.models.model_copy(update={"asr": s.models.asr.model_copy(update={"path": elsewhere})})})
    assert locate_model(s.models, "asr").directory == elsewhere


def test_legacy_cache_layout_is_found(settings, test_models, tmp_path):
    """Models cached by modelscope <= 1.37 live in models/<owner>/<name> (dots as ___)."""
    from asr.models.files import locate_model

    spec = settings.models.vad
    legacy = tmp_path / "cache" / "models" / "iic" / spec.id.split("/")[1]
    shutil.copytree(next((test_models / "models").glob("iic--speech_fsmn*/snapshots/v2.0.4")), legacy)
    assert locate_model(settings_for(settings, tmp_path / "cache").models, "vad").directory == legacy


def test_a_lighter_paraformer_is_a_config_change(settings, test_models, tmp_path, speech_with_pauses):
    """A plain Paraformer (no timestamp branch) loads and transcribes, with timestamps from its
    CIF peaks, by pointing models.asr at it: no code change."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_test_models

    from asr.core.pipeline import Pipeline
    from asr.models.loading import load_models

    light = tmp_path / "small-paraformer"
    make_test_models.build_plain_paraformer(light)
    s = settings.model_copy(update={"models": settings.models.model_copy(update={
        "asr": settings.models.asr.model_copy(update={"id": "local/small-paraformer", "path": light})})})
    models = load_models(s)
    assert type(models.asr.module).__name__ == "Paraformer"
    transcript = Pipeline(models, s).transcribe(speech_with_pauses)
    tokens = [t for sentence in transcript.sentences for t in sentence.tokens]
    assert transcript.text and tokens
    assert all(any(seg.start_ms <= t.start_ms <= t.end_ms <= seg.end_ms for seg in transcript.segments) for t in tokens)


def test_cuda_without_a_gpu_is_a_config_error():
    from asr.errors import ConfigError
    from asr.models.loading import resolve_device

    assert str(resolve_device("cpu")) == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert str(resolve_device("auto")) == "cpu"
    with pytest.raises(ConfigError, match="no usable CUDA"):
        resolve_device("cuda:0")


# ---- the streaming Paraformer (the +live profile) ----------------------------------------------


@pytest.fixture(scope="module")
def live_models(settings):
    from asr.models.loading import load_models

    return load_models(settings.model_copy(update={"models": settings.models.model_copy(update={"profile": LIVE})}))


def test_live_profile_loads_the_streaming_paraformer(live_models, models):
    online = live_models.online
    assert {m.role for m in live_models.models()} == {"vad", "asr", "punc", "online"}
    assert type(online.module).__name__ == "ParaformerStreaming"
    assert type(online.module.encoder).__name__ == "SANMEncoderChunkOpt"
    assert type(online.frontend).__name__ == "WavFrontendOnline" and online.frontend.dither == 0.0
    assert len(online.tokenizer.token_list) == 8404
    assert online.location.is_test_model and live_models.uses_test_models
    assert online.location.spec.id.endswith("-online") and online.location.spec.revision == "v2.0.4"
    assert not online.module.training and str(next(online.module.parameters()).device) == "cpu"
    assert next(online.module.parameters()).dtype == torch.float32
    assert models.online is None  # the default profile loads no streaming model


@contextlib.contextmanager
def _kept_process_state():
    """AutoModel sets torch's thread count (to 4) and seeds every random generator: undo both."""
    threads, states = torch.get_num_threads(), (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@pytest.fixture(scope="module")
def funasr_online(live_models):
    """FunASR's own ``AutoModel`` on the same directory, called as tests/funasr_reference.py calls it. It
    runs in this process: through our selective import, AutoModel's module needs no full ``import funasr``."""
    from asr.models.funasr_import import import_registered

    import_registered("ParaformerStreaming")
    from funasr.auto.auto_model import AutoModel

    with _kept_process_state():
        return AutoModel(model=str(live_models.online.location.directory), device="cpu", disable_update=True,
                         disable_pbar=True, log_level="ERROR", frontend_conf={"dither": 0.0})


def _encode_one_chunk(model, frontend, config, chunk):
    """Features and encoder output of the first chunk of a stream, as ParaformerStreaming.inference does."""
    from funasr.utils.load_utils import extract_fbank

    cache = model.init_cache({}, **STREAMING, encoder_conf=config["encoder_conf"], frontend_conf=config["frontend_conf"])
    feats, lengths = extract_fbank([torch.from_numpy(chunk)], data_type="sound", frontend=frontend,
                                   cache=cache["frontend"], is_final=False)
    with torch.no_grad():
        out, _ = model.encode_chunk(feats, lengths, cache=cache, is_final=False)
    return feats, out


def test_online_model_equals_funasr_automodel(live_models, funasr_online):
    ours, theirs = live_models.online, funasr_online
    assert type(theirs.model) is type(ours.module)
    state, their_state = ours.module.state_dict(), theirs.model.state_dict()
    assert set(state) == set(their_state) and all(torch.equal(state[k], their_state[k]) for k in state)

    rng = np.random.default_rng(8404)
    chunk = (0.1 * rng.standard_normal(STREAMING["chunk_size"][1] * 960)).astype(np.float32)  # 600 ms
    our_feats, our_out = _encode_one_chunk(ours.module, ours.frontend, ours.config, chunk)
    their_feats, their_out = _encode_one_chunk(theirs.model, theirs.kwargs["frontend"], theirs.kwargs, chunk)
    assert our_feats.shape[-1] == 560 and torch.equal(our_feats, their_feats)
    assert our_out.shape[-1] == ours.config["encoder_conf"]["output_size"] and torch.equal(our_out, their_out)
    other = (0.1 * rng.standard_normal(len(chunk))).astype(np.float32)
    assert not torch.allclose(_encode_one_chunk(ours.module, ours.frontend, ours.config, other)[1], our_out)

    # the whole step, FunASR's generate against the model's own inference with our frontend and tokenizer
    with _kept_process_state():
        [expected] = theirs.generate(input=chunk, cache={}, is_final=True, **STREAMING)
    [result], _ = ours.module.inference(
        [torch.from_numpy(chunk)], key=["chunk"], tokenizer=ours.tokenizer, frontend=ours.frontend, cache={},
        is_final=True, device="cpu", encoder_conf=ours.config["encoder_conf"],
        frontend_conf=ours.config["frontend_conf"], **STREAMING)
    assert result["text"] and result["text"] == expected["text"]
