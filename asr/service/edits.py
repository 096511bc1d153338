"""A user's corrections to a finished transcript: a sentence's text or speaker, the speakers' names.

The recognised transcript is never changed: ``apply_edits`` makes a new Transcript, which the job
keeps beside the original (asr.service.jobs). Every check raises EditError with a message that
names the sentence or speaker, so the UI and the API say the same about the same bad edit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from asr.core.sentences import join_words
from asr.errors import EditError
from asr.types import Sentence, Transcript

#: Longest text of one edited sentence: a sentence, not a document pasted into one.
MAX_TEXT_CHARS = 2000
#: Longest speaker name: it heads every subtitle cue.
MAX_NAME_CHARS = 40
#: Line and paragraph separators break a subtitle line as a control character does.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


@dataclass(frozen=True)
class SentenceEdit:
    """One sentence's change; None leaves that part as it is."""

    index: int
    """0-based position of the sentence in the transcript."""
    text: str | None = None
    speaker: int | None = None
    """A speaker id of the transcript, or the next one (``len(speakers)``) to add a speaker."""


def apply_edits(
    transcript: Transcript,
    edits: Sequence[SentenceEdit],
    speaker_names: Sequence[str] | None,
    default_name: Callable[[int], str],
) -> Transcript:
    """``transcript`` with the edits applied; raises EditError, changing nothing, if one is bad.

    ``speaker_names[i]`` renames speaker i; ``default_name(i)`` names a speaker an edit adds
    without giving it a name."""
    if not edits and speaker_names is None:
        raise EditError("the edit changes nothing: give sentences to change or speaker names")
    _check_unique(edits)
    count = len(transcript.sentences)
    for edit in edits:
        _check_index(edit.index, count)
    names = list(transcript.speakers)
    for index in range(len(names), _speaker_count(edits, len(names))):
        names.append(default_name(index))
    if speaker_names is not None:
        names = _renamed(names, speaker_names)
    sentences = list(transcript.sentences)
    for edit in edits:
        sentences[edit.index] = _edited(sentences[edit.index], edit)
    texts_changed = any(a.text != b.text for a, b in zip(sentences, transcript.sentences))
    # The full text is the sentences' texts, as the pipeline builds it; rebuilt only when a text
    # changed, so that renaming a speaker leaves a transcript's own text exactly as it was.
    text = join_words([s.text for s in sentences]) if texts_changed else transcript.text
    return replace(transcript, text=text, sentences=tuple(sentences), speakers=tuple(names))


def clean_text(index: int, text: str) -> str:
    """A sentence's new text, stripped; EditError if it is empty, too long or has a control character."""
    text = text.strip()
    if not text:
        raise EditError(f"sentence {index}: the text is empty (to drop words, leave at least one)")
    if len(text) > MAX_TEXT_CHARS:
        raise EditError(f"sentence {index}: the text has {len(text)} characters, more than the "
                        f"{MAX_TEXT_CHARS} a sentence may have")
    _check_printable(f"sentence {index}: the text", text)
    return text


def clean_name(index: int, name: str) -> str:
    """A speaker's new name, stripped; EditError if it is empty, too long or has a control character."""
    name = name.strip()
    if not name:
        raise EditError(f"speaker {index}: the name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise EditError(f"speaker {index}: the name has {len(name)} characters, more than the "
                        f"{MAX_NAME_CHARS} allowed")
    _check_printable(f"speaker {index}: the name", name)
    return name


def _check_printable(what: str, text: str) -> None:
    for ch in text:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise EditError(f"{what} contains a control character (U+{ord(ch):04X}); "
                            "a sentence is one line of text")


def _check_unique(edits: Sequence[SentenceEdit]) -> None:
    seen: set[int] = set()
    for edit in edits:
        if edit.index in seen:
            raise EditError(f"sentence {edit.index} is edited twice in one request; send one edit per sentence")
        seen.add(edit.index)


def _check_index(index: int, count: int) -> None:
    if not 0 <= index < count:
        within = f"0 to {count - 1}" if count else "none: there is no speech in this transcript"
        raise EditError(f"sentence {index} does not exist: the transcript's sentences are {within}")


def _speaker_count(edits: Sequence[SentenceEdit], count: int) -> int:
    """How many speakers there are after the edits: in their order, the next id adds one, so one
    request may add several; EditError for any other unknown id."""
    for edit in edits:
        if edit.speaker is None or 0 <= edit.speaker < count:
            continue
        if edit.speaker != count:
            known = f"0 to {count - 1}, or {count}" if count else f"{count}"
            raise EditError(f"sentence {edit.index}: speaker {edit.speaker} does not exist: give {known} "
                            "to add a new speaker")
        count += 1
    return count


def _renamed(names: list[str], speaker_names: Sequence[str]) -> list[str]:
    if len(speaker_names) > len(names):
        raise EditError(f"{len(speaker_names)} speaker names for {len(names)} speakers; "
                        "a speaker is added by giving a sentence the next speaker id")
    renamed = list(names)
    for i, name in enumerate(speaker_names):
        renamed[i] = clean_name(i, name)
    return renamed


def _edited(sentence: Sentence, edit: SentenceEdit) -> Sentence:
    changed = sentence
    if edit.text is not None:
        text = clean_text(edit.index, edit.text)
        if text != sentence.text:
            # The per-character times belong to the recognised characters; new words have no honest
            # times without aligning them to the audio again. The sentence keeps its span, and the
            # writers spread its text over it (as for a sentence recognised without times).
            changed = replace(changed, text=text, tokens=())
    if edit.speaker is not None:
        changed = replace(changed, speaker=edit.speaker)
    return changed
