"""Import only the FunASR modules a model config names.

``import funasr`` walks and imports every one of its ~700 submodules (7-8 s on two cores,
plus sklearn and friends). We register a bare ``funasr`` package object instead, so that
``import funasr.models.x`` runs only what ``x`` needs; FunASR's registry is filled by the
modules we import. A class name we do not know falls back to FunASR's full import.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import types
import warnings

logger = logging.getLogger(__name__)

#: Registry name -> module that registers it (the classes the pinned models and their
#: lighter siblings use). Anything else triggers the full ``import funasr``.
KNOWN_MODULES: dict[str, str] = {
    # models
    "BiCifParaformer": "funasr.models.bicif_paraformer.model",
    "Paraformer": "funasr.models.paraformer.model",
    "ParaformerStreaming": "funasr.models.paraformer_streaming.model",
    "SeacoParaformer": "funasr.models.seaco_paraformer.model",
    "FsmnVADStreaming": "funasr.models.fsmn_vad_streaming.model",
    "CTTransformer": "funasr.models.ct_transformer.model",
    "CAMPPlus": "funasr.models.campplus.model",
    # encoders / decoders / predictors
    "SANMEncoder": "funasr.models.sanm.encoder",
    "SANMEncoderChunkOpt": "funasr.models.scama.encoder",
    "ParaformerSANMDecoder": "funasr.models.paraformer.decoder",
    "CifPredictorV2": "funasr.models.paraformer.cif_predictor",
    "CifPredictorV3": "funasr.models.bicif_paraformer.cif_predictor",
    "FSMN": "funasr.models.fsmn_vad_streaming.encoder",
    # frontends / tokenizers
    "WavFrontend": "funasr.frontends.wav_frontend",
    "WavFrontendOnline": "funasr.frontends.wav_frontend",
    "CharTokenizer": "funasr.tokenizer.char_tokenizer",
}


def _install_bare_package() -> None:
    if "funasr" in sys.modules:
        return
    spec = importlib.util.find_spec("funasr")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("funasr is not installed")
    package = types.ModuleType("funasr")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__spec__ = spec
    with open(spec.submodule_search_locations[0] + "/version.txt", encoding="utf-8") as f:
        package.__version__ = f.read().strip()
    sys.modules["funasr"] = package
    _skip_source_lookups()


class _InspectWithoutSource(types.ModuleType):
    """``inspect`` as FunASR's registry sees it, minus the source lookup.

    Registering a class records its file and first line, which only FunASR's table printout
    shows; finding the line parses the class's whole source file with ``ast`` (~1.2 s of start-up
    for the modules a pinned model imports). The line is reported as 0 instead."""

    def __init__(self) -> None:
        import inspect

        super().__init__("inspect")
        self.__dict__.update(vars(inspect))
        self.getsourcelines = lambda target: ([], 0)


def _skip_source_lookups() -> None:
    register = importlib.import_module("funasr.register")
    if not isinstance(register.inspect, _InspectWithoutSource):
        register.inspect = _InspectWithoutSource()


def _quiet_import(module: str) -> types.ModuleType:
    # FunASR prints notices (about ffmpeg, urllib) and pydub warns about ffmpeg on import;
    # we never use those decoders, so they are only noise in our logs.
    # TorchScript is switched off while they import: FunASR scripts a few ONNX-export helpers at
    # import time (~0.5 s of compiling on two cores) that inference never calls.
    import torch.jit._state as jit_state

    jit_state.disable()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="pydub")
            return importlib.import_module(module)
    finally:
        jit_state.enable()


def import_registered(*names: str) -> None:
    """Make sure FunASR's registry knows ``names`` (model, encoder, frontend, ... classes)."""
    _install_bare_package()
    unknown = [n for n in names if n and n not in KNOWN_MODULES]
    for name in names:
        if name in KNOWN_MODULES:
            _quiet_import(KNOWN_MODULES[name])
    if unknown:
        logger.info("FunASR classes %s need FunASR's full import", unknown)
        full = _quiet_import("funasr")
        if hasattr(full, "import_submodules"):
            with contextlib.redirect_stdout(io.StringIO()):
                full.import_submodules("funasr")
        else:  # our bare package is in place: import everything below it
            import pkgutil

            for info in pkgutil.walk_packages(full.__path__, "funasr."):
                with contextlib.suppress(Exception):
                    _quiet_import(info.name)


def registry():
    """FunASR's class registry (``tables``)."""
    _install_bare_package()
    return _quiet_import("funasr.register").tables


def funasr_version() -> str:
    _install_bare_package()
    return getattr(sys.modules["funasr"], "__version__", "unknown")
