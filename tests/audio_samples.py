"""Test audio files, generated at test time (no binary fixtures in the repository).

``Samples(directory)`` writes each file the first time it is asked for and returns its
path; the espeak-ng recording everything else is derived from is made once per
``Samples`` object. Low-level writers (``write_wav``, ``encode``, ...) are plain
functions so a test can build a one-off file.
"""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import soundfile as sf

SPEECH_TEXT = "今天天气很好。我们去公园散步吧。"

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}

# WAVE format tags
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
WAVE_FORMAT_UNKNOWN = 0x7777  # registered to nobody: no decoder exists for it
_KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


# ---- signals --------------------------------------------------------------------------------


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Crude linear-interpolation resampling; good enough to make test input."""
    if src_rate == dst_rate:
        return x.astype(np.float32)
    n = round(len(x) * dst_rate / src_rate)
    return np.interp(np.arange(n) * src_rate / dst_rate, np.arange(len(x)), x).astype(np.float32)


def espeak(path: Path, text: str = SPEECH_TEXT) -> Path:
    # argv list, no shell: the text never meets a shell parser
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(path), text], check=True, timeout=60)
    return path


# ---- writers ----------------------------------------------------------------------------


def _as_frames(x: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) -> (samples, channels) float64."""
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def _pcm_bytes(x: np.ndarray, encoding: str) -> tuple[bytes, int, int]:
    """Interleaved sample bytes, bits per sample and the WAVE format tag."""
    x = _as_frames(x)
    if encoding == "u8":
        return (np.clip(np.round(x * 127 + 128), 0, 255).astype(np.uint8).tobytes(), 8, 1)
    if encoding == "s16":
        return (np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes(), 16, 1)
    if encoding == "s24":
        v = np.clip(np.round(x * 8388607), -8388608, 8388607).astype("<i4")
        return (v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes(), 24, 1)
    if encoding == "s32":
        v = np.clip(np.round(x * 2147483647), -2147483648, 2147483647).astype("<i4")
        return (v.tobytes(), 32, 1)
    if encoding == "f32":
        return (x.astype("<f4").tobytes(), 32, 3)
    raise ValueError(encoding)


def wav_bytes(
    data: bytes,
    *,
    channels: int,
    rate: int,
    bits: int,
    tag: int,
    extensible: bool = False,
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file around ``data``; ``data_size`` lets the header lie."""
    block = channels * ((bits + 7) // 8)
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_EXTENSIBLE if extensible else tag,
                      channels, rate, rate * block, block, bits)
    if extensible:
        mask = {1: 0x4, 2: 0x3, 6: 0x3F}.get(channels, 0)
        fmt += struct.pack("<HHI", 22, bits, mask) + struct.pack("<H", tag) + _KSDATAFORMAT_TAIL
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size)
    body += data + (b"\x00" if len(data) % 2 else b"")
    riff_size = min(0xFFFFFFFF, len(body) + (size - len(data)))
    return b"RIFF" + struct.pack("<I", riff_size) + body


def write_wav(path: Path, x: np.ndarray, rate: int, encoding: str = "s16",
              *, extensible: bool = False) -> Path:
    data, bits, tag = _pcm_bytes(x, encoding)
    channels = _as_frames(x).shape[1]
    path.write_bytes(wav_bytes(data, channels=channels, rate=rate, bits=bits, tag=tag,
                               extensible=extensible))
    return path


def encode(
    path: Path,
    x: np.ndarray,
    rate: int,
    codec: str,
    *,
    container: str | None = None,
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
    block_s: float = 1.0,
) -> Path:
    """Encode ``x`` (samples[, channels]) with PyAV, feeding it in blocks."""
    with av.open(str(path), "w", format=container) as out:
        _mux_audio(out, _audio_streams(out, [(_as_frames(x), rate, codec, bit_rate, options)]))
    return path


def _audio_streams(out, specs):
    result = []
    for frames, rate, codec, bit_rate, options in specs:
        frames = np.asarray(frames, dtype=np.float32)
        stream = out.add_stream(codec, rate=rate, layout=_LAYOUTS[frames.shape[1]],
                                options=options or {})
        if bit_rate:
            stream.bit_rate = bit_rate
        result.append((stream, frames, rate))
    return result


def _mux_audio(out, streams, block: int = 4096) -> None:
    for stream, frames, rate in streams:
        for start in range(0, len(frames), block):
            # packed: PyAV mishandles planar frames of 8 or more channels
            part = np.ascontiguousarray(frames[start:start + block]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="flt", layout=stream.layout.name)
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_video(path: Path, seconds: float, *, audio: np.ndarray | None = None,
                rate: int = 48000, audio_codec: str = "aac",
                extra_audio: list[np.ndarray] = ()) -> Path:
    """A small video (h264 if available, else mpeg4) with optional audio tracks after it."""
    with av.open(str(path), "w") as out:
        try:
            video = out.add_stream("h264", rate=10)
        except ValueError:  # UnknownCodecError: an FFmpeg build without an H.264 encoder
            video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        tracks = [a for a in [audio, *extra_audio] if a is not None]
        streams = _audio_streams(out, [(_as_frames(a), rate, audio_codec, None, None)
                                       for a in tracks])
        for i in range(round(seconds * 10)):
            img = np.full((48, 64, 3), (i * 25) % 256, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode(None))
        _mux_audio(out, streams)
    return path


def flac_set_length(path: Path, samples: int) -> Path:
    """Overwrite FLAC STREAMINFO's total-samples field (0 means "unknown" to FLAC readers)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    at = 8 + 10  # 4 magic + 4 block header + min/max block and frame sizes
    word = int.from_bytes(data[at:at + 8], "big") & ~((1 << 36) - 1)
    data[at:at + 8] = (word | samples).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def flac_hide_end(path: Path, nbytes: int = 512) -> Path:
    """Append a copy of the first ``nbytes`` of a FLAC file's frames: its last frame headers then number
    early frames, so the end of the file no longer tells how much audio it holds (a forged tail)."""
    data = path.read_bytes()
    pos = 4
    while True:  # metadata blocks: 1 bit "last", 7 bits type, 24 bits length
        last, size = data[pos] & 0x80, int.from_bytes(data[pos + 1:pos + 4], "big")
        pos += 4 + size
        if last:
            break
    path.write_bytes(data + data[pos:pos + nbytes])
    return path


def scramble_adts_payloads(src: Path, dst: Path, seed: int = 0) -> Path:
    """Keep every ADTS frame header, replace every payload with noise: nothing decodes."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    pos = 0
    while pos + 7 <= len(data):
        assert data[pos] == 0xFF and data[pos + 1] & 0xF0 == 0xF0
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        data[pos + 7:pos + length] = rng.integers(0, 256, length - 7, dtype=np.uint8).tobytes()
        pos += length
    dst.write_bytes(bytes(data))
    return dst


def truncate(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    dst.write_bytes(data[:n])
    return dst


def flip_bits(src: Path, dst: Path, *, flips: int, seed: int, skip: int = 1024) -> Path:
    """Flip ``flips`` random bits after the first ``skip`` bytes (leave headers alone)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(skip, len(data), size=flips):
        data[pos] ^= 1 << int(rng.integers(0, 8))
    dst.write_bytes(bytes(data))
    return dst


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\xff\x00" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not audio\n" * 50)
    return buf.getvalue()


FAKES: dict[str, Callable[[], bytes]] = {
    "pdf": lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                   b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
    "jpeg": lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
                    + bytes(range(256)) * 4 + b"\xff\xd9",
    "png": _png,
    "zip": _zip,
    "html": lambda: b"<!DOCTYPE html>\n<html><head><title>Upload</title></head>"
                    b"<body><p>Not audio</p></body></html>\n" * 20,
    "text": lambda: ("这不是音频文件。This is a plain text file renamed.\n" * 40).encode(),
}


# ---- the catalogue --------------------------------------------------------------------------


class Samples:
    """Builds named test files in ``directory`` on first request, then reuses them."""

    SPEECH_RATE = 22050  # what espeak-ng writes

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._speech: np.ndarray | None = None

    def _make(self, name: str, build: Callable[[Path], object]) -> Path:
        path = self.dir / name
        if not path.exists():
            build(path)
        return path

    # -- sources
    def speech_wav(self) -> Path:
        return self._make("speech_espeak.wav", espeak)

    def speech(self, rate: int | None = None) -> np.ndarray:
        """The espeak recording as float32 mono, at ``rate`` (default: its own)."""
        if self._speech is None:
            x, sr = sf.read(self.speech_wav(), dtype="float32", always_2d=True)
            assert sr == self.SPEECH_RATE
            self._speech = x[:, 0]
        return resample(self._speech, self.SPEECH_RATE, rate or self.SPEECH_RATE)

    # -- plain WAV
    def wav(self, encoding: str = "s16", rate: int = 16000, *, extensible: bool = False) -> Path:
        name = f"speech_{encoding}_{rate}{'_ext' if extensible else ''}.wav"
        return self._make(name, lambda p: write_wav(p, self.speech(rate), rate, encoding,
                                                    extensible=extensible))

    def tone_wav(self, seconds: float, rate: int, channels: int = 1) -> Path:
        x = np.repeat(tone(seconds, rate)[:, None], channels, axis=1)
        return self._make(f"tone_{seconds}s_{rate}_{channels}ch.wav",
                          lambda p: write_wav(p, x, rate, "s16", extensible=channels > 2))

    def silence_wav(self, seconds: float = 2.0, rate: int = 16000) -> Path:
        return self._make(f"silence_{seconds}.wav",
                          lambda p: write_wav(p, np.zeros(round(seconds * rate)), rate))

    def mulaw_wav(self) -> Path:
        return self._make("speech_mulaw_8k.wav", lambda p: encode(
            p, self.speech(8000), 8000, "pcm_mulaw", container="wav"))

    def left_only_wav(self) -> Path:
        s = self.speech(16000)
        return self._make("stereo_left_only.wav",
                          lambda p: write_wav(p, np.stack([s, np.zeros_like(s)], 1), 16000))

    def phase_inverted_wav(self) -> Path:
        s = self.speech(16000)
        return self._make("stereo_phase_inverted.wav",
                          lambda p: write_wav(p, np.stack([s, -s], 1), 16000))

    def six_channel_wav(self) -> Path:
        s = self.speech(48000)
        x = np.stack([s * g for g in (0.5, 0.5, 1.0, 0.0, 0.3, 0.3)], 1)  # speech mostly in C
        return self._make("speech_5.1_48k.wav", lambda p: write_wav(p, x, 48000, extensible=True))

    def eight_channel_flac(self) -> Path:
        """7.1 FLAC (decoded as planar 8-channel frames), speech in the first channel only."""
        s = self.speech(48000)
        x = np.zeros((len(s), 8), np.float32)
        x[:, 0] = s
        return self._make("speech_7.1.flac", lambda p: encode(p, x, 48000, "flac"))

    def nan_inf_wav(self) -> Path:
        x = tone(1.0, 16000).astype(np.float64)
        x[100:200], x[1000], x[2000], x[3000:3010] = np.nan, np.inf, -np.inf, 7.5  # 7.5: out of range
        return self._make("nan_inf_f32.wav", lambda p: write_wav(p, x, 16000, "f32"))

    def header_only_wav(self) -> Path:
        return self._make("header_only.wav", lambda p: p.write_bytes(
            wav_bytes(b"", channels=1, rate=16000, bits=16, tag=WAVE_FORMAT_PCM)))

    def unknown_codec_wav(self) -> Path:
        return self._make("unknown_tag_7777.wav", lambda p: p.write_bytes(
            wav_bytes(b"\x01\x02" * 16000, channels=1, rate=16000, bits=16, tag=WAVE_FORMAT_UNKNOWN)))

    def lying_wav(self) -> Path:
        """One second of audio, but the header claims about 37 hours."""
        data = _pcm_bytes(tone(1.0, 16000), "s16")[0]
        return self._make("lies_huge_size.wav", lambda p: p.write_bytes(wav_bytes(
            data, channels=1, rate=16000, bits=16, tag=WAVE_FORMAT_PCM, data_size=0xFFFFFF00)))

    # -- compressed
    def flac(self, rate: int = 44100) -> Path:
        return self._make(f"speech_{rate}.flac",
                          lambda p: encode(p, self.speech(rate), rate, "flac"))

    def mp3(self, rate: int = 44100) -> Path:
        return self._make(f"speech_{rate}.mp3",
                          lambda p: encode(p, self.speech(rate), rate, "libmp3lame", bit_rate=64000))

    def vbr_mp3_without_xing(self, seconds: float = 60.0, rate: int = 44100) -> Path:
        """VBR MP3 with no Xing/Info frame: 3 s of loud noise (large frames), then silence (small ones), so the
        length FFmpeg guesses from the first frames' bit rate is far too short."""
        x = np.zeros(round(seconds * rate), np.float32)
        x[: 3 * rate] = np.clip(0.5 * np.random.default_rng(0).standard_normal(3 * rate), -1, 1)

        def build(p: Path) -> None:
            with av.open(str(p), "w", format="mp3", options={"write_xing": "0"}) as out:
                stream = out.add_stream("libmp3lame", rate=rate, layout="mono",
                                        options={"flags": "+qscale", "global_quality": str(2 * 118)})  # -q:a 2
                _mux_audio(out, [(stream, x[:, None], rate)])
        return self._make(f"vbr_no_xing_{seconds}s.mp3", build)

    def m4a(self, rate: int = 44100) -> Path:
        return self._make(f"speech_{rate}.m4a",
                          lambda p: encode(p, self.speech(rate), rate, "aac", bit_rate=64000))

    def ogg_vorbis(self) -> Path:
        s = self.speech(44100)  # FFmpeg's own Vorbis encoder only does stereo
        return self._make("speech.ogg", lambda p: encode(
            p, np.stack([s, s], 1), 44100, "vorbis", container="ogg",
            options={"strict": "experimental"}))

    def ogg_opus(self) -> Path:
        return self._make("speech.opus", lambda p: encode(
            p, self.speech(48000), 48000, "libopus", container="ogg", bit_rate=24000))

    def webm_opus(self) -> Path:
        s = self.speech(48000)  # browsers' MediaRecorder: Opus in WebM, usually stereo
        return self._make("speech.webm", lambda p: encode(
            p, np.stack([s, s], 1), 48000, "libopus", container="webm", bit_rate=32000))

    def amr(self) -> Path:
        return self._make("speech.amr", lambda p: encode(
            p, self.speech(8000), 8000, "libopencore_amrnb", container="amr", bit_rate=12200))

    def other_codec(self, codec: str) -> Path:
        """Less common codecs on the allowlist, each in a container it really comes in."""
        s16, s48 = self.speech(16000), self.speech(48000)
        recipes = {
            "adpcm_ima_wav": ("speech_adpcm.wav", s16, 16000, "wav", None),
            "alac": ("speech_alac.m4a", self.speech(44100), 44100, None, None),
            "ac3": ("speech_ac3.mkv", np.stack([s48, s48], 1), 48000, "matroska", None),
            "wmav2": ("speech.wma", np.stack([s16, s16], 1), 16000, "asf", 64000),
            "aac-7.1": ("speech_7.1.m4a", np.repeat(s48[:, None], 8, 1), 48000, None, None),
        }
        name, x, rate, container, bit_rate = recipes[codec]
        return self._make(name, lambda p: encode(p, x, rate, codec.split("-")[0],
                                                 container=container, bit_rate=bit_rate))

    def in_container(self, container: str, codec: str, suffix: str) -> Path:
        """16 kHz speech in a given muxer with a given encoder (for the demuxer allowlist)."""
        return self._make(f"speech_{codec}{suffix}", lambda p: encode(
            p, self.speech(16000), 16000, codec, container=container))

    def mkv(self) -> Path:
        return self._make("speech.mkv", lambda p: encode(
            p, self.speech(48000), 48000, "libopus", container="matroska"))

    def mkv_two_tracks(self) -> Path:
        """First audio track: a tone; second: silence. Only the first may be used."""
        def build(p: Path) -> None:
            with av.open(str(p), "w", format="matroska") as out:
                specs = [(_as_frames(tone(2.0, 48000)), 48000, "flac", None, None),
                         (_as_frames(np.zeros(96000, np.float32)), 48000, "flac", None, None)]
                _mux_audio(out, _audio_streams(out, specs))
        return self._make("two_tracks.mkv", build)

    def mp4_video(self) -> Path:
        s = self.speech(48000)
        return self._make("video_with_audio.mp4",
                          lambda p: write_video(p, len(s) / 48000, audio=s))

    def mp4_video_only(self) -> Path:
        return self._make("video_only.mp4", lambda p: write_video(p, 2.0))

    def mkv_video(self) -> Path:
        s = self.speech(48000)
        return self._make("video_with_audio.mkv", lambda p: write_video(
            p, len(s) / 48000, audio=s, audio_codec="libopus"))

    # -- damaged
    def truncated(self, src: Path, keep: float) -> Path:
        return self._make(f"truncated_{keep}_{src.name}", lambda p: truncate(src, p, keep))

    def bit_flipped(self, src: Path, flips: int = 40, seed: int = 1234) -> Path:
        return self._make(f"flipped_{flips}_{seed}_{src.name}",
                          lambda p: flip_bits(src, p, flips=flips, seed=seed))

    def garbage_after(self, magic: bytes, name: str, size: int = 20000, seed: int = 7) -> Path:
        """A known container signature followed by noise: starts like audio, isn't."""
        junk = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
        return self._make(name, lambda p: p.write_bytes(magic + junk))

    def adts_nothing_decodes(self) -> Path:
        clean = self._make("speech.aac", lambda p: encode(
            p, self.speech(44100), 44100, "aac", container="adts"))
        return self._make("scrambled.aac", lambda p: scramble_adts_payloads(clean, p))

    def mp2(self) -> Path:
        return self._make("speech.mp2", lambda p: encode(p, self.speech(44100), 44100, "mp2"))

    def avi(self) -> Path:
        return self._make("speech.avi", lambda p: encode(p, self.speech(16000), 16000, "pcm_s16le"))

    def random_bytes(self, size: int = 50000, seed: int = 5) -> Path:
        return self._make("random_bytes.wav", lambda p: p.write_bytes(
            np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()))

    def fake(self, kind: str, suffix: str = ".wav") -> Path:
        return self._make(f"fake_{kind}{suffix}", lambda p: p.write_bytes(FAKES[kind]()))

    def empty(self) -> Path:
        return self._make("empty.wav", lambda p: p.write_bytes(b""))

    # -- long files
    def long_flac(self, seconds: float, rate: int = 8000, *, silent: bool = False,
                  claim_s: float | None = None, hide_end: bool = False) -> Path:
        """A long FLAC, written block by block so generating it needs little memory.

        ``claim_s`` makes the header lie about the length (0: "unknown"); ``hide_end`` forges the tail too, so
        that its last frames' numbers do not give the real length away either.
        """
        name = f"long_{seconds}s_{rate}_{'silent' if silent else 'tone'}_claims{claim_s}{'_hidden' * hide_end}.flac"

        def build(p: Path) -> None:
            block = tone(10.0, rate, freq=300.0, amp=0.3)  # whole periods: seamless loop
            if silent:
                block[:] = 0
            with av.open(str(p), "w") as out:
                stream = out.add_stream("flac", rate=rate, layout="mono")
                n = round(seconds * rate)
                for start in range(0, n, len(block)):
                    part = block[: min(len(block), n - start)][None, :]
                    frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
                    frame.sample_rate, frame.pts = rate, start
                    out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
            if claim_s is not None:
                flac_set_length(p, round(claim_s * rate))
            if hide_end:
                flac_hide_end(p)
        return self._make(name, build)
