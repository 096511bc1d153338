"""Mandarin speech from espeak-ng for the benchmark scripts: sentences in random order with pauses.

Generated, not downloaded, so that the benchmarks run offline; the seed fixes the order, so a file
of a given length is the same on every machine with the same espeak-ng."""
from __future__ import annotations

import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = [
    "今天天气很好，我们去公园散步吧。", "你觉得这个主意怎么样？", "语音识别服务可以离线运行。",
    "会议将在下午三点开始，请大家准时参加。", "这个季度的销售额比去年同期增长了百分之二十。",
    "请把文件发到我的邮箱，我明天上午回复你。", "人工智能正在改变我们的工作方式和生活习惯。",
    "北京是中国的首都，也是一座历史悠久的城市。", "我们需要在周五之前完成这个项目的测试。",
    "火车站离这里不远，走路大概十分钟就到了。", "他每天早上六点起床，然后去跑步锻炼身体。",
    "这家餐厅的饺子非常好吃，价格也很便宜。", "请问你们周末营业吗？我想带家人来看看。",
    "新的软件版本修复了很多问题，运行速度也更快了。", "天气预报说明天有大雨，出门记得带伞。",
]


def speak(sentences: list[str], to_16k: bool = False) -> tuple[list[np.ndarray], int]:
    """Each sentence spoken once by espeak-ng (Mandarin voice, 160 words/min): the clips and their rate.

    espeak-ng speaks at 22.05 kHz. ``to_16k`` resamples once, here, so that pipelines compared on the
    file all read the same samples instead of each resampling in its own way."""
    clips, rate = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(sentences):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "cmn", "-s", "160", "-w", str(wav), text], check=True)
            if to_16k:
                from asr.core.audio import load_audio

                audio, rate = load_audio(wav), 16000
            else:
                audio, rate = sf.read(wav, dtype="float32")
            clips.append(audio)
    return clips, rate


def write_speech(path: Path, seconds: float, clips: list[np.ndarray], rate: int, seed: float,
                 pauses: tuple[float, ...] = (0.3, 0.5, 0.8, 1.2, 2.0)) -> Path:
    """``seconds`` of the clips in a seeded random order, each followed by a pause, as 16-bit WAV."""
    rng = random.Random(seed)
    total, parts, length = int(seconds * rate), [], 0
    while length < total:
        clip = clips[rng.randrange(len(clips))]
        pause = np.zeros(int(rate * rng.choice(pauses)), np.float32)
        parts += [clip, pause]
        length += len(clip) + len(pause)
    sf.write(path, np.concatenate(parts)[:total], rate, subtype="PCM_16")
    return path
