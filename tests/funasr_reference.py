"""Reference run of FunASR's own AutoModel, in its own process (it needs FunASR's full import).

    python tests/funasr_reference.py AUDIO.npy OUT.json ASR_DIR VAD_DIR PUNC_DIR MAX_SEGMENT_MS [MAX_END_SILENCE_MS]
"""

import json
import sys

import numpy as np


def main() -> None:
    audio_path, out_path, asr_dir, vad_dir, punc_dir, max_segment = sys.argv[1:7]
    vad_kwargs = {"max_single_segment_time": int(max_segment)}
    if len(sys.argv) > 7:
        vad_kwargs["max_end_silence_time"] = int(sys.argv[7])
    from funasr import AutoModel

    model = AutoModel(
        model=asr_dir, vad_model=vad_dir, punc_model=punc_dir, device="cpu",
        disable_update=True, disable_pbar=True, log_level="ERROR",
        frontend_conf={"dither": 0.0}, vad_kwargs=vad_kwargs,
    )
    audio = np.load(audio_path)
    result = model.generate(input=audio)[0] if len(audio) else {"text": "", "timestamp": []}
    vad = model.inference(audio, model=model.vad_model, kwargs=model.vad_kwargs)[0]["value"]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"text": result.get("text", ""), "timestamp": result.get("timestamp", []), "vad": vad}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
