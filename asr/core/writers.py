"""Output formats: ``render(result, fmt, output, stem)`` gives the bytes, the media type and the file
name of a result (a transcript or a VAD table) in one format, for every caller (CLI, API, UI,
batch). Behind it, a registry per kind: ``WRITERS[name]`` and ``VAD_WRITERS[name]``.
``render_zip`` puts several results, each in several formats, into one ZIP.

Subtitle cues are sentence-level, in the audio's own timeline, monotonic, non-overlapping,
never empty and never longer than ``OutputConfig.max_cue_ms`` / ``max_cue_chars``: a long
sentence is split at its last comma that fits, else between tokens. (A token is never split,
so a single token longer than the limits, e.g. a long English word, makes a cue of its own.)
"""

from __future__ import annotations

import csv
import io
import json
import time
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, TextIO

from asr.config import OutputConfig
from asr.core.sentences import join_words, tokens_text
from asr.errors import RequestError
from asr.types import Sentence, Transcript, VadResult

_PAUSE_MARKS = frozenset({"，", "、", ",", "；", ";", "：", ":"})


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    speaker: str | None = None
    """The speaker's display name, when the transcript has speaker labels."""


def _split_sentence(sentence: Sentence, max_ms: int, max_chars: int) -> list[Cue]:
    tokens = sentence.tokens
    if not tokens:
        return _split_untimed(sentence, max_ms, max_chars)
    cues: list[Cue] = []
    start = 0
    while start < len(tokens):
        end = start + 1  # exclusive; always take at least one token
        while end < len(tokens):
            candidate = tokens[start : end + 1]
            if (
                candidate[-1].end_ms - candidate[0].start_ms > max_ms
                or len(tokens_text(candidate)) > max_chars
            ):
                break
            end += 1
        if end < len(tokens):
            # prefer to cut after a comma in the second half of the piece
            for cut in range(end, start + max(1, (end - start) // 2), -1):
                if tokens[cut - 1].mark in _PAUSE_MARKS:
                    end = cut
                    break
        piece = tokens[start:end]
        cues.append(Cue(piece[0].start_ms, piece[-1].end_ms, tokens_text(piece)))
        start = end
    return cues


def _split_untimed(sentence: Sentence, max_ms: int, max_chars: int) -> list[Cue]:
    """No token times (fallback sentences): split the text evenly over the sentence's span."""
    text = sentence.text
    duration = max(1, sentence.end_ms - sentence.start_ms)
    parts = max(1, -(-len(text) // max_chars), -(-duration // max_ms))
    size = -(-len(text) // parts)
    cues = []
    for i in range(parts):
        piece = text[i * size : (i + 1) * size].strip()
        if piece:
            cues.append(
                Cue(sentence.start_ms + duration * i // parts, sentence.start_ms + duration * (i + 1) // parts, piece)
            )
    return cues


def build_cues(
    sentences: Sequence[Sentence], output: OutputConfig, speaker_names: Sequence[str] = ()
) -> list[Cue]:
    """Subtitle cues: monotonic, non-overlapping, non-empty, each at least 1 ms long. A cue never
    spans two sentences, so it has one speaker: ``speaker_names[sentence.speaker]``."""
    raw = [
        Cue(c.start_ms, c.end_ms, c.text, _speaker_name(s, speaker_names))
        for s in sentences
        for c in _split_sentence(s, output.max_cue_ms, output.max_cue_chars)
    ]
    # One line of text per cue: a line break (let alone a blank line) inside the text would
    # end an SRT/VTT cue early and corrupt the rest of the file.
    raw = [Cue(c.start_ms, c.end_ms, " ".join(c.text.split()), c.speaker) for c in raw]
    raw = [c for c in raw if c.text]
    raw.sort(key=lambda c: c.start_ms)
    cues: list[Cue] = []
    for i, cue in enumerate(raw):
        start = max(cue.start_ms, cues[-1].end_ms if cues else 0)
        end = cue.end_ms
        if i + 1 < len(raw):
            end = min(end, max(raw[i + 1].start_ms, start + 1))
        end = max(end, start + 1)
        cues.append(Cue(start, end, cue.text, cue.speaker))
    return cues


def _speaker_name(sentence: Sentence, names: Sequence[str]) -> str | None:
    if sentence.speaker is None or not 0 <= sentence.speaker < len(names):
        return None
    # a line break or "<"/">" in a user's name for a speaker would break a cue or a VTT voice tag
    return " ".join(names[sentence.speaker].replace("<", " ").replace(">", " ").split()) or None


def format_timestamp(ms: int, separator: str = ",") -> str:
    hours, rest = divmod(max(0, int(ms)), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _one_line(text: str) -> str:
    """``text`` with tabs and line breaks turned into spaces (one record per line)."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


class TranscriptWriter:
    """A transcript output format."""

    extension: ClassVar[str]
    media_type: ClassVar[str] = "text/plain; charset=utf-8"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        raise NotImplementedError


class TxtWriter(TranscriptWriter):
    extension = "txt"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        if transcript.speakers and transcript.sentences:
            self._write_turns(transcript, file)
        elif transcript.sentences:
            for sentence in transcript.sentences:
                file.write(_one_line(sentence.text) + "\n")
        elif transcript.text:
            file.write(transcript.text + "\n")

    @staticmethod
    def _write_turns(transcript: Transcript, file: TextIO) -> None:
        """One paragraph per speaker turn: consecutive sentences of one speaker joined, as a
        meeting transcript reads ("Speaker 1: ..."), a blank line between turns."""
        turns: list[tuple[str | None, list[str]]] = []
        for sentence in transcript.sentences:
            name = _speaker_name(sentence, transcript.speakers)
            if turns and turns[-1][0] == name:
                turns[-1][1].append(sentence.text)
            else:
                turns.append((name, [sentence.text]))
        for i, (name, texts) in enumerate(turns):
            body = _one_line(join_words(texts))
            file.write(("\n" if i else "") + (f"{name}: {body}" if name else body) + "\n")


class SrtWriter(TranscriptWriter):
    extension = "srt"
    media_type = "application/x-subrip; charset=utf-8"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        for i, cue in enumerate(build_cues(transcript.sentences, output, transcript.speakers), start=1):
            text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
            file.write(f"{i}\n{format_timestamp(cue.start_ms)} --> {format_timestamp(cue.end_ms)}\n{text}\n\n")


class VttWriter(TranscriptWriter):
    extension = "vtt"
    media_type = "text/vtt; charset=utf-8"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        file.write("WEBVTT\n\n")
        for cue in build_cues(transcript.sentences, output, transcript.speakers):
            # WebVTT's voice span names the speaker; players show or style it
            text = f"<v {cue.speaker}>{cue.text}" if cue.speaker else cue.text
            file.write(f"{format_timestamp(cue.start_ms, '.')} --> {format_timestamp(cue.end_ms, '.')}\n{text}\n\n")


class JsonWriter(TranscriptWriter):
    extension = "json"
    media_type = "application/json"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        json.dump(transcript.to_dict(), file, ensure_ascii=False, indent=2)
        file.write("\n")


class TsvWriter(TranscriptWriter):
    extension = "tsv"
    media_type = "text/tab-separated-values; charset=utf-8"

    def write(self, transcript: Transcript, file: TextIO, output: OutputConfig) -> None:
        # the speaker column only when there are speakers: readers of the three-column form keep working
        with_speaker = bool(transcript.speakers)
        file.write("start_ms\tend_ms\t" + ("speaker\t" if with_speaker else "") + "text\n")
        for sentence in transcript.sentences:
            # a tab or a line break (\n, \r) inside the text would break the row
            speaker = (_one_line(_speaker_name(sentence, transcript.speakers) or "") + "\t") if with_speaker else ""
            file.write(f"{sentence.start_ms}\t{sentence.end_ms}\t{speaker}{_one_line(sentence.text)}\n")


WRITERS: dict[str, TranscriptWriter] = {
    w.extension: w for w in (TxtWriter(), SrtWriter(), VttWriter(), JsonWriter(), TsvWriter())
}


# ---- VAD-only results -------------------------------------------------------------------------


class VadWriter:
    extension: ClassVar[str]
    media_type: ClassVar[str] = "text/plain; charset=utf-8"

    def write(self, result: VadResult, file: TextIO) -> None:
        raise NotImplementedError


def vad_rows(result: VadResult) -> list[dict]:
    return result.to_dict()["segments"]


class VadTxtWriter(VadWriter):
    extension = "txt"

    def write(self, result: VadResult, file: TextIO) -> None:
        file.write(f"{'#':>4}  {'start':>12}  {'end':>12}  {'duration':>10}\n")
        for row in vad_rows(result):
            file.write(
                f"{row['index']:>4}  {format_timestamp(row['start_ms'], '.'):>12}  "
                f"{format_timestamp(row['end_ms'], '.'):>12}  {row['duration_ms'] / 1000:>9.3f}s\n"
            )


class VadJsonWriter(VadWriter):
    extension = "json"
    media_type = "application/json"

    def write(self, result: VadResult, file: TextIO) -> None:
        json.dump(result.to_dict(), file, ensure_ascii=False, indent=2)
        file.write("\n")


class VadCsvWriter(VadWriter):
    extension = "csv"
    media_type = "text/csv; charset=utf-8"

    def write(self, result: VadResult, file: TextIO) -> None:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["index", "start_ms", "end_ms", "duration_ms", "start", "end"])
        for row in vad_rows(result):
            writer.writerow([
                row["index"], row["start_ms"], row["end_ms"], row["duration_ms"],
                format_timestamp(row["start_ms"], "."), format_timestamp(row["end_ms"], "."),
            ])


VAD_WRITERS: dict[str, VadWriter] = {w.extension: w for w in (VadTxtWriter(), VadJsonWriter(), VadCsvWriter())}


def parse_formats(spec: str | Sequence[str], registry: dict) -> list[str]:
    """``"srt,txt"`` → ``["srt", "txt"]``; raises ValueError naming the allowed formats."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise ValueError(f"no output format given; choose from {', '.join(registry)}")
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown output format {', '.join(unknown)}; choose from {', '.join(registry)}")
    return list(dict.fromkeys(names))


# ---- the one output seam ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A result in one output format, ready to write or send."""

    body: bytes
    media_type: str
    filename: str


def output_name(stem: str, fmt: str, vad: bool = False) -> str:
    """``stem.srt`` for a transcript, ``stem.vad.csv`` for a VAD table: one naming rule for all."""
    return f"{stem}.vad.{fmt}" if vad else f"{stem}.{fmt}"


def formats_for(result: Transcript | VadResult) -> dict[str, TranscriptWriter] | dict[str, VadWriter]:
    return VAD_WRITERS if isinstance(result, VadResult) else WRITERS


def render(result: Transcript | VadResult, fmt: str, output: OutputConfig, stem: str = "result") -> Rendered:
    """``result`` in format ``fmt`` (UTF-8, ``\\n`` line ends). Raises RequestError for a format its
    kind does not have, naming the ones it has."""
    registry = formats_for(result)
    writer = registry.get(fmt)
    if writer is None:
        kind = " for a VAD job" if registry is VAD_WRITERS else ""
        raise RequestError(f"format must be one of {', '.join(registry)}{kind}")
    buffer = io.StringIO(newline="")  # the writers' own line ends, whatever the platform
    if isinstance(result, VadResult):
        writer.write(result, buffer)
    else:
        writer.write(result, buffer, output)
    return Rendered(buffer.getvalue().encode("utf-8"), writer.media_type,
                    output_name(stem, writer.extension, isinstance(result, VadResult)))


# ---- many results in one file ----------------------------------------------------------------------

#: Characters a file name may not hold on some system that will unpack the ZIP (Windows' list, and
#: the separators of every system): each becomes "_".
_UNSAFE_NAME_CHARS = frozenset('<>:"/\\|?*')
_MAX_STEM_CHARS = 100


def safe_stem(stem: str) -> str:
    """``stem`` as a file name any system unpacks as one plain file: no folders, no control or
    reserved characters, no leading dot, bounded length; "result" when nothing is left."""
    cleaned = "".join(
        "_" if ch in _UNSAFE_NAME_CHARS or unicodedata.category(ch)[0] == "C" else ch for ch in stem
    )
    cleaned = cleaned.strip().lstrip(".").strip()[:_MAX_STEM_CHARS].rstrip(". ")
    return cleaned or "result"


def render_zip(
    results: Sequence[tuple[str, Transcript | VadResult]],
    formats: Sequence[str] | None,
    output: OutputConfig,
    name: str = "results",
) -> Rendered:
    """One ZIP of ``results`` (each a (stem, result) pair), each in every one of ``formats`` its kind
    has (None: all of them). Entry names are ``render``'s, from a safe stem; two results with the
    same stem (two recordings both called audio.wav) get ``audio.srt`` and ``audio (2).srt``, compared
    ignoring case, as a case-insensitive file system would. Raises RequestError for a format no kind has.

    The standard library's zipfile is enough: it deflates (zlib) and marks non-ASCII names as UTF-8,
    so Chinese file names unpack as they are on every current system; a dependency would add nothing."""
    known = set(WRITERS) | set(VAD_WRITERS)
    unknown = [f for f in formats or () if f not in known]
    if unknown:
        raise RequestError(f"unknown format {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    used: set[str] = set()
    buffer = io.BytesIO()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for stem, result in results:
            chosen = [f for f in (formats or formats_for(result)) if f in formats_for(result)]
            entries = _unique_entries(safe_stem(stem), result, chosen, output, used)
            for entry in entries:
                archive.writestr(zipfile.ZipInfo(entry.filename, stamp), entry.body, zipfile.ZIP_DEFLATED)
    return Rendered(buffer.getvalue(), "application/zip", f"{safe_stem(name)}.zip")


def _unique_entries(
    stem: str, result: Transcript | VadResult, formats: Sequence[str], output: OutputConfig, used: set[str]
) -> list[Rendered]:
    """``result`` in ``formats`` under the first of ``stem``, ``stem (2)``, ... whose names are all
    unused; marks them used. One result's files keep one stem."""
    vad = isinstance(result, VadResult)
    registry = formats_for(result)
    candidate, n = stem, 1
    while {output_name(candidate, registry[f].extension, vad).casefold() for f in formats} & used:
        n += 1
        candidate = f"{stem} ({n})"
    entries = [render(result, fmt, output, candidate) for fmt in formats]
    used |= {e.filename.casefold() for e in entries}
    return entries
