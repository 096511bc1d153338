"""Output formats and subtitle cues: synthetic transcripts (no model) and one real transcript."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from asr.config import OutputConfig
from asr.core.sentences import tokens_text
from asr.core.writers import (
    VAD_WRITERS,
    WRITERS,
    Cue,
    build_cues,
    format_timestamp,
    parse_formats,
)
from asr.types import Sentence, SpeechSegment, StageTimings, TimedToken, Transcript, VadResult

#: 60 distinct Chinese characters: one token each.
CHARS = (
    "今天天气很好我们去公园散步吧你觉得这个主意怎么样"
    "语音识别服务可以离线运行明天下雨记得带伞晚上一起吃饭好不好周末去爬山看海"
)[:60]
assert len(CHARS) == 60


def timed_sentence(text: str, start_ms: int, end_ms: int, marks: dict[int, str] | None = None) -> Sentence:
    """One token per character, spread evenly over [start_ms, end_ms]; ``marks`` maps index -> mark."""
    marks = marks or {}
    n, span = len(text), end_ms - start_ms
    tokens = tuple(
        TimedToken(ch, start_ms + i * span // n, start_ms + (i + 1) * span // n, marks.get(i, ""))
        for i, ch in enumerate(text)
    )
    return Sentence(tokens_text(tokens), start_ms, end_ms, tokens)


def long_sentence(comma_at: tuple[int, ...] = (29,)) -> Sentence:
    """60 tokens over 20 s, with a full stop at the end and commas after the given tokens."""
    return timed_sentence(CHARS, 0, 20_000, {**{i: "，" for i in comma_at}, 59: "。"})


def check_cues(
    cues: list[Cue],
    output: OutputConfig,
    *,
    duration_ms: float | None = None,
    unsplittable: set[str] = frozenset(),
) -> None:
    """The cue invariants. ``unsplittable``: texts of single tokens (a token is never split, so
    such a cue alone may exceed the limits)."""
    previous_end = 0
    for cue in cues:
        assert cue.text and cue.text == cue.text.strip(), cue
        assert "\n" not in cue.text and "\r" not in cue.text, cue
        assert 0 <= cue.start_ms < cue.end_ms, cue
        assert cue.start_ms >= previous_end, (cue, previous_end)
        if cue.text not in unsplittable:
            assert cue.end_ms - cue.start_ms <= output.max_cue_ms, cue
            assert len(cue.text) <= output.max_cue_chars, cue
        previous_end = cue.end_ms
    if duration_ms is not None and cues:
        assert cues[-1].end_ms <= duration_ms, cues[-1]


# ---- format_timestamp ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "separator", "expected"),
    [
        (0, ",", "00:00:00,000"),
        (999, ",", "00:00:00,999"),
        (1000, ",", "00:00:01,000"),
        (61_001, ",", "00:01:01,001"),
        (59_999, ".", "00:00:59.999"),
        (3_600_000, ",", "01:00:00,000"),
        (3_600_000 + 59 * 60_000 + 59_999, ".", "01:59:59.999"),
        (10 * 3_600_000 + 1, ".", "10:00:00.001"),
        (-5, ",", "00:00:00,000"),  # never a negative time in a subtitle file
    ],
)
def test_format_timestamp(ms, separator, expected):
    assert format_timestamp(ms, separator) == expected


# ---- build_cues on synthetic sentences ----------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        OutputConfig(),
        OutputConfig(max_cue_ms=1500, max_cue_chars=6),
        OutputConfig(max_cue_ms=500, max_cue_chars=4),
        OutputConfig(max_cue_ms=60_000, max_cue_chars=40),
        OutputConfig(max_cue_ms=3000, max_cue_chars=100),
        OutputConfig(max_cue_ms=60_000, max_cue_chars=10),
    ],
    ids=lambda o: f"{o.max_cue_ms}ms-{o.max_cue_chars}ch",
)
def test_long_sentence_is_split_within_the_limits(output):
    sentence = long_sentence()
    cues = build_cues([sentence], output)
    assert len(cues) > 1  # 20 s and 61 characters exceed every config above
    check_cues(cues, output, duration_ms=20_000)
    # nothing lost, nothing repeated, in order; every cut falls on a token boundary
    assert "".join(c.text for c in cues) == sentence.text
    assert cues[0].start_ms == 0 and cues[-1].end_ms == 20_000
    starts = {t.start_ms for t in sentence.tokens}
    ends = {t.end_ms for t in sentence.tokens}
    assert all(c.start_ms in starts and c.end_ms in ends for c in cues)


def test_long_sentence_default_cues_exactly():
    # 333 ms per token: 21 tokens fill 7 s; the comma after token 29 lies in the first half of
    # the second piece (tokens 21-41), so it is not used there.
    sentence = long_sentence()
    cues = build_cues([sentence], OutputConfig())
    assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 7000), (7000, 14000), (14000, 20000)]
    assert [c.text for c in cues] == [CHARS[:21], CHARS[21:30] + "，" + CHARS[30:42], CHARS[42:] + "。"]


@pytest.mark.parametrize(
    ("commas", "first_cue_tokens"),
    [
        ((29,), 30),  # greedy would take 39 tokens (40 chars); the comma is in its second half
        ((25, 33), 34),  # the LAST comma that fits wins
        ((5,), 39),  # a comma in the first half is ignored: no tiny cue
        ((), 40),  # no comma: cut between tokens at the character limit (40 chars)
    ],
)
def test_cut_prefers_a_comma_in_the_second_half(commas, first_cue_tokens):
    sentence = long_sentence(commas)
    cues = build_cues([sentence], OutputConfig(max_cue_ms=60_000, max_cue_chars=40))
    first_end = sentence.tokens[first_cue_tokens - 1].end_ms
    assert (cues[0].start_ms, cues[0].end_ms) == (0, first_end)
    assert cues[0].text == tokens_text(sentence.tokens[:first_cue_tokens])
    if commas and first_cue_tokens - 1 in commas:
        assert cues[0].text.endswith("，")
    assert cues[1].start_ms == first_end
    assert "".join(c.text for c in cues) == sentence.text


def test_sentence_without_tokens_is_split_evenly():
    text = CHARS  # 60 characters over 20 s: 3 parts by time (7 s), 2 by characters (40)
    sentence = Sentence(text, 5000, 25_000)
    output = OutputConfig()
    cues = build_cues([sentence], output)
    check_cues(cues, output, duration_ms=25_000)
    assert [c.text for c in cues] == [text[:20], text[20:40], text[40:]]
    assert cues[0].start_ms == 5000 and cues[-1].end_ms == 25_000
    durations = [c.end_ms - c.start_ms for c in cues]
    assert max(durations) - min(durations) <= 1
    assert all(a.end_ms == b.start_ms for a, b in zip(cues, cues[1:]))


def test_short_sentence_without_tokens_is_one_cue():
    cues = build_cues([Sentence("你好。", 1000, 2000)], OutputConfig())
    assert cues == [Cue(1000, 2000, "你好。")]


def test_overlapping_zero_length_and_empty_sentences_give_valid_cues():
    output = OutputConfig()
    zero_tokens = (TimedToken("零", 5000, 5000), TimedToken("长", 5000, 5000, "。"))
    sentences = [
        Sentence("你好。", 1000, 2000),
        Sentence("再见。", 1000, 2000),  # identical times
        Sentence("谢谢。", 3000, 3000),  # start == end
        Sentence("", 3500, 4000),  # empty text
        Sentence("  \n ", 3600, 3900),  # blank text
        Sentence("", 4000, 4100, (TimedToken("", 4000, 4100),)),  # an empty token
        Sentence("零长。", 5000, 5000, zero_tokens),  # zero-length tokens
        Sentence("重叠一。", 6000, 8000),
        Sentence("重叠二。", 7000, 9000),  # starts inside the previous one
        Sentence("包含。", 6500, 7500),  # lies inside "重叠一"
        Sentence("最后。", 10_000, 10_000),
    ]
    cues = build_cues(sentences, output)
    check_cues(cues, output)
    texts = [c.text for c in cues]
    assert sorted(texts) == sorted(s.text for s in sentences if s.text.strip())
    assert texts[-1] == "最后。"


def test_line_breaks_in_sentence_text_never_reach_a_cue():
    sentence = Sentence("第一行\n\n第二行\r\n第三行", 0, 3000)
    output = OutputConfig()
    cues = build_cues([sentence], output)
    check_cues(cues, output)
    assert [c.text for c in cues] == ["第一行 第二行 第三行"]


def test_no_sentences_no_cues():
    assert build_cues([], OutputConfig()) == []


# ---- transcript writers -------------------------------------------------------------------


def sample_transcript() -> Transcript:
    first = timed_sentence("今天天气很好", 500, 2300, {2: "，", 5: "。"})
    second = timed_sentence("我们去公园", 3000, 4500, {4: "？"})
    third = Sentence("带\t制表符\n和换行", 5000, 6000)  # a fallback sentence with awkward text
    return Transcript(
        text=first.text + second.text + third.text,
        sentences=(first, second, third),
        segments=(SpeechSegment(400, 2400), SpeechSegment(2900, 6100)),
        duration_s=7.25,
        timings=StageTimings(decode_s=0.01, vad_s=0.02, asr_s=0.3, punc_s=0.04, total_s=0.4),
    )


def empty_transcript() -> Transcript:
    return Transcript(text="", sentences=(), segments=(), duration_s=20.0)


def write(fmt: str, transcript: Transcript, output: OutputConfig = OutputConfig()) -> str:
    buffer = io.StringIO()
    WRITERS[fmt].write(transcript, buffer, output)
    return buffer.getvalue()


SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def parse_cue_blocks(text: str, time_pattern: str, numbered: bool) -> list[Cue]:
    """A strict parser: every block is [number,] 'start --> end', one text line."""
    assert text.endswith("\n\n") or text == ""
    cues = []
    for i, block in enumerate(text.split("\n\n")[:-1], start=1):
        lines = block.split("\n")
        if numbered:
            assert lines.pop(0) == str(i)
        match = re.fullmatch(f"{time_pattern} --> {time_pattern}", lines[0])
        assert match, lines[0]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        assert len(lines) == 2 and lines[1], lines
        cues.append(Cue(((h1 * 60 + m1) * 60 + s1) * 1000 + ms1, ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2, lines[1]))
    return cues


def test_srt_numbering_times_and_text():
    transcript = sample_transcript()
    output = OutputConfig(max_cue_ms=1000, max_cue_chars=40)  # splits the first two sentences
    text = write("srt", transcript, output)
    assert text.startswith("1\n00:00:00,500 --> ")
    cues = parse_cue_blocks(text, SRT_TIME, numbered=True)
    assert cues == build_cues(transcript.sentences, output)
    assert len(cues) > len(transcript.sentences)
    check_cues(cues, output, duration_ms=7250)


def test_vtt_header_and_dotted_millis():
    transcript = sample_transcript()
    text = write("vtt", transcript)
    assert text.startswith("WEBVTT\n\n")
    assert "," not in text.split("\n")[2]  # 00:00:00.500 --> ..., never a comma in the time line
    cues = parse_cue_blocks(text[len("WEBVTT\n\n"):], VTT_TIME, numbered=False)
    assert cues == build_cues(transcript.sentences, OutputConfig())
    assert cues[0] == Cue(500, 2300, "今天天，气很好。")
    assert cues[-1].text == "带 制表符 和换行"


def test_tsv_header_and_one_escaped_row_per_sentence():
    transcript = sample_transcript()
    lines = write("tsv", transcript).split("\n")
    assert lines[0] == "start_ms\tend_ms\ttext" and lines[-1] == ""
    rows = [line.split("\t") for line in lines[1:-1]]
    assert rows == [
        [str(s.start_ms), str(s.end_ms), s.text.replace("\t", " ").replace("\n", " ")]
        for s in transcript.sentences
    ]
    assert rows[2][2] == "带 制表符 和换行"
    # and a CSV reader in tab mode agrees
    parsed = list(csv.reader(io.StringIO(write("tsv", transcript)), delimiter="\t"))
    assert [len(r) for r in parsed] == [3] * 4


def test_tsv_escapes_carriage_returns():
    transcript = Transcript("a", (Sentence("一\r二", 0, 100),), (), 1.0)
    lines = write("tsv", transcript).splitlines()  # splitlines breaks at \r too
    assert lines == ["start_ms\tend_ms\ttext", "0\t100\t一 二"]


def test_txt_one_sentence_per_line():
    transcript = sample_transcript()
    assert write("txt", transcript).split("\n") == [
        "今天天，气很好。", "我们去公园？", "带 制表符 和换行", ""
    ]


def test_json_round_trips_to_an_equal_transcript():
    transcript = sample_transcript()
    data = json.loads(write("json", transcript))
    assert data["rtf"] == pytest.approx(0.4 / 7.25, abs=1e-5)
    assert set(data) >= {"text", "sentences", "segments", "timings", "duration_s"}
    assert data["sentences"][0]["tokens"][2] == {"text": "天", "start_ms": 1100, "end_ms": 1400, "mark": "，"}
    assert Transcript.from_dict(data) == transcript


def test_empty_transcript_gives_valid_empty_files():
    empty = empty_transcript()
    assert write("srt", empty) == ""
    assert write("vtt", empty) == "WEBVTT\n\n"
    assert write("txt", empty) == ""
    assert write("tsv", empty) == "start_ms\tend_ms\ttext\n"
    assert Transcript.from_dict(json.loads(write("json", empty))) == empty


def test_writer_registry():
    assert set(WRITERS) == {"txt", "srt", "vtt", "json", "tsv"}
    assert all(name == w.extension for name, w in WRITERS.items())
    assert set(VAD_WRITERS) == {"txt", "json", "csv"}


# ---- VAD writers --------------------------------------------------------------------------


VAD_RESULT = VadResult(
    segments=(SpeechSegment(500, 2000), SpeechSegment(4500, 7250), SpeechSegment(61_000, 3_661_001)),
    duration_s=3700.0,
    timings=StageTimings(vad_s=1.5, total_s=2.0),
)


def write_vad(fmt: str, result: VadResult) -> str:
    buffer = io.StringIO()
    VAD_WRITERS[fmt].write(result, buffer)
    return buffer.getvalue()


def test_vad_csv():
    rows = list(csv.reader(io.StringIO(write_vad("csv", VAD_RESULT))))
    assert rows == [
        ["index", "start_ms", "end_ms", "duration_ms", "start", "end"],
        ["1", "500", "2000", "1500", "00:00:00.500", "00:00:02.000"],
        ["2", "4500", "7250", "2750", "00:00:04.500", "00:00:07.250"],
        ["3", "61000", "3661001", "3600001", "00:01:01.000", "01:01:01.001"],
    ]


def test_vad_json():
    data = json.loads(write_vad("json", VAD_RESULT))
    assert data["duration_s"] == 3700.0
    assert data["segments"] == [
        {"index": 1, "start_ms": 500, "end_ms": 2000, "duration_ms": 1500},
        {"index": 2, "start_ms": 4500, "end_ms": 7250, "duration_ms": 2750},
        {"index": 3, "start_ms": 61_000, "end_ms": 3_661_001, "duration_ms": 3_600_001},
    ]
    assert data["timings"]["vad_s"] == 1.5


def test_vad_txt_is_a_table():
    lines = write_vad("txt", VAD_RESULT).splitlines()
    assert lines[0].split() == ["#", "start", "end", "duration"]
    assert [line.split() for line in lines[1:]] == [
        ["1", "00:00:00.500", "00:00:02.000", "1.500s"],
        ["2", "00:00:04.500", "00:00:07.250", "2.750s"],
        ["3", "00:01:01.000", "01:01:01.001", "3600.001s"],
    ]
    # columns line up: every row is as wide as the header
    assert len({len(line) for line in lines[:3]}) == 1


def test_vad_writers_without_segments():
    nothing = VadResult(segments=(), duration_s=5.0)
    assert write_vad("csv", nothing) == "index,start_ms,end_ms,duration_ms,start,end\n"
    assert json.loads(write_vad("json", nothing))["segments"] == []
    assert len(write_vad("txt", nothing).splitlines()) == 1


# ---- parse_formats ------------------------------------------------------------------------


def test_parse_formats():
    assert parse_formats("srt, TXT", WRITERS) == ["srt", "txt"]
    assert parse_formats("srt,txt,srt, srt ,json", WRITERS) == ["srt", "txt", "json"]
    assert parse_formats(["VTT", "tsv"], WRITERS) == ["vtt", "tsv"]
    assert parse_formats("csv", VAD_WRITERS) == ["csv"]


@pytest.mark.parametrize(
    ("spec", "registry", "named"),
    [
        ("srt,bogus", WRITERS, "bogus"),
        ("docx", WRITERS, "docx"),
        ("srt", VAD_WRITERS, "srt"),  # a transcript format is not a VAD format
        ("", WRITERS, "no output format"),
        (" , ", WRITERS, "no output format"),
        ([], VAD_WRITERS, "no output format"),
    ],
)
def test_parse_formats_rejects_with_the_allowed_list(spec, registry, named):
    with pytest.raises(ValueError) as info:
        parse_formats(spec, registry)
    message = str(info.value)
    assert named in message
    assert all(name in message for name in registry), message


# ---- a real transcript ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "output", [OutputConfig(), OutputConfig(max_cue_ms=1500, max_cue_chars=6)], ids=["default", "tight"]
)
def test_cues_of_a_real_transcript_keep_the_invariants(pipeline, speech_wav, output):
    transcript = pipeline.transcribe(speech_wav)
    tokens = [t for s in transcript.sentences for t in s.tokens]
    assert transcript.sentences and tokens
    cues = build_cues(transcript.sentences, output)
    # the random-weight model also emits English "words" (e.g. 6 letters and a comma): a single
    # token is never split, so only such a cue may be over the character limit
    unsplittable = {tokens_text([t]) for t in tokens}
    check_cues(cues, output, duration_ms=transcript.duration_s * 1000, unsplittable=unsplittable)
    assert cues[0].start_ms >= transcript.segments[0].start_ms
    # every recognised character is in exactly one cue, in order
    assert "".join(c.text for c in cues).replace(" ", "") == "".join(
        s.text for s in transcript.sentences
    ).replace(" ", "")
    if output.max_cue_chars < 40:
        assert len(cues) > len(transcript.sentences)  # the tight limits really split sentences
    # the subtitle files written from it parse back to the same cues
    assert parse_cue_blocks(write("srt", transcript, output), SRT_TIME, numbered=True) == cues


# ---- speakers ---------------------------------------------------------------------------------


def meeting_transcript() -> Transcript:
    """Three sentences, two speakers: A, B, then B again (one turn of two sentences)."""
    from dataclasses import replace

    a = replace(timed_sentence("今天天气很好", 0, 1800, {5: "。"}), speaker=0)
    b1 = replace(timed_sentence("我们去公园", 2000, 3500, {4: "？"}), speaker=1)
    b2 = replace(timed_sentence("好不好", 3600, 4500, {2: "。"}), speaker=1)
    return Transcript(text=a.text + b1.text + b2.text, sentences=(a, b1, b2), segments=(SpeechSegment(0, 4500),),
                      duration_s=5.0, speakers=("Speaker 1", "说话人 <2>\n"))


def test_srt_and_vtt_cues_name_their_speaker():
    transcript = meeting_transcript()
    srt = write("srt", transcript)
    texts = [block.split("\n")[2] for block in srt.strip().split("\n\n")]
    assert texts == ["Speaker 1: 今天天气很好。", "说话人 2: 我们去公园？", "说话人 2: 好不好。"]  # no <, > or line break
    vtt = write("vtt", transcript)
    cue_lines = [block.split("\n")[1] for block in vtt.strip().split("\n\n")[1:]]
    assert cue_lines == ["<v Speaker 1>今天天气很好。", "<v 说话人 2>我们去公园？", "<v 说话人 2>好不好。"]
    # the strict parsers still accept them: one text line per cue, monotonic times
    parse_cue_blocks(srt, SRT_TIME, numbered=True)


def test_txt_is_grouped_by_speaker_turns():
    assert write("txt", meeting_transcript()) == "Speaker 1: 今天天气很好。\n\n说话人 2: 我们去公园？好不好。\n"


def test_tsv_and_json_carry_the_speaker():
    transcript = meeting_transcript()
    rows = list(csv.reader(io.StringIO(write("tsv", transcript)), delimiter="\t"))
    assert rows[0] == ["start_ms", "end_ms", "speaker", "text"]
    assert [r[2] for r in rows[1:]] == ["Speaker 1", "说话人 2", "说话人 2"]
    data = json.loads(write("json", transcript))
    assert [s["speaker"] for s in data["sentences"]] == [0, 1, 1]
    assert data["speakers"] == ["Speaker 1", "说话人 <2>\n"]
    assert Transcript.from_dict(data) == transcript  # the job history round-trips it


def test_without_speakers_the_formats_are_unchanged():
    transcript = sample_transcript()
    assert list(csv.reader(io.StringIO(write("tsv", transcript)), delimiter="\t"))[0] == ["start_ms", "end_ms", "text"]
    assert ":" not in write("srt", transcript).split("\n")[2]
    assert "<v " not in write("vtt", transcript)
