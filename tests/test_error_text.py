"""asr.service.error_text: every error a UI user can meet reads in Chinese, from (English message, code) alone.

The messages here come from the real code (bad files through asr.core.audio, bad edits through apply_edits,
limits through build_options ...), so a new or reworded English message without a catalog entry fails here
instead of reaching a Chinese user half in English.
"""

from __future__ import annotations

import ast
import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from asr import errors
from asr.core.audio import probe_audio, stream_audio
from asr.service.error_text import _SUMMARIES, _translate, localize
from tests import audio_samples as A

REPO = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")

#: Latin words a Chinese message keeps as they are: formats, units, config keys, product names.
TECHNICAL = (
    "models.asr_model: seaco", "models.profile: vad+asr+punc+spk", "vad+asr+punc+spk", "`asr download`",
    "hotwords.max_count", "hotwords.max_chars", "hotwords.file", "speakers.max_speakers", "storage.state_dir",
    "storage.cache_dir", "server.allowed_hosts", "vad.max_segment_ms", "asr.batch_frames", "config.yaml",
    "num_speakers", "min_speakers", "max_speakers", "SeACo-Paraformer", "CAM++", "Word/Excel", "Matroska/WebM",
    "MP4/M4A", "HEIC/AVIF", "7-Zip", "UTF-8", "WAVE", "WAV", "MP3", "M4A", "FLAC", "Opus", "PDF", "PNG", "JPEG",
    "GIF", "WebP", "ZIP", "RAR", "gzip", "HTML", "AVI", "RIFF", "FLV", "Flash", "MPEG", "Microsoft Office",
    "VAD", "ID", "MB", "KB", "Authorization: Basic", "Bearer user:password", "Origin", "API", "'file'", "'vad'",
    "response_format", "transcribe", "kind", "cuda", "cpu", "SIGKILL",
    # the fields of FunASR's live protocol, and their values
    "encoder_chunk_look_back", "decoder_chunk_look_back", "chunk_interval", "chunk_size", "audio_fs", "wav_format",
    "online", "offline", "2pass", "3pass", "mode", "PCM16", "pcm", "mp3", "fast",
)


def english_left(chinese: str, *params: object) -> list[str]:
    """The Latin words in ``chinese`` that are neither one of ``params`` nor a technical token."""
    rest = chinese
    for token in sorted([str(p) for p in params] + list(TECHNICAL), key=len, reverse=True):
        rest = rest.replace(token, " ")
    return re.findall(r"[A-Za-z]{2,}", rest)


def assert_chinese(message: str, *params: object) -> str:
    """``message`` translates through a catalog entry, fully, keeping ``params``; returns the Chinese."""
    chinese = _translate(message)
    assert chinese is not None, f"no catalog entry for: {message!r}"
    assert CJK.search(chinese), chinese
    assert english_left(chinese, *params) == [], (message, chinese)
    for param in params:
        assert str(param) in chinese, (param, chinese)
    assert localize(message, "internal_error", "zh") == chinese
    return chinese


def raised(call: Callable[[], object], kind: type[Exception] = errors.AsrError) -> str:
    with pytest.raises(kind) as caught:
        call()
    return str(caught.value)


# ---- codes and the fallback --------------------------------------------------------------------------


def _error_classes() -> list[type[errors.AsrError]]:
    import asr.models.bundle  # noqa: F401 - defines BundleError; the walk sees only imported classes

    found, pending = [], [errors.AsrError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_has_a_chinese_summary():
    codes = {cls.__dict__["code"] for cls in _error_classes() if "code" in cls.__dict__}
    assert {"internal_error", "bad_audio", "config_error", "model_error", "device_failed", "bad_bundle"} <= codes
    missing = sorted(code for code in codes if not CJK.search(_SUMMARIES.get(code, "")))
    assert missing == []


def test_error_classes_not_imported_here_have_summaries_too():
    # A new AsrError subclass in a module the walk above never imports is still found in the source.
    codes = set()
    for path in [*(REPO / "asr").rglob("*.py"), REPO / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                for item in node.body:
                    if (isinstance(item, ast.Assign) and [getattr(t, "id", None) for t in item.targets] == ["code"]
                            and isinstance(item.value, ast.Constant)):
                        codes.add(item.value.value)
    assert len(codes) > 30
    assert sorted(code for code in codes if code not in _SUMMARIES) == []


def test_english_is_returned_unchanged():
    for message, code in [("x.wav: The file is empty.", "empty_file"), ("something new", None),
                          ("busy: 3 jobs waiting; try again later", "busy"), ("", "internal_error")]:
        assert localize(message, code, "en") == message


def test_an_unknown_message_gets_its_codes_summary_and_keeps_the_english():
    message = "x.wav: The decoder met a brand-new problem."
    assert _translate(message) is None
    assert localize(message, "bad_audio", "zh") == f"文件无法作为音频使用（{message}）"
    assert localize(message, "corrupt_audio", "zh") == f"音频文件已损坏（{message}）"
    assert localize(message, "no_such_code", "zh") == f"{_SUMMARIES['internal_error']}（{message}）"
    assert localize(message, None, "zh") == f"出错了（{message}）"


# ---- audio files, through asr.core.audio -------------------------------------------------------------

NAME = "周会: 第 3 次: 录音.wav"  # ": " inside the name itself, and Chinese


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> A.Samples:
    return A.Samples(tmp_path_factory.mktemp("error-text-samples"))


def _flac(samples: A.Samples, name: str, seconds: float, claim_samples: int, hide_end: bool = False) -> Path:
    path = A.encode(samples.dir / name, A.tone(seconds, 8000), 8000, "flac")
    A.flac_set_length(path, claim_samples)
    return A.flac_hide_end(path) if hide_end else path


AUDIO_CASES: dict[str, tuple[Callable[[A.Samples], Path], dict, type, tuple]] = {
    "empty": (lambda s: s.empty(), {}, errors.EmptyFileError, ()),
    "header only": (lambda s: s.header_only_wav(), {}, errors.EmptyFileError, ()),
    "random bytes": (lambda s: s.random_bytes(), {}, errors.NotAudioError, ()),
    "video without audio": (lambda s: s.mp4_video_only(), {}, errors.NoAudioTrackError, ()),
    "unknown WAVE codec": (lambda s: s.unknown_codec_wav(), {}, errors.UnsupportedCodecError, ("0x7777",)),
    "mp2": (lambda s: A.encode(s.dir / "t.mp2", A.tone(2.0, 16000), 16000, "mp2"), {},
            errors.UnsupportedCodecError, ("mp2",)),
    "FLV": (lambda s: s.garbage_after(b"FLV\x01", "x.flv"), {}, errors.UnsupportedCodecError, ()),
    "AVI": (lambda s: s.garbage_after(b"RIFF\x00\x10\x00\x00AVI LIST", "x.avi"), {}, errors.UnsupportedCodecError,
            ()),
    "corrupt WAV": (lambda s: s.garbage_after(b"RIFF\x00\x10\x00\x00WAVEfmt ", "bad.wav"), {},
                    errors.CorruptAudioError, ()),
    "truncated M4A": (lambda s: A.truncate(A.encode(s.dir / "t.m4a", A.tone(2.0, 16000), 16000, "aac",
                                                    container="mp4"), s.dir / "cut.m4a", 0.5), {},
                      errors.CorruptAudioError, ()),
    "too long": (lambda s: s.tone_wav(3.0, 16000), {"max_duration_s": 1.0}, errors.AudioTooLongError,
                 ("3.0 s", "1.0 s")),
    "too large": (lambda s: s.tone_wav(3.0, 16000), {"max_file_bytes": 50000}, errors.FileTooLargeError,
                  ("0.1 MB", "0.0 MB")),
    "header lies, over the limit": (lambda s: _flac(s, "lies.flac", 30.0, 8000), {"max_duration_s": 10.0},
                                    errors.AudioTooLongError, ("1.0 s", "30.0 s", "10.0 s")),
    **{f"{kind} renamed .wav": (lambda s, kind=kind: s.fake(kind), {}, errors.NotAudioError, ())
       for kind in ("pdf", "png", "jpeg", "zip", "html", "text")},
}


@pytest.mark.parametrize("case", AUDIO_CASES)
def test_the_audio_errors_of_real_bad_files_read_in_chinese(case, samples):
    build, limits, kind, params = AUDIO_CASES[case]
    message = raised(lambda: probe_audio(build(samples), display_name=NAME, **limits), kind)
    chinese = assert_chinese(message, NAME, *params)
    assert chinese.startswith(NAME + "："), chinese  # the name intact, though it holds ": " itself


@pytest.mark.parametrize("case", ["nothing decodes", "over the limit while decoding", "header lies"])
def test_the_errors_met_while_decoding_read_in_chinese(case, samples):
    if case == "nothing decodes":
        clean = A.encode(samples.dir / "t.aac", A.tone(3.0, 44100), 44100, "aac", container="adts")
        path, limit, kind, params = A.scramble_adts_payloads(clean, samples.dir / "s.aac"), None, \
            errors.CorruptAudioError, ()
    elif case == "over the limit while decoding":  # no length in the header, none at the end: only decoding tells
        path, limit, kind, params = _flac(samples, "unknown.flac", 30.0, 0, True), 10.0, \
            errors.AudioTooLongError, ("10.0 s",)
    else:
        path, limit, kind, params = _flac(samples, "hidden.flac", 30.0, 8000, True), None, \
            errors.AudioTooLongError, ("1.0 s",)
    message = raised(lambda: list(stream_audio(path, max_duration_s=limit, display_name=NAME)), kind)
    assert assert_chinese(message, NAME, *params).startswith(NAME + "：")


def test_every_kind_of_file_the_sniffer_names_has_a_chinese_name():
    from asr.core.audio import _SIGNATURES
    from asr.service.error_text import _LOOKS_LIKE

    for kind, what in _SIGNATURES.values():
        if kind != "audio":
            assert what in _LOOKS_LIKE, what
            message = f"x.wav: This looks like {what}, not audio. Please upload an audio or video recording."
            assert _translate(message) is not None, what


def test_the_isolated_decoders_messages_read_in_chinese():
    # Made as asr.core.isolation makes them: the real ones need a decoder process to hang or die.
    for message, params in [
        (f"{NAME}: the decoder stopped making progress (30 s without output) and was stopped; "
         "the file may be damaged", ("30",)),
        (f"{NAME}: decoding took longer than 600 s and was stopped; the file may be damaged", ("600",)),
        (f"{NAME}: the decoder crashed on this file (signal SIGKILL); the file may be damaged", ("SIGKILL",)),
        (f"{NAME}: the decoder crashed on this file (exit code 3); the file may be damaged", ("3",)),
        (f"{NAME}: the decoder returned no description of the file", ()),
        (f"{NAME}: The decoder ran out of memory on this file.", ()),
    ]:
        assert assert_chinese(message, NAME, *params).startswith(NAME + "：")


# ---- edits, hotwords, speakers, formats ------------------------------------------------------------


def _transcript(speakers: int = 1, sentences: int = 2):
    from asr.types import Sentence, Transcript

    return Transcript(text="你好。再见。", duration_s=2.0, segments=(), speakers=tuple(f"S{i}" for i in range(speakers)),
                      sentences=tuple(Sentence(f"第{i}句。", i * 1000, i * 1000 + 900, speaker=0)
                                      for i in range(sentences)))


def test_the_edit_errors_read_in_chinese():
    from asr.service.edits import MAX_NAME_CHARS, MAX_TEXT_CHARS, SentenceEdit, apply_edits

    def edit(edits, names=None, transcript=None):
        return raised(lambda: apply_edits(transcript or _transcript(), edits, names, str), errors.EditError)

    cases = [
        (edit([]), ()),
        (edit([SentenceEdit(7, "好")]), ("7", "0 到 1")),
        (edit([SentenceEdit(0, "好")], transcript=_transcript(0, 0)), ("0",)),
        (edit([SentenceEdit(1, "  ")]), ("1",)),
        (edit([SentenceEdit(1, "长" * (MAX_TEXT_CHARS + 1))]), (MAX_TEXT_CHARS + 1, MAX_TEXT_CHARS)),
        (edit([SentenceEdit(0, "好\x07的")]), ("U+0007",)),
        (edit([SentenceEdit(0, "好"), SentenceEdit(0, "坏")]), ()),
        (edit([SentenceEdit(1, speaker=5)]), ("5", "0 到 0", "1")),
        (edit([SentenceEdit(1, speaker=5)], transcript=_transcript(0)), ("5",)),
        (edit([], ["甲", "乙", "丙"]), ("3", "1")),
        (edit([], [" "]), ("0",)),
        (edit([], ["名" * (MAX_NAME_CHARS + 1)]), (MAX_NAME_CHARS + 1, MAX_NAME_CHARS)),
        (edit([], ["甲\n乙"]), ("U+000A",)),
    ]
    for message, params in cases:
        assert_chinese(message, *params)


def _settings(tmp_path, **models):
    from asr.config import load_settings

    return load_settings(None, models=models, storage={"state_dir": str(tmp_path / "s"),
                                                       "cache_dir": str(tmp_path / "c")})


def test_the_hotword_errors_read_in_chinese(tmp_path):
    from asr.core.hotwords import read_hotword_file, resolve_hotwords
    from asr.core.options import build_options

    seaco = _settings(tmp_path, asr_model="seaco")
    config = seaco.hotwords
    too_many = " ".join(f"词{i}" for i in range(config.max_count + 1))
    words_file = tmp_path / "热词.txt"
    words_file.write_text("\n".join(f"文{i}" for i in range(5)), encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError) as undecodable:
        latin1.read_bytes().decode("utf-8")
    missing = tmp_path / "missing.txt"
    with_file = config.model_copy(update={"file": words_file})
    cases = [
        (raised(lambda: build_options(seaco, hotwords=too_many)), (config.max_count + 1, config.max_count)),
        (raised(lambda: resolve_hotwords(too_many, with_file)), (config.max_count + 6, 5, words_file)),
        (raised(lambda: build_options(seaco, hotwords="长" * (config.max_chars + 1))), (config.max_chars,)),
        (raised(lambda: build_options(_settings(tmp_path), hotwords="阿里巴巴")), ()),
        (raised(lambda: read_hotword_file(latin1)), (latin1, undecodable.value.reason)),
        (raised(lambda: read_hotword_file(missing)), (missing, os.strerror(errno.ENOENT))),
        (raised(lambda: resolve_hotwords("", config.model_copy(update={"file": missing}))),
         (missing, os.strerror(errno.ENOENT))),
        (raised(lambda: resolve_hotwords(["好", 3], config)), ("int", "3")),
        (raised(lambda: resolve_hotwords(3, config)), ("int",)),
    ]
    for message, params in cases:
        assert_chinese(message, *params)


def test_the_speaker_errors_read_in_chinese(tmp_path):
    from asr.core.options import build_options

    spk = _settings(tmp_path, profile="vad+asr+punc+spk")
    most = spk.speakers.max_speakers
    cases = [
        (raised(lambda: build_options(spk, num_speakers=most + 1)), (most, most + 1)),
        (raised(lambda: build_options(spk, min_speakers=0)), (most,)),
        (raised(lambda: build_options(spk, min_speakers=4, max_speakers=2)), ("4", "2")),
        (raised(lambda: build_options(spk, num_speakers=2, max_speakers=3)), ()),
        (raised(lambda: build_options(_settings(tmp_path), speakers=True)), ()),
        ("speaker labels need the CAM++ speaker model: use the profile vad+asr+punc+spk", ()),  # the pipeline's
    ]
    for message, params in cases:
        assert_chinese(message, *params)


def test_the_diarizers_own_count_checks_read_in_chinese():
    import torch

    from asr.core.speakers import Diarizer

    diarizer = Diarizer(None, torch.device("cpu"), max_speakers=4)  # the checks come before any model use
    for call, params in [(lambda: diarizer.turns(num_speakers=0), ("0",)),
                         (lambda: diarizer.turns(min_speakers=0), ()),
                         (lambda: diarizer.turns(min_speakers=3, max_speakers=2), ("3", "2"))]:
        assert_chinese(raised(call, errors.SpeakersError), *params)


def test_the_format_errors_read_in_chinese():
    from asr.config import OutputConfig
    from asr.core.writers import VAD_WRITERS, WRITERS, parse_formats, render, render_zip
    from asr.types import VadResult

    known = ", ".join(WRITERS)
    cases = [
        (raised(lambda: render(_transcript(), "doc", OutputConfig()), errors.RequestError), (known,)),
        (raised(lambda: render(VadResult(segments=(), duration_s=1.0), "srt", OutputConfig()), errors.RequestError),
         (", ".join(VAD_WRITERS),)),
        (raised(lambda: render_zip([], ["doc", "pdf"], OutputConfig()), errors.RequestError),
         ("doc, pdf", ", ".join(sorted({*WRITERS, *VAD_WRITERS})))),
        (raised(lambda: parse_formats("srt,doc", WRITERS), ValueError), ("doc", known)),
        (raised(lambda: parse_formats(" ", WRITERS), ValueError), (known,)),
    ]
    for message, params in cases:
        assert_chinese(message, *params)


# ---- storage and jobs ----------------------------------------------------------------------------------

#: The ``what`` of every storage_error / from_os_error call in the package, made as the call sites make it.
STORAGE_TASKS = [
    ("the upload could not be kept", ()),
    ("the job history cannot be opened in /var/lib/asr", ("/var/lib/asr",)),
    ("the cache directory /srv/缓存 cannot be used (set storage.cache_dir)", ("/srv/缓存",)),
    ("the download files could not be written (the transcript is saved in History)", ()),
    ("the ZIP could not be written (the transcripts are saved in History)", ()),
]


@pytest.mark.parametrize("what, params", STORAGE_TASKS)
@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS])
def test_the_storage_errors_read_in_chinese(what, params, number):
    error = errors.storage_error(OSError(number, os.strerror(number)), what, "/srv/上传")
    expected = errors.StorageFullError if number in (errno.ENOSPC, errno.EDQUOT) else errors.StorageUnavailableError
    assert type(error) is expected
    extra = () if expected is errors.StorageFullError else ("/srv/上传", os.strerror(number))
    assert_chinese(str(error), *params, *extra)
    full = errors.StorageFullError.from_os_error(OSError(number, os.strerror(number)), what)
    if full is not None:
        assert_chinese(str(full), *params)


def test_the_job_historys_errors_read_in_chinese(tmp_path):
    from asr.service.jobs import JobStore

    blocker = tmp_path / "a file"
    blocker.write_text("")
    opened = raised(lambda: JobStore(blocker / "state" / "jobs.db"), errors.StorageUnavailableError)
    assert_chinese(opened, blocker / "state", os.strerror(errno.ENOTDIR))

    store = JobStore(tmp_path / "state" / "jobs.db")
    try:
        assert_chinese(raised(lambda: store.get("abc123"), errors.JobNotFoundError), "'abc123'")
        (tmp_path / "state" / "jobs.db").unlink()
        assert_chinese(raised(store.check, errors.StorageUnavailableError), tmp_path / "state" / "jobs.db")
    finally:
        store.close()


def test_the_engines_messages_read_in_chinese():
    # As asr.service.engine and asr.service.jobs make them: the real ones need a running engine.
    job = "0123abcd"
    cases = [
        ("the service is starting or stopping; try again in a moment", ()),
        ("busy: 12 jobs waiting; try again later", ("12",)),
        (f"job {job} has already finished (completed)", (job, "已完成")),
        (f"job {job} is not active in this process", (job,)),
        (f"no job with id {job!r}", (repr(job),)),
        (f"job {job} is a VAD job: it has speech segments, no transcript to edit", (job,)),
        (f"job {job} is running, not completed", (job, "运行中")),
        (f"job {job} is queued: cancel it first, then delete it", (job, "排队中")),
        ("the search text has 300 characters, more than the 200 allowed", ("300", "200")),
        ("cancelled while running", ()),
        ("cancelled before it started", ()),
        ("the service was stopped before this job started", ()),
        ("the service stopped or restarted while this job was waiting or running; please submit it again", ()),
        ("internal error while processing this file", ()),
        ("the service's device failed: the cuda device failed: CUDA error: an illegal memory access",
         ("CUDA error: an illegal memory access",)),
        ("out of cuda memory on a 28 s speech segment; lower vad.max_segment_ms or asr.batch_frames, "
         "or free device memory", ("28",)),
        ("this service was started with the VAD-only profile; it cannot transcribe", ()),
        ("completed, but not saved to the history: the job history could not be saved: the disk holding /s is full",
         ("/s",)),
    ]
    for message, params in cases:
        assert_chinese(message, *params)
    busy = errors.EngineBusyError("busy: 12 jobs waiting; try again later")
    assert localize(str(busy), busy.code, "zh") == "服务繁忙：有 12 个任务在排队，请稍后再试。"


def test_the_web_services_messages_read_in_chinese():
    # As asr.service.api, uploads, guards and server make them.
    for message, params in [
        ("log in first", ()),
        ("login failed: wrong user name or password", ()),
        ("too many failed logins; try again in 8 s", ("8",)),
        ("the file is larger than the 500 MB limit", ("500",)),
        ("the recording is larger than the 500 MB limit", ("500",)),
        ("the upload is larger than the 2048 MB a request may send; send fewer files at once", ("2048",)),
        ("the server's upload space (4096 MB) is taken by uploads in progress; try again when they are done",
         ("4096",)),
        ("a UI request may carry at most 256 KB", ("256",)),
        ("the request names a file on the server that this service did not hand out; upload the file instead", ()),
        ("no playback audio for this job", ()),
        ("no such session (it ended, or never began)", ()),
        ("the models are loading", ()),
    ]:
        assert_chinese(message, *params)


def test_a_file_name_with_colons_and_chinese_is_kept_whole():
    name = "项目: 会议: 2024-05-01 讨论 (最终).mp3"
    for tail in ["The file is empty.", "The recording is longer than the limit: 1 h 02 min (the maximum is 1 h 00 min)."]:
        chinese = _translate(f"{name}: {tail}")
        assert chinese is not None and chinese.startswith(name + "："), chinese
        assert ": " not in chinese[len(name):]
    assert "1 h 02 min" in _translate(f"{name}: The recording is longer than the limit: 1 h 02 min "
                                      "(the maximum is 1 h 00 min).")


@pytest.mark.parametrize("options", [
    {"mode": "3pass"}, {"sample_rate": 44100}, {"chunk_size": (5, 0, 5)}, {"chunk_interval": 0},
    {"encoder_chunk_look_back": 17}, {"decoder_chunk_look_back": 99},
])
def test_the_live_streams_option_errors_read_in_chinese(options):
    from asr.core.live import LiveOptions

    message = raised(lambda: LiveOptions(**options))
    assert_chinese(message, *[v for v in options.values() if isinstance(v, int)])


def test_the_live_protocols_message_errors_read_in_chinese(settings):
    from asr.service.live import parse_options

    for message in [{"chunk_size": "5,x,5"}, {"audio_fs": "fast"}, {"wav_format": "mp3"}]:
        assert_chinese(raised(lambda m=message: parse_options(m, settings)))
