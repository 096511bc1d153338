"""Audio input: check an uploaded file and decode it to 16 kHz mono float32 in bounded memory.

Decoding goes through PyAV (FFmpeg's libraries, in-process). Uploaded files are hostile
until proven otherwise, so FFmpeg may only read local files (``protocol_whitelist``), only
through the demuxers listed in ``_FORMATS`` and only with the codecs in ``_CODECS``; every
FFmpeg failure becomes an :class:`~asr.errors.AudioError` whose message names the file by
its base name, never by its server path.
"""

from __future__ import annotations

import codecs
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from asr.errors import (
    AudioTooLongError,
    CorruptAudioError,
    DecoderFailedError,
    EmptyFileError,
    FileTooLargeError,
    NoAudioTrackError,
    NotAudioError,
    UnsupportedCodecError,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Paraformer-large expects 16 kHz mono

# FFmpeg matches a demuxer if any of its comma-separated names is listed, so "mov" admits
# "mov,mp4,m4a,3gp,3g2,mj2" and "matroska" admits "matroska,webm". "asf" is here because
# WMA (wmav1/wmav2) only ever comes in ASF.
_FORMATS = ("wav", "w64", "mp3", "flac", "ogg", "mov", "matroska", "aac", "amr", "au", "aiff", "caf", "asf")
_OPEN_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(_FORMATS)}

_CODECS = frozenset({"mp3", "aac", "flac", "vorbis", "opus", "alac", "amr_nb", "amr_wb", "gsm", "gsm_ms",
                     "adpcm_ima_wav", "adpcm_ms", "ac3", "eac3", "wmav1", "wmav2"})  # and every pcm_*
# Only packed formats: PyAV's AudioFrame.to_ndarray walks planes up to a NULL pointer, which
# is not there for planar frames of 8+ channels (it crashes on a bit-flipped AAC file that
# suddenly claims 55 channels), so planar frames are never turned into arrays here.
_PACKED_FLOATS = frozenset({"flt", "dbl"})

_PROBE_PACKETS = 50  # probe_audio decodes at most this many packets to prove the decoder works
_MIX_WINDOW = SAMPLE_RATE // 2  # cancellation is judged on ~0.5 s, not on single short frames
_CANCEL_RATIO = 0.1  # mix 20 dB below the loudest channel: the channels cancel each other
_MIN_RMS = 1e-3  # about -60 dBFS; below this there is nothing worth rescuing
_SHORTFALL_S = 0.5  # decoded this much less than the container claims: report truncation
# Containers whose header gives the exact number of samples and whose demuxer reads past it: FLAC (STREAMINFO).
# Not MP3 or ADTS (the length is guessed from the bit rate, far off for VBR), nor WAV (FFmpeg stops at the end
# of the data chunk its header declares). Decoding more than the header says, by more than the slack, is a lie.
_EXACT_LENGTH = frozenset({"flac"})
_SLACK_S, _SLACK_RATIO = 5.0, 0.01
_TAIL_PACKETS = 64  # packets read after seeking to the end of a FLAC file to see where its audio ends

_CONVERT_HINT = "Please convert it to WAV, MP3, M4A, FLAC or Opus and try again."
_OOM = "The decoder ran out of memory on this file."


@dataclass(frozen=True)
class AudioInfo:
    format_name: str  # container as PyAV names it, e.g. "wav", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # audio codec name, e.g. "pcm_s16le", "aac", "opus"
    sample_rate: int
    channels: int
    duration_s: float | None  # what the container claims (None if unknown)
    size_bytes: int


# ---- public API ---------------------------------------------------------------------------


def probe_audio(
    path: str | os.PathLike[str],
    *,
    max_duration_s: float | None = None,
    max_file_bytes: int | None = None,
    display_name: str | None = None,
) -> AudioInfo:
    """Open the file, check it is usable audio; raise the specific AudioError subclass if not.

    Cheap: reads the headers and decodes at most a few packets, never the whole file.
    ``display_name`` is the name messages use (the user's file name, not a server path).
    """
    src = _Source(path, display_name)
    if max_file_bytes is not None and src.size > max_file_bytes:
        raise FileTooLargeError(src.say(f"The file is too large ({src.size / 2**20:.1f} MB; "
                                        f"the limit is {max_file_bytes / 2**20:.1f} MB)."))
    container, stream = _open(src)
    try:
        info = _info(container, stream, src, max_duration_s)
        _check_decodes(container, stream, src)
    finally:
        container.close()
    return info


def stream_audio(
    path: str | os.PathLike[str],
    *,
    max_duration_s: float | None = None,
    chunk_s: float = 10.0,
    display_name: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode the first audio track and yield consecutive 1-D float32 arrays of 16 kHz mono samples, each
    ``chunk_s`` long (the last may be shorter).

    Memory stays O(chunk) whatever the file length. Raises AudioTooLongError as soon as the decoded length passes
    ``max_duration_s``, whatever the container claims, or passes the exact length a FLAC header gives by more than
    a few seconds (the header lied: a decompression bomb).
    """
    if not chunk_s > 0:
        raise ValueError("chunk_s must be positive")
    src = _Source(path, display_name)
    container, stream = _open(src)
    try:
        info = _info(container, stream, src, max_duration_s)
        yield from _decode(container, stream, src, info, max_duration_s, max(1, round(chunk_s * SAMPLE_RATE)))
    finally:
        container.close()


def load_audio(path: str | os.PathLike[str], *, max_duration_s: float | None = None) -> np.ndarray:
    """The whole file as one float32 16 kHz mono array."""
    chunks = list(stream_audio(path, max_duration_s=max_duration_s))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


# ---- the file and what it looks like ------------------------------------------------------


class _Source:
    """The file on disk: absolute path for FFmpeg, base name for messages, first bytes."""

    def __init__(self, path: str | os.PathLike[str], display_name: str | None = None) -> None:
        # Absolute, so that a name like "http:x.wav" or "-i x.wav" can never read as a
        # protocol or an option; FFmpeg only ever gets it as a path.
        self.path = os.path.abspath(os.fspath(path))
        base = os.path.basename(display_name.replace("\\", "/")) if display_name else os.path.basename(self.path)
        shown = "".join(c if c.isprintable() else "?" for c in base)
        self.name = shown if len(shown) <= 80 else shown[:77] + "..."
        self.size = os.stat(self.path).st_size
        if self.size == 0:
            raise EmptyFileError(self.say("The file is empty."))
        with open(self.path, "rb") as f:
            self.head = f.read(4096)

    def say(self, message: str) -> str:
        return f"{self.name}: {message}"


# Leading bytes -> (kind, what). "audio": we decode this, so failing to open it means damage.
# "other-media": media in a container we do not accept. "not-audio": the user picked the
# wrong file, and the message says what it looks like.
_SIGNATURES: dict[bytes, tuple[str, str]] = {
    b"RF64": ("audio", "WAV"), b"BW64": ("audio", "WAV"), b"riff\x2e\x91\xcf\x11": ("audio", "W64"),
    b"ID3": ("audio", "MP3"), b"fLaC": ("audio", "FLAC"), b"OggS": ("audio", "Ogg"),
    b"\x1a\x45\xdf\xa3": ("audio", "Matroska/WebM"), b"#!AMR": ("audio", "AMR"),
    b".snd": ("audio", "AU"), b"FORM": ("audio", "AIFF"), b"caff": ("audio", "CAF"),
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11": ("audio", "WMA/ASF"),
    b"FLV\x01": ("other-media", "a Flash video (FLV)"), b"\x00\x00\x01\xba": ("other-media", "an MPEG video"),
    b"%PDF": ("not-audio", "a PDF document"), b"\xff\xd8\xff": ("not-audio", "a JPEG image"),
    b"\x89PNG": ("not-audio", "a PNG image"), b"GIF8": ("not-audio", "a GIF image"),
    b"PK\x03\x04": ("not-audio", "a ZIP archive (or a Word/Excel document)"),
    b"\xd0\xcf\x11\xe0": ("not-audio", "a Microsoft Office document"),
    b"Rar!": ("not-audio", "a RAR archive"), b"7z\xbc\xaf": ("not-audio", "a 7-Zip archive"),
    b"\x1f\x8b": ("not-audio", "a gzip archive"), b"\x7fELF": ("not-audio", "a program"),
}


def _sniff(head: bytes) -> tuple[str, str]:
    """Classify by leading bytes: ("audio" | "other-media" | "not-audio" | "unknown", what)."""
    if head[:4] == b"RIFF":
        kind = head[8:12]
        if kind == b"WEBP":
            return "not-audio", "a WebP image"
        return ("audio", "WAV") if kind == b"WAVE" else ("other-media", "an AVI or other RIFF file")
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "not-audio", "a HEIC/AVIF photo"  # phone photos share MP4's box structure
    for magic, found in _SIGNATURES.items():
        if head.startswith(magic):
            return found
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio", "MPEG audio"  # MP3 frame or ADTS AAC without a tag
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "audio", "MP4/M4A"
    try:
        # incremental: a multi-byte character cut by the 4 KiB boundary is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "unknown", ""
    if any(not c.isprintable() and c not in "\t\n\r\f\v" for c in text):
        return "unknown", ""
    if text.lstrip("\ufeff \t\r\n").lower().startswith(("<!doctype html", "<html")):
        return "not-audio", "a web page (HTML)"
    return "not-audio", "a text file"


def _wav_chunks(head: bytes) -> dict[bytes, tuple[int, int]]:
    """RIFF chunk id -> (offset of its body, declared size), for chunks starting in ``head``."""
    chunks, pos = {}, 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        chunks.setdefault(cid, (pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


# ---- opening ------------------------------------------------------------------------------


def _open(src: _Source) -> tuple[av.container.InputContainer, av.AudioStream]:
    kind, what = _sniff(src.head)
    if kind == "not-audio":
        raise NotAudioError(src.say(f"This looks like {what}, not audio. Please upload an audio or video recording."))
    try:
        container = av.open(src.path, "r", container_options=dict(_OPEN_OPTIONS), metadata_errors="replace")
    except Exception as e:  # av raises many types here; all of them mean "cannot open"
        if isinstance(e, MemoryError):
            raise DecoderFailedError(src.say(_OOM)) from e
        logger.info("%s: cannot open (%s, sniffed %s)", src.name, type(e).__name__, kind)
        if kind == "audio":
            msg = f"The file is damaged or incomplete: it starts like {what} but cannot be read."
            raise CorruptAudioError(src.say(msg)) from e
        if kind == "other-media":
            raise UnsupportedCodecError(src.say(f"This looks like {what}, a format that is not supported. "
                                                f"{_CONVERT_HINT}")) from e
        raise NotAudioError(src.say("This is not an audio or video file that can be read.")) from e
    try:
        return container, _audio_stream(container, src, kind)
    except BaseException:
        container.close()
        raise


def _audio_stream(container: av.container.InputContainer, src: _Source, kind: str) -> av.AudioStream:
    audio = container.streams.audio
    if not audio:
        if container.streams.video:
            raise NoAudioTrackError(src.say("The file has video but no audio track."))
        if kind == "unknown":
            raise NotAudioError(src.say("This is not an audio or video file that can be read."))
        raise NoAudioTrackError(src.say("The file contains no audio track."))
    stream = audio[0]
    name = _codec_name(stream, src)
    if not (name.startswith("pcm_") or name in _CODECS):
        raise UnsupportedCodecError(src.say(f"The audio is encoded with {name}, which is not supported. "
                                            f"{_CONVERT_HINT}"))
    return stream


def _codec_name(stream: av.AudioStream, src: _Source) -> str:
    if stream.codec_context is not None:
        return stream.codec_context.codec.canonical_name
    # No decoder, so PyAV names no codec; for WAV, the format tag at least tells what it is.
    fmt = _wav_chunks(src.head).get(b"fmt ") if src.head[8:12] == b"WAVE" else None
    if fmt and fmt[0] + 2 <= len(src.head):
        return f"an unknown codec (WAVE format tag 0x{struct.unpack_from('<H', src.head, fmt[0])[0]:04x})"
    return "an unknown codec"


def _info(container, stream: av.AudioStream, src: _Source, limit_s: float | None) -> AudioInfo:
    """What the container claims; refuses it here already if it claims to be too long.

    A FLAC header can understate the length (or leave it out): the numbers in the last frames' headers say where the
    audio really ends, and that is the duration then, so a lying file is refused here too, before any decoding."""
    ctx, duration = stream.codec_context, None
    if stream.duration and stream.time_base and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration and container.duration > 0:
        duration = container.duration / av.time_base
    if limit_s is not None and duration is not None and duration > limit_s:
        raise AudioTooLongError(src.say(f"The recording is longer than the limit: {_hms(duration)} "
                                        f"(the maximum is {_hms(limit_s)})."))
    held = _flac_end_s(src) if container.format.name in _EXACT_LENGTH else None
    if held is not None and (duration is None or held > duration + _slack_s(duration)):
        if duration is None:
            if limit_s is not None and held > limit_s:
                raise AudioTooLongError(src.say(f"The recording is longer than the limit: {_hms(held)} "
                                                f"(the maximum is {_hms(limit_s)})."))
        else:
            if limit_s is not None and held > limit_s:
                raise AudioTooLongError(src.say(
                    f"The file holds more audio than its header says: the header says {_hms(duration)}, the file "
                    f"holds at least {_hms(held)}, longer than the limit of {_hms(limit_s)}."))
            logger.warning("%s: the header says %.1f s, but the file holds at least %.1f s", src.name, duration, held)
        duration = held
    return AudioInfo(format_name=container.format.name, codec=ctx.codec.canonical_name,
                     sample_rate=int(ctx.sample_rate or 0), channels=int(ctx.channels or 0),
                     duration_s=duration, size_bytes=src.size)


def _flac_end_s(src: _Source) -> float | None:
    """Where a FLAC file's audio ends, in seconds, by the sample (or frame) numbers in its last frames' headers;
    None if that cannot be told. Cheap at any length: FFmpeg seeks to the end by a binary search over frame headers
    (checked with their CRC), then a few packets are read. A forged tail can still fool it: decoding checks again."""
    try:
        container = av.open(src.path, "r", format="flac", container_options=dict(_OPEN_OPTIONS),
                            metadata_errors="replace")
    except MemoryError as e:
        raise DecoderFailedError(src.say(_OOM)) from e
    except Exception:  # noqa: BLE001 - it opened a moment ago; if not now, the decode checks still hold
        return None
    try:
        stream = container.streams.audio[0]
        container.seek(1 << 50, stream=stream, any_frame=True)  # past any end: lands on the last frames
        end = None
        for _, packet in zip(range(_TAIL_PACKETS), container.demux(stream)):
            if packet.pts is not None:
                end = max(end or 0, packet.pts + max(packet.duration or 0, 0))
        return None if end is None or not stream.time_base else float(end * stream.time_base)
    except MemoryError as e:
        raise DecoderFailedError(src.say(_OOM)) from e
    except Exception:  # noqa: BLE001 - a damaged tail tells nothing
        return None
    finally:
        container.close()


def _slack_s(duration: float) -> float:
    return _SLACK_S + _SLACK_RATIO * duration


def _check_decodes(container, stream: av.AudioStream, src: _Source) -> None:
    """Decode the first few packets: catches header-only files and broken codec setups."""
    stats = _Stats()
    for frame in _frames(container, stream, src, stats, max_packets=_PROBE_PACKETS):
        if frame.samples > 0:
            return
    if stats.packets < _PROBE_PACKETS:  # else undecided (damage at the start?): stream_audio tells
        _raise_nothing_decoded(stats, src)


def _raise_nothing_decoded(stats: _Stats, src: _Source) -> None:
    if stats.bad_packets or stats.read_error is not None:
        raise CorruptAudioError(src.say("The file is damaged or incomplete: no part of its audio could be decoded."))
    raise EmptyFileError(src.say("The file contains no audio samples."))


# ---- decoding -----------------------------------------------------------------------------


@dataclass
class _Stats:
    packets: int = 0
    bad_packets: int = 0
    samples: int = 0  # decoded, at 16 kHz
    read_error: Exception | None = None
    non_finite: int = 0


def _frames(
    container, stream: av.AudioStream, src: _Source, stats: _Stats, max_packets: int | None = None
) -> Iterator[av.AudioFrame]:
    """Decoded frames of ``stream``; undecodable packets are skipped and counted."""
    packets = container.demux(stream)
    while max_packets is None or stats.packets < max_packets:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except MemoryError as e:
            raise DecoderFailedError(src.say(_OOM)) from e
        except Exception as e:  # noqa: BLE001 - a read error mid-file: keep what we have
            stats.read_error = e
            return
        stats.packets += 1
        try:
            yield from stream.codec_context.decode(packet)
        except MemoryError as e:
            raise DecoderFailedError(src.say(_OOM)) from e
        except Exception:  # noqa: BLE001 - one bad packet must not lose the rest of the file
            stats.bad_packets += 1


def _decode(
    container, stream: av.AudioStream, src: _Source, info: AudioInfo, limit_s: float | None, chunk: int
) -> Iterator[np.ndarray]:
    """The pipeline: packets -> frames -> 16 kHz blocks -> mono -> chunks, all lazy."""
    stats = _Stats()
    frames = (_finite(frame, stats) for frame in _frames(container, stream, src, stats))
    # The header's length (or more, if the last frames showed more); not a length only the last frames gave
    exact_s = info.duration_s if info.format_name in _EXACT_LENGTH and (stream.duration or 0) > 0 else None
    blocks = _limited(_resampled(frames), stats, limit_s, exact_s, src)
    try:
        yield from _chunks(_mono(_windows(blocks), src.name), chunk)
    except (av.FFmpegError, ValueError) as e:  # the resampler's filter graph gave up
        raise CorruptAudioError(src.say("The file is damaged and could not be decoded.")) from e
    if stats.samples == 0:
        _raise_nothing_decoded(stats, src)
    _report(stats, src, info)


def _report(stats: _Stats, src: _Source, info: AudioInfo) -> None:
    if stats.bad_packets:
        logger.warning("%s: skipped %d undecodable packet(s) of %d", src.name, stats.bad_packets, stats.packets)
    if stats.non_finite:
        logger.warning("%s: replaced %d NaN/infinite samples with silence", src.name, stats.non_finite)
    # FFmpeg trusts a WAV's real size over its header, so check the header's promise here.
    data = _wav_chunks(src.head).get(b"data") if src.head[8:12] == b"WAVE" else None
    wav_short = data is not None and data[1] not in (0, 0xFFFFFFFF) and sum(data) > src.size
    decoded_s = stats.samples / SAMPLE_RATE
    if stats.read_error is not None or wav_short or (
            info.duration_s is not None and decoded_s < info.duration_s - _SHORTFALL_S):
        logger.warning("%s: decoded %.1f s, less than the header promises: probably truncated", src.name, decoded_s)


def _finite(frame: av.AudioFrame, stats: _Stats) -> av.AudioFrame:
    """NaN/Inf would smear across the resampling filter, so zero them before it runs. They come from float WAV
    (packed); planar decoder output is only cleaned after resampling."""
    if frame.format.name not in _PACKED_FLOATS:
        return frame
    samples = frame.to_ndarray()
    bad = ~np.isfinite(samples)
    if bad.any():
        stats.non_finite += int(bad.sum())
        samples[bad] = 0
    elif np.abs(samples).max(initial=0.0) <= 1.0:
        return frame
    np.clip(samples, -1.0, 1.0, out=samples)  # before the filter, so it rings less
    fixed = av.AudioFrame.from_ndarray(samples, format=frame.format.name, layout=frame.layout.name)
    fixed.sample_rate, fixed.pts, fixed.time_base = frame.sample_rate, frame.pts, frame.time_base
    return fixed


def _resampled(frames: Iterator[av.AudioFrame]) -> Iterator[np.ndarray]:
    """(channels, samples) float32 blocks at 16 kHz, channels kept (the downmix is ours)."""
    resampler, shape = None, None
    for frame in frames:
        # PyAV's resampler refuses frames unlike its first one: start a new one on a change
        if (frame.format.name, frame.layout.name, frame.sample_rate) != shape:
            if resampler is not None:
                yield from _arrays(resampler.resample(None))
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=SAMPLE_RATE)
        yield from _arrays(resampler.resample(frame))
    if resampler is not None:
        yield from _arrays(resampler.resample(None))


def _arrays(frames: list[av.AudioFrame | None]) -> list[np.ndarray]:
    """Packed frames as (channels, samples) arrays; a passthrough resampler flushes None."""
    return [f.to_ndarray().reshape(-1, f.layout.nb_channels).T for f in frames if f is not None and f.samples]


def _limited(
    blocks: Iterator[np.ndarray], stats: _Stats, limit_s: float | None, exact_s: float | None, src: _Source
) -> Iterator[np.ndarray]:
    """Counts decoded samples; the count, not the container's claim, enforces the limit. ``exact_s``: the length the
    header gives, where it is exact; passing it by more than the slack means the header lied, so stop there already
    (long before the limit, for a small file claiming seconds that decodes to hours)."""
    limit = None if limit_s is None else int(limit_s * SAMPLE_RATE)
    lie = None if exact_s is None else int((exact_s + _slack_s(exact_s)) * SAMPLE_RATE)
    for block in blocks:
        stats.samples += block.shape[1]
        if limit is not None and stats.samples > limit:
            raise AudioTooLongError(src.say(f"The recording is longer than the limit of {_hms(limit_s)}."))
        if lie is not None and stats.samples > lie:
            raise AudioTooLongError(src.say(f"The file holds more audio than its header says ({_hms(exact_s)}); "
                                            "decoding was stopped there."))
        yield block


def _windows(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Regroups blocks into ~_MIX_WINDOW-long ones, each with a single channel count."""
    pending, count = [], 0
    for block in blocks:
        if pending and pending[0].shape[0] != block.shape[0]:
            yield np.concatenate(pending, axis=1)
            pending, count = [], 0
        pending.append(block)
        count += block.shape[1]
        if count >= _MIX_WINDOW:
            yield np.concatenate(pending, axis=1)
            pending, count = [], 0
    if pending:
        yield np.concatenate(pending, axis=1)


def _mono(windows: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    """The mean of the channels, unless they cancel out (phase-inverted stereo): then the loudest channel, for the
    rest of the file."""
    channel = None
    for x in windows:
        if x.shape[0] > 1 and channel is None and (channel := _cancelling(x)) is not None:
            logger.info("%s: channels cancel out when mixed (phase-inverted?); using channel %d", name, channel + 1)
        if x.shape[0] == 1:
            yield x[0]
        else:
            yield x.mean(axis=0) if channel is None else x[min(channel, x.shape[0] - 1)]


def _cancelling(x: np.ndarray) -> int | None:
    """The loudest channel if mixing would lose most of its energy, else None."""
    levels = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1))
    loudest = int(np.argmax(levels))
    mixed = np.sqrt(np.mean(np.square(x.mean(axis=0), dtype=np.float64)))
    if levels[loudest] >= _MIN_RMS and mixed < _CANCEL_RATIO * levels[loudest]:
        return loudest
    return None


def _chunks(monos: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Exactly ``size`` samples each; the last may be shorter."""
    parts, count = [], 0
    for mono in monos:
        parts.append(mono)
        count += len(mono)
        while count >= size:
            joined = np.concatenate(parts)
            parts, count = [joined[size:]], count - size
            yield _clean(joined[:size])
    if count:
        yield _clean(np.concatenate(parts))


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(x, -1.0, 1.0, out=x)


# ---- wording --------------------------------------------------------------------------------


def _hms(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{seconds:.1f} s"
