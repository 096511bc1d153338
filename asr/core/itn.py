"""Inverse text normalisation: numbers, dates, times, money and measures written as digits.

Paraformer writes what was said: 二零二四年三月, 一百二十五元, 百分之五. ITN turns that into the written
form, 2024年3月, 125元, 5%, with the FSTs in ``asr/core/itn_fst/`` (WeTextProcessing's Chinese grammar in
this project's house style, compiled by ``scripts/build_itn_fst.py``) run by ``kaldifst``, the runtime of
the ``wetext`` package; docs/ITN.md has the choice and the measurements.

It runs per sentence after timestamps: a run of spoken tokens that becomes digits becomes one token that
spans from the first spoken token's start to the last one's end, so SRT cues and character timestamps
stay right. Tokens the FST leaves alone keep their own times, and every punctuation mark stays on the
token it followed.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from asr.core.sentences import join_words, tokens_text
from asr.types import Sentence, TimedToken, Transcript

logger = logging.getLogger(__name__)

#: The FSTs this project ships: WeTextProcessing's grammar in the house style (docs/ITN.md).
DEFAULT_FST_DIR = Path(__file__).resolve().parent / "itn_fst"

#: Every rule of the grammar rewrites a Chinese numeral (the whitelist and the fallback rule write
#: their input unchanged), so a text without one is left as it is without running the FST.
_NUMERALS = frozenset("零〇洞幺一壹二两贰三叁四肆五伍六陆七柒拐八捌九玖十拾百佰千仟万亿兆")
#: The text is cut at these and they never reach the FST: the tagger escapes quotes and backslashes
#: and the verbalizer does not undo it (wetext writes 他说\"100\"); and at the marks that end a sentence
#: or a clause, which no number, date or measure spans, because the FST's time grows faster than its
#: input: a 10 000-character transcript took 9 s in one piece, and well under a second cut up.
_CUT_AT = re.compile(r'(["\\]|[。！？；，、!?;,\n]+)')


class InverseNormalizer:
    """Chinese ITN with a tagger and a verbalizer FST, loaded once and reused.

    Loading takes a few tenths of a second (most of it importing ``wetext``, which loads its own FSTs
    too); a sentence then takes about 0.4 ms per character. Thread-safe: calls into the FSTs are
    serialised by a lock, so one instance can serve every worker.
    """

    def __init__(self, fst_dir: Path | None = None):
        """``fst_dir`` holds ``tagger.fst`` and ``verbalizer.fst``: by default the project's own
        (``asr/core/itn_fst``); ``stock_fst_dir()`` gives wetext's, in WeTextProcessing's style."""
        import kaldifst
        from wetext.token_parser import TokenParser

        self.fst_dir = Path(fst_dir) if fst_dir is not None else DEFAULT_FST_DIR
        paths = [self.fst_dir / "tagger.fst", self.fst_dir / "verbalizer.fst"]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"ITN FST not found: {path}")
        self._tagger = kaldifst.TextNormalizer(str(paths[0]))
        self._verbalizer = kaldifst.TextNormalizer(str(paths[1]))
        self._token_parser = TokenParser
        self._lock = threading.Lock()

    # ---- plain text -------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """The written form of ``text``. Leading and trailing whitespace is kept; text without a
        Chinese numeral comes back unchanged. Raises RuntimeError when the FSTs find no output."""
        pieces = _CUT_AT.split(text)
        return "".join(piece if i % 2 else self._run(piece) for i, piece in enumerate(pieces))

    def _run(self, text: str) -> str:
        body = text.strip()
        if not body or not any(char in _NUMERALS for char in body):
            return text
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
        with self._lock:
            tagged = self._tagger(body).strip()
            if not tagged:
                raise RuntimeError(f"the ITN tagger found no path for {body!r}")
            written = self._verbalizer(self._token_parser("zh", "itn").reorder(tagged)).strip()
        if not written:
            raise RuntimeError(f"the ITN verbalizer found no path for {tagged!r}")
        return lead + written + trail

    # ---- sentences --------------------------------------------------------------------------

    def sentence(self, sentence: Sentence) -> Sentence:
        """The sentence with ITN applied to its text and tokens; ``start_ms``/``end_ms`` and any other
        field are unchanged. On an error from the FSTs the sentence comes back as it was (logged)."""
        try:
            if not sentence.tokens:
                written = self.text(sentence.text)
                return sentence if written == sentence.text else replace(sentence, text=written)
            return self._timed(sentence)
        except Exception as e:  # noqa: BLE001 - a library error must not cost the transcript
            logger.warning("ITN failed on a sentence at %d ms; kept as recognised: %s", sentence.start_ms, e)
            return sentence

    def _timed(self, sentence: Sentence) -> Sentence:
        source = tokens_text(sentence.tokens)
        written = self.text(source)
        if written == source:
            tokens = sentence.tokens
        else:
            tokens = align_tokens(sentence.tokens, source, written)
        if sentence.text == source:
            # as sentences.py builds it: the text is its tokens' text
            text = tokens_text(tokens)
        else:
            text = self.text(sentence.text)
        if text == sentence.text and tokens == sentence.tokens:
            return sentence
        return replace(sentence, text=text, tokens=tuple(tokens))


def stock_fst_dir() -> Path:
    """wetext's own Chinese ITN FSTs (WeTextProcessing's style: 2024/03, ¥125, 30kg), for comparison."""
    from importlib.resources import files

    return Path(str(files("wetext.fsts").joinpath("zh/itn")))


# ---- token alignment ------------------------------------------------------------------------

_TEXT, _MARK, _SPACE = "text", "mark", "space"


def _label(tokens: Sequence[TimedToken], source: str) -> list[tuple[int, str]]:
    """(token index, kind) for every character of ``source == tokens_text(tokens)``: a character of
    the token's text, of the mark after it, or a space ``join_words`` put before it."""
    labels: list[tuple[int, str]] = []
    for index, token in enumerate(tokens):
        for piece, kind in ((token.text, _TEXT), (token.mark, _MARK)):
            if not piece:
                continue
            while not source.startswith(piece, len(labels)) and source[len(labels)] == " ":
                labels.append((index, _SPACE))
            if not source.startswith(piece, len(labels)):
                raise ValueError("the tokens do not spell the sentence's text")
            labels.extend((index, kind) for _ in piece)
    if len(labels) != len(source):
        raise ValueError("the tokens do not spell the sentence's text")
    return labels


def align_tokens(tokens: Sequence[TimedToken], source: str, written: str) -> list[TimedToken]:
    """The tokens of ``written``, the ITN of ``source == tokens_text(tokens)``.

    The two strings are aligned character by character (difflib). Tokens whose characters all come
    through unchanged are kept as they are. Each run of tokens touched by a change becomes one token:
    its text is what the run became, its start the first token's start, its end the last one's end,
    its mark the last token's mark (when that mark came through as the run's last characters)."""
    labels = _label(tokens, source)
    opcodes = difflib.SequenceMatcher(None, source, written, autojunk=False).get_opcodes()

    def touched(i1: int, i2: int) -> tuple[int, int]:
        """The first and last token a change of source[i1:i2] touches."""
        if i1 < i2:
            return labels[i1][0], labels[i2 - 1][0]
        if i1 == len(source) or (i1 > 0 and labels[i1 - 1][1] == _TEXT):
            return labels[i1 - 1][0], labels[i1 - 1][0]  # inserted right after a token's text
        return labels[i1][0], labels[i1][0]

    # 1. runs of tokens: each change makes its tokens one run; untouched tokens are runs of their own
    spans = sorted(touched(i1, i2) for tag, i1, i2, _, _ in opcodes if tag != "equal")
    runs: list[_Run] = []
    for low, high in spans:
        if runs and low <= runs[-1].last:
            runs[-1].last = max(runs[-1].last, high)
        else:
            runs.append(_Run(low, high, changed=True))
    for index in set(range(len(tokens))) - {i for run in runs for i in range(run.first, run.last + 1)}:
        runs.append(_Run(index, index, changed=False))
    runs.sort(key=lambda run: run.first)
    run_of = {i: run for run in runs for i in range(run.first, run.last + 1)}

    # 2. every written character goes to its run, with the source token and kind it came from
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            for c, char in zip(range(i1, i2), written[j1:j2]):
                run_of[labels[c][0]].chars.append((char, labels[c][0], labels[c][1]))
        else:
            run_of[touched(i1, i2)[0]].chars.extend((char, -1, _TEXT) for char in written[j1:j2])

    # 3. a changed run whose words all vanished (the FST dropped them) joins the run before it
    merged: list[_Run] = []
    for run in runs:
        if merged and (run.empty() or merged[-1].empty()):
            merged[-1] = merged[-1].join(run)
        else:
            merged.append(run)
    return [token for run in merged for token in run.tokens(tokens)]


class _Run:
    """Tokens first..last of a sentence and the written characters that came from them."""

    def __init__(self, first: int, last: int, changed: bool):
        self.first, self.last, self.changed = first, last, changed
        self.chars: list[tuple[str, int, str]] = []  # (character, source token or -1, kind)

    def empty(self) -> bool:
        return self.changed and not any(kind == _TEXT for _, _, kind in self.chars)

    def join(self, other: _Run) -> _Run:
        run = _Run(self.first, other.last, changed=True)
        run.chars = self.chars + other.chars
        return run

    def tokens(self, tokens: Sequence[TimedToken]) -> list[TimedToken]:
        if not self.changed:
            return list(tokens[self.first : self.last + 1])
        chars = list(self.chars)
        mark: list[str] = []
        while chars and chars[-1][2] == _MARK and chars[-1][1] == self.last:
            mark.insert(0, chars.pop()[0])
        while chars and chars[0][2] == _SPACE:  # the space join_words put before the run
            chars.pop(0)
        text = "".join(char for char, _, _ in chars)
        return [replace(tokens[self.first], text=text, end_ms=tokens[self.last].end_ms, mark="".join(mark))]


# ---- transcripts ----------------------------------------------------------------------------


def normalize_transcript(transcript: Transcript, itn: InverseNormalizer) -> Transcript:
    """ITN on every sentence (times kept, see ``InverseNormalizer.sentence``) and on the full text.

    When the text is the sentences' texts joined (as the pipeline builds it without punctuation, and
    with it as long as the marks matched the words), it is rebuilt from the new sentences, so the two
    stay the same words; otherwise the text gets the same ITN on its own."""
    sentences = tuple(itn.sentence(s) for s in transcript.sentences)
    if transcript.text == join_words([s.text for s in transcript.sentences]):
        text = join_words([s.text for s in sentences])
    else:
        try:
            text = itn.text(transcript.text)
        except Exception as e:  # noqa: BLE001 - as in sentence()
            logger.warning("ITN failed on the transcript's text; kept as recognised: %s", e)
            text = transcript.text
    return replace(transcript, text=text, sentences=sentences)
