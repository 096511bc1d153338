"""Model loading from local directories: strict, fast-failing, and never silently untrained."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
import yaml

from asr.errors import ManifestMismatchError, ModelError, ModelIncompleteError, ModelNotFoundError
from tests.conftest import REPO


def copy_models(test_models, tmp_path):
    target = tmp_path / "cache"
    shutil.copytree(test_models / "models", target / "models")
    return target


def settings_for(settings, cache_dir, **models):
    return settings.model_copy(update={"models": settings.models.model_copy(update={"cache_dir": cache_dir, **models})})


def asr_dir(models_root):
    return next((models_root / "models").glob("iic--speech_paraformer*/snapshots/v2.0.4"))


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
