"""Playback copies of the audio a job transcribed, for the UI's transcript player.

The copy is made from the decoder's own output (16 kHz mono, the samples the timestamps count), written as
FLAC: every browser plays it, whatever the upload was (AMR, WMA and most video containers play nowhere), it is
about half the size of WAV, and a sentence's start time seeks to exactly the audio it was recognised from.
The decoding runs as the engine's does (``audio.isolate_decoder``): the file has already decoded once for its
job, but it is still a user's file.

Example::

    path = write_playback(upload, media_root(settings) / job.id, settings.audio, "meeting.m4a")

A video upload is also kept as it came (``keep_video``), for a player that shows the picture: the UI offers
it first and the FLAC after it, so a browser that cannot play the video's codec falls back to the sound.

They live with the job history (``storage.state_dir``/media), not in Gradio's temp files, so a reopened job
still plays after a restart; deleting the job deletes them.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from asr.config import AudioConfig, Settings
from asr.core.isolation import open_audio

logger = logging.getLogger(__name__)

PLAYBACK_NAME = "playback.flac"
SAMPLE_RATE = 16000
#: containers a browser may show the picture of, by suffix -> the type its <source> declares
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm",
               ".mkv": "video/webm", ".ogv": "video/ogg"}
VIDEO_STEM = "video"


def media_root(settings: Settings) -> Path:
    return settings.storage.state_path() / "media"


def playback_path(job_dir: Path) -> Path:
    return job_dir / PLAYBACK_NAME


def write_playback(source: Path, job_dir: Path, limits: AudioConfig, name: str | None = None) -> Path:
    """Decode ``source`` into ``job_dir/playback.flac`` (written to a temporary name, then renamed, so the
    player never meets half a file); raises the decoder's AudioError or an OSError, leaving nothing."""
    job_dir.mkdir(parents=True, exist_ok=True)
    target = playback_path(job_dir)
    partial = target.with_name(target.name + ".partial")
    _, chunks = open_audio(source, limits, name)
    try:
        with sf.SoundFile(partial, "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return target


def keep_video(source: Path, job_dir: Path) -> Path | None:
    """Keep ``source`` (the job's own link to the upload) as the job's video when its container is one a
    browser may play; None, and nothing kept, for any other file. The caller removes what is not kept."""
    suffix = source.suffix.lower()
    if suffix not in VIDEO_TYPES:
        return None
    target = job_dir / (VIDEO_STEM + suffix)
    os.replace(source, target)
    return target


def video_path(job_dir: Path) -> Path | None:
    """The job's kept video, if it has one."""
    found = [p for p in job_dir.glob(VIDEO_STEM + ".*") if p.suffix in VIDEO_TYPES] if job_dir.is_dir() else []
    return found[0] if found else None


def remove_orphans(media: Path, job_exists: Callable[[str], bool]) -> int:
    """Remove the playback audio of jobs the history no longer has (pruned by the retention limits while the
    service ran, or deleted by hand); run at start. Returns how many went."""
    removed = 0
    for job_dir in media.iterdir() if media.is_dir() else ():
        if job_dir.is_dir() and not job_exists(job_dir.name):
            shutil.rmtree(job_dir, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed the playback audio of %d job(s) no longer in the history", removed)
    return removed
