"""Meetings through the real paths: the pipeline, the HTTP API and the CLI with SeACo-Paraformer (hotwords),
CAM++ (speakers) and ITN, on the tiny random-weight models and espeak-ng speech.

Random weights encode no voices and no words, so these tests check structure and wiring (every option reaches
the stage that uses it, every output carries its result); the model-level equality with FunASR is in
tests/test_hotword_oracle.py and tests/test_speaker_oracle.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf

from asr.core.itn import normalize_transcript
from asr.core.options import build_options
from asr.service.engine import Engine
from tests.conftest import TEST_CONFIG, read_16k, with_pauses
from tests.test_api import Server, upload
from tests.test_engine import make_settings

#: A two-person exchange: alternating voices, as in a meeting.
DIALOGUE = (
    ("cmn+f3", 70, "我们下午三点开会，讨论一下预算。"),
    ("cmn+m3", 30, "好的，预算是一百二十万元吗？"),
    ("cmn+f3", 70, "对，百分之五用于培训。"),
    ("cmn+m3", 30, "明白了，我会准备材料。"),
)


def speak(text: str, path, voice: str, pitch: int) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "150", "-w", str(path), text], check=True)
    return read_16k(path)


@pytest.fixture(scope="session")
def dialogue_wav(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dialogue")
    clips = [speak(text, directory / f"{i}.wav", voice, pitch) for i, (voice, pitch, text) in enumerate(DIALOGUE)]
    path = directory / "dialogue.wav"
    sf.write(path, with_pauses(clips, 1.0), 16000)
    return path


def test_speakers_label_every_sentence_and_reach_every_output(meeting_pipeline, meeting_settings, dialogue_wav):
    options = build_options(meeting_settings, num_speakers=2)
    transcript = meeting_pipeline.transcribe(dialogue_wav, options)
    assert transcript.sentences
    assert all(s.speaker in (0, 1) for s in transcript.sentences)
    assert transcript.speakers == ("Speaker 1", "Speaker 2")  # asked for two, got two
    assert transcript.sentences[0].speaker == 0  # numbered by first appearance
    assert transcript.timings.speakers_s > 0
    from asr.core.writers import render

    srt = render(transcript, "srt", meeting_settings.output).body.decode()
    assert all(block.split("\n")[2].startswith("Speaker ") for block in srt.strip().split("\n\n"))
    assert "<v Speaker " in render(transcript, "vtt", meeting_settings.output).body.decode()


def test_without_speakers_nothing_is_labelled(meeting_pipeline, meeting_settings, dialogue_wav):
    transcript = meeting_pipeline.transcribe(dialogue_wav, build_options(meeting_settings))
    assert transcript.speakers == () and all(s.speaker is None for s in transcript.sentences)
    assert transcript.timings.speakers_s == 0


def test_itn_runs_per_sentence_after_timestamps(meeting_pipeline, meeting_settings, dialogue_wav):
    plain = meeting_pipeline.transcribe(dialogue_wav, build_options(meeting_settings, itn=False))
    written = meeting_pipeline.transcribe(dialogue_wav, build_options(meeting_settings, itn=True))
    expected = normalize_transcript(plain, meeting_pipeline.normalizer)
    assert written.text == expected.text
    assert [dataclasses.replace(s) for s in written.sentences] == list(expected.sentences)
    assert written.timings.itn_s > 0 and plain.timings.itn_s == 0


def test_hotwords_reach_the_bias_encoder(meeting_pipeline, meeting_settings, speech_wav):
    """The test SeACo's bias weights are built so that hotwords change the text (see make_test_models)."""
    without = meeting_pipeline.transcribe(speech_wav, build_options(meeting_settings, itn=False))
    words = "".join(s.text for s in without.sentences)[:8]
    hot = build_options(meeting_settings, itn=False, hotwords=f"{words[:3]} {words[3:6]} 达摩院 阿里巴巴")
    biased = meeting_pipeline.transcribe(speech_wav, hot)
    assert biased.text != without.text
    assert meeting_pipeline.transcribe(speech_wav, hot).text == biased.text  # deterministic


# ---- the HTTP API ----------------------------------------------------------------------------------


@pytest.fixture
def meeting_server(meeting_settings, meeting_pipeline, tmp_path):
    s = make_settings(meeting_settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: meeting_pipeline)
    with Server(s, engine) as srv:
        engine.start()
        yield srv


@pytest.fixture
def plain_server(settings, pipeline, tmp_path):
    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        yield srv


def wait_done(url: str, job_id: str) -> dict:
    for _ in range(600):
        status = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if status["status"] not in ("queued", "running"):
            return status
        import time

        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_api_routes_take_speakers_hotwords_and_itn(meeting_server, dialogue_wav):
    url = meeting_server.url
    verbose = httpx.post(f"{url}/v1/audio/transcriptions", files=upload(dialogue_wav), timeout=120, data={
        "response_format": "verbose_json", "num_speakers": "2", "prompt": "预算 培训"}).json()
    assert verbose["speakers"] == ["Speaker 1", "Speaker 2"]
    assert {s["speaker"] for s in verbose["segments"]} <= {"Speaker 1", "Speaker 2"}
    assert all(s["speaker_id"] in (0, 1) for s in verbose["segments"])

    job = httpx.post(f"{url}/v1/jobs", files=upload(dialogue_wav), data={
        "speakers": "true", "max_speakers": "3", "hotwords": "预算 培训", "itn": "false"}).json()
    status = wait_done(url, job["id"])
    assert status["status"] == "completed", status
    assert status["options"]["hotwords"] == ["预算", "培训"] and status["options"]["itn"] is False
    tsv = httpx.get(f"{url}/v1/jobs/{job['id']}/result", params={"format": "tsv"}).text
    assert tsv.splitlines()[0] == "start_ms\tend_ms\tspeaker\ttext"
    result = httpx.get(f"{url}/v1/jobs/{job['id']}/result").json()
    assert all(s["speaker"] is not None for s in result["sentences"]) and result["speakers"]


def test_openai_prompt_becomes_hotwords_only_where_seaco_runs(meeting_server, plain_server, speech_wav):
    seaco = httpx.post(f"{meeting_server.url}/v1/jobs", files=upload(speech_wav), data={"hotwords": "达摩院"})
    assert seaco.status_code == 202
    # a Whisper client that always sends a prompt keeps working on a deployment without SeACo
    ok = httpx.post(f"{plain_server.url}/v1/audio/transcriptions", files=upload(speech_wav),
                    data={"prompt": "以下是普通话的句子"}, timeout=120)
    assert ok.status_code == 200 and ok.json()["text"]


@pytest.mark.parametrize("fields, code, words", [
    ({"hotwords": "达摩院"}, "hotwords_unavailable", "models.asr_model: seaco"),
    ({"speakers": "true"}, "speakers_unavailable", "vad+asr+punc+spk"),
    ({"num_speakers": "2"}, "speakers_unavailable", "vad+asr+punc+spk"),
])
@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/audio/transcriptions"])
def test_a_deployment_without_the_model_says_what_to_configure(plain_server, speech_wav, route, fields, code, words):
    response = httpx.post(f"{plain_server.url}{route}", files=upload(speech_wav), data=fields, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert httpx.get(f"{plain_server.url}/v1/jobs").json()["data"] == []  # refused before anything queued


@pytest.mark.parametrize("fields, code, words", [
    ({"hotwords": " ".join(f"词{i}" for i in range(201))}, "bad_hotwords", "hotwords.max_count"),
    ({"hotwords": "长" * 17}, "bad_hotwords", "hotwords.max_chars"),
    ({"num_speakers": "17"}, "bad_speakers", "speakers.max_speakers"),
    ({"num_speakers": "0"}, "bad_speakers", "between 1 and"),
    ({"min_speakers": "3", "max_speakers": "2"}, "bad_speakers", "above"),
])
def test_bad_meeting_fields_get_specific_400s(meeting_server, speech_wav, fields, code, words):
    for route in ("/v1/jobs", "/v1/audio/transcriptions"):
        response = httpx.post(f"{meeting_server.url}{route}", files=upload(speech_wav), data=fields, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == code and words in error["message"]


# ---- the CLI ------------------------------------------------------------------------------------------


def run_asr(*args, cwd):
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.slow
def test_cli_flags_on_transcribe_and_batch(tmp_path, dialogue_wav, test_models):
    words = tmp_path / "words.txt"
    words.write_text("预算\n培训\n", encoding="utf-8")
    common = ["--config", TEST_CONFIG, "--profile", "vad+asr+punc+spk", "--asr-model", "seaco"]
    done = run_asr("transcribe", dialogue_wav, "--format", "json,srt", "--out", tmp_path / "t", "--num-speakers", "2",
                   "--hotwords", "达摩院", "--hotwords-file", words, "--no-itn", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "t" / "dialogue.json").read_text(encoding="utf-8"))
    assert result["speakers"] == ["Speaker 1", "Speaker 2"]
    batch = run_asr("batch", dialogue_wav, "--out", tmp_path / "b", "--format", "tsv", "--speakers", *common,
                    cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    tsv = next((tmp_path / "b").rglob("*.tsv")).read_text(encoding="utf-8")
    assert tsv.splitlines()[0] == "start_ms\tend_ms\tspeaker\ttext"


@pytest.mark.slow
def test_cli_says_what_to_configure(tmp_path, speech_wav, test_models):
    refused = run_asr("transcribe", speech_wav, "--speakers", "--config", TEST_CONFIG, cwd=tmp_path)
    assert refused.returncode != 0 and "vad+asr+punc+spk" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_asr("transcribe", speech_wav, "--hotwords", "达摩院", "--config", TEST_CONFIG, cwd=tmp_path)
    assert refused.returncode != 0 and "models.asr_model: seaco" in refused.stderr
