"""build_options: the one check of a request's choices, shared by the UI, the API, the CLI and batch."""

from __future__ import annotations

import pytest

from asr.config import load_settings
from asr.core.options import build_options
from asr.errors import HotwordsError, HotwordsUnavailableError, SpeakersError, SpeakersUnavailableError


def settings_with(tmp_path, **models):
    return load_settings(None, models=models, storage={"state_dir": str(tmp_path / "s"), "cache_dir": str(tmp_path / "c")})


def test_itn_follows_the_deployment_default_unless_the_request_says(tmp_path):
    on = settings_with(tmp_path)
    assert build_options(on).itn is True
    assert build_options(on, itn=False).itn is False
    off = on.model_copy(update={"text": on.text.model_copy(update={"itn": False})})
    assert build_options(off).itn is False
    assert build_options(off, itn=True).itn is True


def test_hotwords_without_seaco_say_what_to_configure(tmp_path):
    with pytest.raises(HotwordsUnavailableError, match="models.asr_model: seaco") as caught:
        build_options(settings_with(tmp_path), hotwords="阿里巴巴 达摩院")
    assert caught.value.http_status == 400 and caught.value.code == "hotwords_unavailable"


def test_hotwords_are_parsed_and_limited(tmp_path):
    seaco = settings_with(tmp_path, asr_model="seaco")
    assert build_options(seaco, hotwords="阿里巴巴 达摩院").hotwords == ("阿里巴巴", "达摩院")
    many = " ".join(f"词{i}" for i in range(seaco.hotwords.max_count + 1))
    with pytest.raises(HotwordsError, match="hotwords.max_count"):
        build_options(seaco, hotwords=many)
    with pytest.raises(HotwordsError, match="hotwords.max_chars"):
        build_options(seaco, hotwords="长" * (seaco.hotwords.max_chars + 1))


def test_the_deployment_hotword_file_applies_only_where_seaco_runs(tmp_path):
    words = tmp_path / "hotwords.txt"
    words.write_text("达摩院\n通义千问\n", encoding="utf-8")
    seaco = settings_with(tmp_path, asr_model="seaco")
    seaco = seaco.model_copy(update={"hotwords": seaco.hotwords.model_copy(update={"file": words})})
    merged = build_options(seaco, hotwords="阿里巴巴").hotwords
    assert set(merged) == {"阿里巴巴", "达摩院", "通义千问"}
    assert set(build_options(seaco).hotwords) == {"达摩院", "通义千问"}
    plain = seaco.model_copy(update={"models": seaco.models.model_copy(update={"asr_model": "paraformer"})})
    assert build_options(plain).hotwords == ()  # the file is for SeACo; a plain deployment still works


def test_speakers_need_the_spk_profile(tmp_path):
    with pytest.raises(SpeakersUnavailableError, match="vad\\+asr\\+punc\\+spk"):
        build_options(settings_with(tmp_path), speakers=True)
    with pytest.raises(SpeakersUnavailableError):  # a count implies speakers
        build_options(settings_with(tmp_path), num_speakers=2)


def test_speaker_counts_are_checked(tmp_path):
    spk = settings_with(tmp_path, profile="vad+asr+punc+spk")
    assert build_options(spk, speakers=True).speakers is True
    options = build_options(spk, num_speakers=3)
    assert options.speakers and options.num_speakers == 3
    most = spk.speakers.max_speakers
    for bad in ({"num_speakers": 0}, {"num_speakers": most + 1}, {"max_speakers": most + 1}, {"min_speakers": 0}):
        with pytest.raises(SpeakersError, match="speakers.max_speakers") as caught:
            build_options(spk, **bad)
        assert caught.value.code == "bad_speakers" and caught.value.http_status == 400
    with pytest.raises(SpeakersError, match="above"):
        build_options(spk, min_speakers=4, max_speakers=2)
    with pytest.raises(SpeakersError, match="either"):
        build_options(spk, num_speakers=2, max_speakers=3)
