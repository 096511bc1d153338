"""A request's choices, checked against what this deployment loaded: ``build_options`` is the one
place the UI, the API, the CLI and batch runs turn their fields into TranscribeOptions, so that the
same bad request gets the same message everywhere, before anything is queued."""

from __future__ import annotations

from collections.abc import Sequence

from asr.config import Settings
from asr.core.hotwords import resolve_hotwords
from asr.errors import HotwordsUnavailableError, SpeakersError, SpeakersUnavailableError
from asr.types import TranscribeOptions


def speakers_available(settings: Settings) -> bool:
    return settings.models.profile.endswith("+spk")


def hotwords_available(settings: Settings) -> bool:
    return settings.models.asr_model == "seaco"


def _check_count(name: str, value: int | None, most: int) -> None:
    if value is not None and not 1 <= value <= most:
        raise SpeakersError(f"{name} must be between 1 and {most} (speakers.max_speakers), not {value}")


def build_options(
    settings: Settings,
    *,
    punctuate: bool = True,
    use_vad: bool = True,
    itn: bool | None = None,
    hotwords: str | Sequence[str] | None = None,
    speakers: bool = False,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> TranscribeOptions:
    """Checked options: ITN resolved to the deployment's default, hotwords parsed and merged with
    the deployment's file, speaker counts in range. A speaker count implies speakers on."""
    # the request's own words first, without the deployment's file: is it asking for hotwords at all?
    requested = resolve_hotwords(hotwords, settings.hotwords.model_copy(update={"file": None})) if hotwords else ()
    if requested and not hotwords_available(settings):
        raise HotwordsUnavailableError(
            "hotwords need the SeACo-Paraformer model, which this deployment does not run: set "
            "models.asr_model: seaco in config.yaml (and fetch it with `asr download`)"
        )
    # The deployment's own hotword file applies wherever its model can use it.
    words = resolve_hotwords(hotwords, settings.hotwords) if hotwords_available(settings) else ()

    counts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
    speakers = bool(speakers) or any(v is not None for v in counts.values())
    if speakers and not speakers_available(settings):
        raise SpeakersUnavailableError(
            "speaker labels need the CAM++ speaker model, which this deployment does not load: set "
            "models.profile: vad+asr+punc+spk in config.yaml (and fetch it with `asr download`)"
        )
    most = settings.speakers.max_speakers
    for name, value in counts.items():
        _check_count(name, value, most)
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise SpeakersError(f"min_speakers ({min_speakers}) is above max_speakers ({max_speakers})")
    if num_speakers is not None and (min_speakers is not None or max_speakers is not None):
        raise SpeakersError("give either num_speakers or a min_speakers/max_speakers range, not both")
    return TranscribeOptions(
        punctuate=punctuate,
        use_vad=use_vad,
        itn=settings.text.itn if itn is None else bool(itn),
        hotwords=words,
        speakers=speakers,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
    )
