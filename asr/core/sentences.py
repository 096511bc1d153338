"""Sentences with per-token timestamps, from recognised segments and punctuation marks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from asr.types import Punctuation, RecognizedSegment, Sentence, SpeechSegment, TimedToken

logger = logging.getLogger(__name__)

#: Marks that end a sentence; commas and enumeration commas only pause it.
SENTENCE_ENDS = frozenset({"。", "？", "！", ".", "?", "!"})
_ASCII_MARK = {"，": ",", "。": ".", "？": "?", "、": ",", "！": "!"}


def _is_ascii_word(word: str) -> bool:
    return bool(word) and word[0].isascii() and word[0].isalnum()


def join_words(words: Sequence[str]) -> str:
    """Readable text: Chinese characters run together, English words are spaced."""
    text = ""
    for word in words:
        if text and _is_ascii_word(word) and text[-1].isascii() and (text[-1].isalnum() or text[-1] in ",.?!"):
            text += " "
        text += word
    return text


def _segment_tokens(segment: SpeechSegment, result: RecognizedSegment) -> list[TimedToken]:
    """Tokens on the audio's timeline. FunASR's last stamp can overrun the segment by part of a
    60 ms frame; clamping keeps every token inside the speech VAD found."""
    tokens = []
    for word, (start, end) in zip(result.words, result.timestamps):
        start = min(segment.start_ms + start, segment.end_ms)
        tokens.append(TimedToken(word, start, max(start, min(segment.start_ms + end, segment.end_ms))))
    return tokens


def _timed_tokens(recognized: Sequence[tuple[SpeechSegment, RecognizedSegment]]) -> list[TimedToken]:
    return [token for segment, result in recognized for token in _segment_tokens(segment, result)]


def _sentence(tokens: list[TimedToken], text: str) -> Sentence:
    return Sentence(text=text, start_ms=tokens[0].start_ms, end_ms=tokens[-1].end_ms, tokens=tuple(tokens))


def per_segment_sentences(recognized: Sequence[tuple[SpeechSegment, RecognizedSegment]]) -> list[Sentence]:
    """One sentence per speech segment: what we can say without punctuation."""
    sentences = []
    for segment, result in recognized:
        if not result.words:
            continue
        tokens = _segment_tokens(segment, result)
        if len(tokens) != len(result.words):  # no usable stamps: the segment's own span
            sentences.append(Sentence(join_words(result.words), segment.start_ms, segment.end_ms))
        else:
            sentences.append(_sentence(tokens, join_words(result.words)))
    return sentences


def build_sentences(
    recognized: Sequence[tuple[SpeechSegment, RecognizedSegment]],
    punctuation: Punctuation | None,
) -> list[Sentence]:
    """Split the punctuated text into sentences at 。？ with each token's time.

    Falls back to one sentence per segment when there is no punctuation or when its marks
    cannot be matched to the recognised words (FunASR does the same).
    """
    tokens = _timed_tokens(recognized)
    word_count = sum(len(r.words) for _, r in recognized)
    if punctuation is None or not punctuation.marks:
        return per_segment_sentences(recognized)
    if len(punctuation.marks) != len(tokens) or len(tokens) != word_count:
        logger.warning(
            "punctuation marks (%d) do not match recognised words (%d, %d timed); "
            "falling back to one sentence per segment",
            len(punctuation.marks), word_count, len(tokens),
        )
        return per_segment_sentences(recognized)
    sentences: list[Sentence] = []
    current: list[TimedToken] = []
    for token, mark_id in zip(tokens, punctuation.marks):
        label = punctuation.labels[mark_id] if 0 <= mark_id < len(punctuation.labels) else "_"
        if label in ("_", "<unk>"):
            current.append(token)
            continue
        mark = _ASCII_MARK.get(label, label) if _is_ascii_word(token.text) else label
        current.append(replace(token, mark=mark))
        if label in SENTENCE_ENDS:
            sentences.append(_sentence(current, tokens_text(current)))
            current = []
    if current:
        sentences.append(_sentence(current, tokens_text(current)))
    return sentences


def tokens_text(tokens: Sequence[TimedToken]) -> str:
    """The text of a run of tokens, with their punctuation."""
    pieces: list[str] = []
    for token in tokens:
        pieces.append(token.text)
        if token.mark:
            pieces.append(token.mark)
    return join_words(pieces)
