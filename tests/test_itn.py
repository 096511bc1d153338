"""Inverse text normalisation (asr/core/itn.py) with the real FSTs: the 51 cases, token times, transcripts."""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import sys
import threading
from dataclasses import fields, replace

import kaldifst
import pytest

from asr.core.itn import DEFAULT_FST_DIR, InverseNormalizer, normalize_transcript, stock_fst_dir
from asr.core.sentences import join_words, tokens_text
from asr.types import Sentence, SpeechSegment, TimedToken, Transcript
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from itn_compare import read_cases

CASES = read_cases(REPO / "tests" / "data" / "itn_cases.tsv")
#: Measured with the FSTs in asr/core/itn_fst (docs/ITN.md); wetext 0.1.8's own FSTs get 31.
HOUSE_EXACT = 51
STOCK_EXACT = 31


@pytest.fixture(scope="module")
def itn() -> InverseNormalizer:
    return InverseNormalizer()


def timed(chars, start_ms: int = 0, step_ms: int = 100, marks: dict[int, str] | None = None) -> Sentence:
    """A sentence of one token per item of ``chars``, each ``step_ms`` long; ``marks`` maps index -> mark."""
    marks = marks or {}
    tokens = tuple(TimedToken(text, start_ms + i * step_ms, start_ms + (i + 1) * step_ms, marks.get(i, ""))
                   for i, text in enumerate(chars))
    return Sentence(tokens_text(tokens), tokens[0].start_ms, tokens[-1].end_ms, tokens)


def spans(sentence: Sentence) -> list[tuple[str, int, int, str]]:
    return [(t.text, t.start_ms, t.end_ms, t.mark) for t in sentence.tokens]


# ---- the test set ---------------------------------------------------------------------------


def test_the_51_cases_reach_the_measured_accuracy(itn):
    per_kind = collections.Counter(kind for kind, spoken, written in CASES if itn.text(spoken) == written)
    misses = [(spoken, itn.text(spoken), written) for _, spoken, written in CASES if itn.text(spoken) != written]
    print("exact per kind:", dict(per_kind), "misses:", misses)
    assert len(CASES) == 51
    assert sum(per_kind.values()) >= HOUSE_EXACT, misses


@pytest.mark.parametrize("spoken", [spoken for kind, spoken, _ in CASES if kind == "keep"])
def test_phrases_that_are_not_numbers_stay_unchanged(itn, spoken):
    assert itn.text(spoken) == spoken


@pytest.mark.parametrize(("spoken", "written"), [
    ("一百二十三", "123"), ("百分之五", "5%"), ("二零二四年三月", "2024年3月"),  # the issue's examples
])
def test_the_issue_examples(itn, spoken, written):
    assert itn.text(spoken) == written


def test_wetext_stock_fsts_are_the_baseline_in_their_own_style():
    stock = InverseNormalizer(stock_fst_dir())
    exact = sum(stock.text(spoken) == written for _, spoken, written in CASES)
    assert exact == STOCK_EXACT
    assert stock.text("二零二四年三月") == "2024/03"  # WeTextProcessing's style, which ours replaces


def test_the_shipped_fsts_are_the_ones_the_build_script_records():
    recorded = dict(re.findall(r"(\w+\.fst)\s+\d+ bytes\s+sha256 ([0-9a-f]{64})",
                               (REPO / "scripts" / "build_itn_fst.py").read_text(encoding="utf-8")))
    assert set(recorded) == {"tagger.fst", "verbalizer.fst"}
    for name, digest in recorded.items():
        assert hashlib.sha256((DEFAULT_FST_DIR / name).read_bytes()).hexdigest() == digest, name
    assert sum((DEFAULT_FST_DIR / name).stat().st_size for name in recorded) < 8 * 2**20


def test_a_missing_fst_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tagger.fst"):
        InverseNormalizer(tmp_path)


# ---- plain text -----------------------------------------------------------------------------


def _fst_only(text: str) -> str:
    """The FSTs alone, as wetext runs them, without InverseNormalizer's shortcuts."""
    from wetext.token_parser import TokenParser

    tagger = kaldifst.TextNormalizer(str(DEFAULT_FST_DIR / "tagger.fst"))
    verbalizer = kaldifst.TextNormalizer(str(DEFAULT_FST_DIR / "verbalizer.fst"))
    return verbalizer(TokenParser("zh", "itn").reorder(tagger(text).strip())).strip()


@pytest.mark.parametrize("text", ["今天天气很好，我们去公园散步吧。", "hello world", "OK，没问题！", "星期天见"])
def test_text_without_a_numeral_is_what_the_fst_would_give(itn, text):
    """InverseNormalizer skips the FST when there is no Chinese numeral: the FST agrees."""
    assert itn.text(text) == _fst_only(text) == text


def test_no_rule_fires_without_a_numeral():
    """The shortcut's premise, on the test set: with its Chinese numerals taken out, every case
    (百分之, 第, 点, 年, 月, 元, 公斤 ... left) comes out of the FSTs as it went in."""
    from asr.core.itn import _NUMERALS

    for _, spoken, _ in CASES:
        rest = "".join(char for char in spoken if char not in _NUMERALS)
        if rest:
            assert _fst_only(rest) == rest


def test_quotes_and_backslashes_come_through_unescaped(itn):
    assert _fst_only('他说"一百"') == '他说\\"100\\"'  # what the FSTs alone write
    assert itn.text('他说"一百"') == '他说"100"'
    assert itn.text("a\\b一百") == "a\\b100"


def test_surrounding_whitespace_is_kept(itn):
    assert itn.text("  一百二十三\n") == "  123\n"
    assert itn.text("") == ""


def test_english_and_unknown_tokens_pass_through(itn):
    assert itn.text("我用python写了一百行<unk>代码") == "我用python写了100行<unk>代码"


def test_one_instance_serves_many_threads(itn):
    texts = [spoken for _, spoken, _ in CASES]
    expected = [itn.text(t) for t in texts]
    results: list[list[str]] = []

    def work():
        results.append([itn.text(t) for t in texts])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


# ---- sentences and their token times --------------------------------------------------------


def test_a_spoken_number_becomes_one_token_spanning_its_characters(itn):
    sentence = timed(["我", "有", *"一百二十三", "个"], marks={7: "。"})
    out = itn.sentence(sentence)
    assert out.text == "我有123个。"
    assert spans(out) == [("我", 0, 100, ""), ("有", 100, 200, ""), ("123", 200, 700, ""), ("个", 700, 800, "。")]
    assert out.tokens[0] is sentence.tokens[0] and out.tokens[-1] is sentence.tokens[-1]
    assert (out.start_ms, out.end_ms) == (sentence.start_ms, sentence.end_ms)


def test_the_issue_example_alone_spans_0_to_500(itn):
    out = itn.sentence(timed("一百二十三"))
    assert spans(out) == [("123", 0, 500, "")]


def test_a_mark_after_a_number_stays_on_its_token(itn):
    out = itn.sentence(timed("一百二十三四百五十六", marks={4: "，", 9: "。"}))
    assert out.text == "123，456。"
    assert spans(out) == [("123", 0, 500, "，"), ("456", 500, 1000, "。")]


def test_a_date_keeps_its_unchanged_characters_as_their_own_tokens(itn):
    out = itn.sentence(timed("二零二四年三月", marks={6: "，"}))
    assert out.text == "2024年3月，"
    assert spans(out) == [("2024", 0, 400, ""), ("年", 400, 500, ""), ("3", 500, 600, ""), ("月", 600, 700, "，")]


def test_english_words_keep_their_tokens_and_spacing(itn):
    sentence = timed(["OK", "两", "百", "个", "apps"], marks={0: ","})
    out = itn.sentence(sentence)
    assert out.text == tokens_text(out.tokens) == "OK, 200个apps"
    assert out.tokens[0] is sentence.tokens[0] and out.tokens[-1] is sentence.tokens[-1]
    assert spans(out)[1] == ("200", 100, 300, "")


def test_a_sentence_itn_leaves_alone_comes_back_identical(itn):
    sentence = timed("一些人不同意", marks={5: "。"})
    out = itn.sentence(sentence)
    assert out == sentence and out.tokens == sentence.tokens


def test_words_the_fst_drops_give_their_time_to_the_token_before():
    """wetext's stock FSTs write 两千五百万人民币 as CNY2500万: 人民币 vanishes into the 万 token."""
    out = InverseNormalizer(stock_fst_dir()).sentence(timed("两千五百万人民币", marks={7: "。"}))
    assert out.text == "CNY2500万。"
    assert spans(out) == [("CNY2500", 0, 400, ""), ("万", 400, 800, "。")]


def test_an_untimed_sentence_gets_text_itn(itn):
    sentence = Sentence("会议定在五月二十号", 1000, 3000)
    assert itn.sentence(sentence) == Sentence("会议定在5月20号", 1000, 3000)


def test_other_fields_of_a_sentence_survive(itn):
    if "speaker" not in {f.name for f in fields(Sentence)}:
        pytest.skip("Sentence has no speaker field yet")
    out = itn.sentence(replace(timed("三十五个"), speaker=1))
    assert out.speaker == 1 and out.text == "35个"


def test_an_fst_error_keeps_the_sentence_and_warns(itn, caplog):
    """A lone surrogate cannot cross into the FST library (a TypeError there): the sentence stays."""
    sentence = timed(["一", "百", "\ud800"])
    with caplog.at_level(logging.WARNING, logger="asr.core.itn"):
        assert itn.sentence(sentence) is sentence
    assert "ITN failed" in caplog.text


# ---- transcripts ----------------------------------------------------------------------------


def _transcript(sentences, text=None) -> Transcript:
    text = join_words([s.text for s in sentences]) if text is None else text
    return Transcript(text=text, sentences=tuple(sentences), segments=(SpeechSegment(0, 5000),), duration_s=5.0)


def test_normalize_transcript_keeps_sentences_and_rebuilds_the_text(itn):
    sentences = [timed("我有一百二十三个", marks={7: "。"}), timed("一些人不同意", 800, marks={5: "？"}),
                 Sentence("百分之五", 1500, 2000)]
    out = normalize_transcript(_transcript(sentences), itn)
    assert len(out.sentences) == 3
    assert [(s.start_ms, s.end_ms) for s in out.sentences] == [(s.start_ms, s.end_ms) for s in sentences]
    assert [s.text for s in out.sentences] == ["我有123个。", "一些人不同意？", "5%"]
    assert out.text == "".join(s.text for s in out.sentences) == "我有123个。一些人不同意？5%"
    assert out.segments == (SpeechSegment(0, 5000),) and out.duration_s == 5.0


def test_the_transcript_text_follows_its_sentences_spacing(itn):
    """Rebuilt from the sentences, the text has their spacing (a number after an English word is
    spaced, as join_words spaces it), not the plain ITN of the old text (hello5%)."""
    out = normalize_transcript(_transcript([timed(["hello", *"百分之五"])]), itn)
    assert out.sentences[0].text == out.text == "hello 5%"
    assert itn.text("hello百分之五") == "hello5%"


def test_a_transcript_text_that_is_not_the_sentences_joined_gets_its_own_itn(itn):
    sentences = [timed("三十五个")]
    out = normalize_transcript(_transcript(sentences, text="三十五 个"), itn)
    assert out.sentences[0].text == "35个"
    assert out.text == "35 个"


def test_a_long_text_reaches_the_fst_one_clause_at_a_time():
    """The FST's time grows faster than its input (a 10 000-character transcript took 9 s whole): a
    transcript's text, which ITN gets in one piece when it is not its sentences joined, is cut first."""
    normalizer = InverseNormalizer()
    seen: list[str] = []
    tagger = normalizer._tagger
    normalizer._tagger = lambda text: seen.append(text) or tagger(text)
    clauses = ["他买了一百二十五元的书", "二零二四年三月", "百分之五", "今天三点"] * 50
    text = "".join(c + mark for c, mark in zip(clauses, "，。？、；！" * 40))
    written = normalizer.text(text)
    assert written.startswith("他买了125元的书，2024年3月。5%？")
    assert max(len(piece) for piece in seen) == max(len(c) for c in clauses)
    assert written == "".join(normalizer.text(c) + mark for c, mark in zip(clauses, "，。？、；！" * 40))
