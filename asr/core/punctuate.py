"""CT-Transformer punctuation over the joined text of a file."""

from __future__ import annotations

import logging
import re

import torch

from asr.models.loading import LoadedModel
from asr.types import Punctuation

logger = logging.getLogger(__name__)

_RICH_TAG = re.compile(r"<\|[^|]*\|>")


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


def join_segment_texts(texts: list[str]) -> str:
    """Join per-segment texts as FunASR does before punctuation: no space between two
    Chinese chunks, one space otherwise."""
    cleaned = [t for t in (_RICH_TAG.sub("", text).strip() for text in texts) if t]
    if not cleaned:
        return ""
    joined = cleaned[0]
    for text in cleaned[1:]:
        joined += ("" if _is_cjk(joined[-1]) and _is_cjk(text[0]) else " ") + text
    return joined


class Punctuator:
    def __init__(self, model: LoadedModel, device: torch.device):
        self.model = model
        self.device = device

    @torch.inference_mode()
    def __call__(self, text: str) -> Punctuation:
        labels = tuple(self.model.module.punc_list)
        if not text.strip():
            return Punctuation("", (), labels)
        results, _ = self.model.module.inference(
            data_in=[text], key=["text"], tokenizer=self.model.tokenizer, device=str(self.device)
        )
        marks = results[0].get("punc_array")
        marks = tuple(int(m) for m in marks.tolist()) if marks is not None else ()
        return Punctuation(results[0]["text"], marks, labels)
