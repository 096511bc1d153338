"""Shared fixtures: the tiny test models (built once), settings, a loaded pipeline, speech."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
TEST_MODELS = REPO / ".cache" / "test-models"
TEST_CONFIG = REPO / "config.test-models.yaml"

#: Mandarin sentences spoken by espeak-ng in the tests.
SENTENCES = (
    "今天天气很好，我们去公园散步吧。",
    "你觉得这个主意怎么样？",
    "语音识别服务可以离线运行。",
)


#: Modules whose every test is in the slow tier (``bash scripts/test.sh slow``): each starts a process
#: (the server, the CLI, FunASR's own AutoModel, hadolint), drives a browser, starts Ray or plays systemd;
#: test_bad_inputs is the whole hostile-input matrix, every file through the engine and the API.
#: Elsewhere a test that does so is marked ``@pytest.mark.slow`` itself, as are the ones that wait on purpose
#: and the long-audio ones. The fast tier (the rest) is the everyday loop: under about two minutes here.
SLOW_MODULES = frozenset({
    "test_bad_inputs", "test_bundle", "test_check", "test_cli", "test_docker", "test_hotword_oracle", "test_offline", "test_oracle",
    "test_meetings", "test_ray", "test_scripts", "test_security", "test_speaker_oracle", "test_systemd", "test_ui_browser",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def test_models() -> Path:
    """Tiny random-weight ASR/punctuation models and the real FSMN-VAD, in the cache layout."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_test_models

    make_test_models.main(["--out", str(TEST_MODELS)])
    return TEST_MODELS


@pytest.fixture(scope="session")
def settings(test_models):
    from asr.config import load_settings

    return load_settings(TEST_CONFIG, runtime={"device": "cpu", "precision": "fp32"})


@pytest.fixture(scope="session")
def models(settings):
    from asr.models.loading import load_models

    return load_models(settings)


@pytest.fixture(scope="session")
def pipeline(models, settings):
    from asr.core.pipeline import Pipeline

    return Pipeline(models, settings)


@pytest.fixture(scope="session")
def meeting_settings(settings):
    """A meetings deployment: SeACo-Paraformer (hotwords) and CAM++ (speakers) on top of the rest."""
    return settings.model_copy(update={"models": settings.models.model_copy(
        update={"profile": "vad+asr+punc+spk", "asr_model": "seaco"})})


@pytest.fixture(scope="session")
def meeting_pipeline(meeting_settings):
    from asr.core.pipeline import build_pipeline

    return build_pipeline(meeting_settings)


def espeak(text: str, path: Path, speed: int = 150) -> Path:
    """Mandarin speech from espeak-ng (22.05 kHz mono WAV)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the speech tests need it")
    subprocess.run(["espeak-ng", "-v", "cmn", "-s", str(speed), "-w", str(path), text], check=True)
    return path


def read_16k(path: Path) -> np.ndarray:
    from asr.core.audio import load_audio

    return load_audio(path)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def sentence_clips(speech_dir) -> list[np.ndarray]:
    """Each test sentence as 16 kHz float32."""
    return [read_16k(espeak(text, speech_dir / f"sentence{i}.wav")) for i, text in enumerate(SENTENCES)]


def with_pauses(clips: list[np.ndarray], pause_s: float, lead_s: float = 0.5) -> np.ndarray:
    """Clips joined by silences of pause_s, with lead_s of silence around the whole."""
    gap = np.zeros(int(pause_s * 16000), dtype=np.float32)
    lead = np.zeros(int(lead_s * 16000), dtype=np.float32)
    parts = [lead]
    for i, clip in enumerate(clips):
        if i:
            parts.append(gap)
        parts.append(clip)
    parts.append(lead)
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def speech_with_pauses(sentence_clips) -> np.ndarray:
    """Three spoken sentences separated by 2.5 s of silence (16 kHz)."""
    return with_pauses(sentence_clips, 2.5)


@pytest.fixture(scope="session")
def speech_wav(speech_dir, speech_with_pauses) -> Path:
    path = speech_dir / "three_sentences.wav"
    sf.write(path, speech_with_pauses, 16000, subtype="FLOAT")  # lossless: same samples as the array
    return path
