"""What a job's stage and kind are called, in English and in Chinese: one table for the UI and the API.

A job's ``stage`` is an id: ``queued`` and ``starting`` (the engine's), then the pipeline's
(``asr.types.STAGES``, the furthest one reached). Users see the words below, never the ids.
"""

from __future__ import annotations

from asr.service.language import Language

#: stage id -> (English, Chinese)
STAGE_NAMES: dict[str, tuple[str, str]] = {
    "queued": ("waiting in queue", "排队等待"),
    "starting": ("starting", "正在开始"),
    "decode": ("decode", "解码"),
    "vad": ("VAD", "语音检测"),
    "asr": ("recognition", "识别"),
    "punc": ("punctuation", "标点"),
    "spk": ("speakers", "说话人"),
    "itn": ("numbers", "数字规整"),
    "done": ("done", "完成"),
}


def stage_name(stage: str | None, language: Language = "en") -> str:
    """The words for ``stage`` in ``language``; an id this table does not know is shown as it is."""
    if stage is None:
        return ""
    names = STAGE_NAMES.get(stage)
    if names is None:
        return stage
    return names[1] if language == "zh" else names[0]


#: job kind -> (English, Chinese): what the History says a job is
KIND_NAMES: dict[str, tuple[str, str]] = {
    "transcribe": ("transcript", "转写"),
    "vad": ("speech segments (VAD)", "语音检测"),
}


def kind_name(kind: str, language: Language = "en") -> str:
    """The words for a job kind (``JobKind.value``) in ``language``."""
    names = KIND_NAMES.get(kind, (kind, kind))
    return names[1] if language == "zh" else names[0]


def stage_names(stage: str | None) -> dict[str, str] | None:
    """Both languages' words for ``stage``, as the API gives them; None for no stage."""
    if stage is None:
        return None
    return {"en": stage_name(stage, "en"), "zh": stage_name(stage, "zh")}
