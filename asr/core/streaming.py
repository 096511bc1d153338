"""Streaming recognition with FunASR's streaming Paraformer (``ParaformerStreaming``), many streams at once.

This is ``ParaformerStreaming.inference`` / ``generate_chunk`` taken apart so that the chunks of
several streams go through the model together:

* buffering is FunASR's: a piece of audio is appended to what the stream holds, every whole
  600 ms chunk (9600 samples for ``chunk_size=(0, 10, 5)``) is recognised, the rest waits; on
  ``is_final`` the rest is recognised too, and a rest under 60 ms is the "tail chunk" (the
  encoder's look-ahead frames, as FunASR does it);
* features are FunASR's online fbank (``extract_fbank`` with the ``WavFrontendOnline`` and its
  per-stream cache), one stream at a time on the CPU, as FunASR does;
* the encoder's layers, the decoder and the output layer are FunASR's own modules
  (``EncoderLayerSANM.forward_chunk``, ``ParaformerSANMDecoder.forward_chunk``), run on the chunks
  of all the streams whose caches have the same shapes, stacked along the batch dimension;
* the CIF predictor is FunASR's ``calc_predictor_chunk``, one stream at a time (its cache update
  is written for a batch of one, and its firing loop is per stream anyway);
* text is FunASR's: the same argmax, the same token filter, ``sentence_postprocess`` per call.

What is reimplemented, and why:

* ``SANMEncoderChunkOpt.forward_chunk``'s wrapper around its layers (scaling, the streaming
  position encoding, the overlap with the previous chunk, the per-layer caches): FunASR keeps one
  position counter for the whole batch, and streams at different positions need one each. The
  position encoding is FunASR's ``encode`` on the chunk's own positions only (FunASR encodes every
  position from the start of the stream on every chunk, which grows with the stream's length; the
  values are the same, element by element).
* The decoder's FSMN caches are kept as their last ``kernel_size`` columns (FunASR keeps
  ``kernel_size + tokens - 1``; it only ever reads the last ``kernel_size - 1``), and a first call's
  cache (``None`` in FunASR: zero padding) is given as zeros, so that every stream's cache has one
  shape and chunks with different token counts can share a decoder call: the tokens are padded at
  the end, which the causal FSMN, the cross-attention and the position-wise layers never let reach
  the real tokens, and each stream's new FSMN cache is cut from its own real columns.

Batching is exact in the sense that matters: a stream's tokens are the same as when it is run on
its own, and the numbers agree to float rounding (stacked matrix products may round differently
than single ones). Streams are grouped by cache shape (the encoder's look-back cache fills up
over the first ``encoder_chunk_look_back`` chunks; the decoder's cross-attention cache exists
after the first chunk that produced tokens), so in the steady state all streams share one call.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Samples per encoder frame: FunASR's ``chunk_size[1] * 960`` (LFR of 6 frames of 10 ms at 16 kHz).
_SAMPLES_PER_FRAME = 960


@dataclass(frozen=True)
class StreamSettings:
    """How the streaming Paraformer is run; the defaults are FunASR's runtime's."""

    chunk_size: tuple[int, int, int] = (0, 10, 5)
    """Encoder frames (60 ms each): look-behind, the chunk itself, look-ahead."""
    encoder_chunk_look_back: int = 4
    """Chunks of keys and values each encoder self-attention keeps from the past."""
    decoder_chunk_look_back: int = 1
    """Chunks of encoder output the decoder's cross-attention keeps from the past."""

    def __post_init__(self) -> None:
        if len(self.chunk_size) != 3 or self.chunk_size[1] <= 0 or min(self.chunk_size) < 0:
            raise ValueError(f"chunk_size must be three non-negative frame counts, the middle > 0: {self.chunk_size}")
        for name in ("encoder_chunk_look_back", "decoder_chunk_look_back"):
            if getattr(self, name) < -1:
                raise ValueError(f"{name} must be -1 (everything), 0 or more: {getattr(self, name)}")

    @property
    def chunk_samples(self) -> int:
        """Samples per chunk (9600, 600 ms, for the defaults)."""
        return self.chunk_size[1] * _SAMPLES_PER_FRAME


@dataclass(eq=False)
class Stream:
    """One audio stream's state: FunASR's cache (as ``init_cache`` makes it, but for the decoder's FSMN
    caches, kept as zeros and then their last ``kernel_size`` columns, see the module's docstring) and
    the audio not yet recognised (FunASR's ``prev_samples``). Made by ``OnlineRecognizer.new_stream``;
    after a final piece it starts afresh. Its size does not grow with the stream's length."""

    cache: dict[str, Any]
    settings: StreamSettings = field(default_factory=StreamSettings)
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    samples_seen: int = 0

    def completes_chunk(self, samples: int) -> bool:
        """Whether ``samples`` more would complete a chunk, so that ``accept`` would run the model (else it
        only keeps them)."""
        return self.pending.size + samples >= self.settings.chunk_samples

    def cache_tensors(self) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor the stream keeps (for checks that nothing grows)."""
        shapes: dict[str, tuple[int, ...]] = {"pending": tuple(self.pending.shape)}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, torch.Tensor):
                shapes[prefix] = tuple(value.shape)
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            elif isinstance(value, list | tuple):
                for i, v in enumerate(value):
                    walk(f"{prefix}[{i}]", v)

        walk("cache", self.cache)
        return shapes


@dataclass
class _Row:
    """One chunk of one stream on its way through the model."""

    stream: Stream
    speech: torch.Tensor | None  # (1, frames, 560) features, None for the tail chunk
    is_final: bool
    encoder_in: torch.Tensor | None = None
    encoder_out: torch.Tensor | None = None
    embeds: torch.Tensor | None = None
    token_count: int = 0
    tokens: list[str] = field(default_factory=list)


class OnlineRecognizer:
    """Streaming recognition: per-stream state in a ``Stream``, chunks of many streams per forward pass.

    Not thread-safe: one worker owns it (and the module). ``module`` is a loaded, eval-mode
    ``ParaformerStreaming``; ``frontend`` its ``WavFrontendOnline``; ``tokenizer`` its ``CharTokenizer``.

    Example::

        rec = OnlineRecognizer(model.module, model.frontend, model.tokenizer, torch.device("cpu"))
        stream = rec.new_stream()
        for piece, last in pieces:
            print(rec.accept(stream, piece, is_final=last), end="")
    """

    def __init__(self, module: torch.nn.Module, frontend: Any, tokenizer: Any, device: torch.device | str,
                 settings: StreamSettings | None = None) -> None:
        self.module = module
        self.frontend = frontend
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.settings = settings or StreamSettings()
        if module.training:
            raise ValueError("the streaming model must be in eval mode (dropout would make it random)")
        encoder = module.encoder
        if type(encoder.embed).__name__ != "StreamSinusoidalPositionEncoder":
            raise ValueError(f"expected the encoder's streaming position encoding (input_layer pe_online), "
                             f"got {type(encoder.embed).__name__}")
        self._enc_size = encoder.output_size()
        self._layers = list(encoder.encoders0) + list(encoder.encoders)
        self._feat_dim = frontend.n_mels * frontend.lfr_m
        decoder = module.decoder
        self._dec_fsmn: list[int | None] = []  # kernel size per decoder FSMN cache slot (None: no FSMN)
        self._dec_channels = decoder.decoders[0].self_attn.fsmn_block.in_channels
        fsmn_layers = list(decoder.decoders) + (list(decoder.decoders2) if decoder.decoders2 is not None else [])
        for layer in fsmn_layers:
            attn = getattr(layer, "self_attn", None)
            if attn is None:
                self._dec_fsmn.append(None)
                continue
            k = attn.kernel_size
            # A zero cache stands for FunASR's first-call padding only if that padding is all on the left.
            if tuple(attn.pad_fn.padding) != (k - 1, 0):
                raise ValueError(f"decoder FSMN padding {attn.pad_fn.padding} is not causal; cannot batch it")
            self._dec_fsmn.append(k)

    # ---- streams -------------------------------------------------------------------------

    def new_stream(self, settings: StreamSettings | None = None) -> Stream:
        """A fresh stream: FunASR's ``init_cache`` with ``settings`` (a client's chunk sizes and look-backs;
        this recogniser's by default), on its device. Streams with different settings share one recogniser;
        only streams with the same settings share a forward pass."""
        settings = settings or self.settings
        return Stream(cache=self._init_cache(settings), settings=settings)

    def _init_cache(self, s: StreamSettings) -> dict[str, Any]:
        cache = self.module.init_cache(
            {}, chunk_size=list(s.chunk_size), encoder_chunk_look_back=s.encoder_chunk_look_back,
            decoder_chunk_look_back=s.decoder_chunk_look_back,
            encoder_conf={"output_size": self._enc_size},
            frontend_conf={"n_mels": self.frontend.n_mels, "lfr_m": self.frontend.lfr_m},
        )
        enc = cache["encoder"]
        for key in ("cif_hidden", "cif_alphas", "feats"):
            enc[key] = enc[key].to(self.device)
        # the decoder's FSMN caches start as zeros (FunASR: None, then zero padding; the same numbers)
        cache["decoder"]["decode_fsmn"] = [
            None if k is None else torch.zeros((1, self._dec_channels, k), device=self.device) for k in self._dec_fsmn
        ]
        cache.pop("prev_samples", None)  # kept as Stream.pending
        return cache

    # ---- public API ----------------------------------------------------------------------

    def accept(self, stream: Stream, samples: np.ndarray, is_final: bool) -> str:
        """Feed ``samples`` (float32, 16 kHz mono) to ``stream``; the text its whole chunks produced.

        Like ``AutoModel.generate(input=samples, cache=cache, is_final=is_final, chunk_size=...)``:
        incomplete chunks wait in the stream for the next piece, and after ``is_final`` the stream
        starts afresh."""
        return self.accept_many([(stream, samples, is_final)])[0]

    def accept_many(self, items: list[tuple[Stream, np.ndarray, bool]]) -> list[str]:
        """``accept`` for several streams, their chunks through the model together; a stream gets
        exactly the text it would get alone. Each stream at most once per call."""
        if len({id(s) for s, _, _ in items}) != len(items):
            raise ValueError("a stream may appear only once in one accept_many call")
        plans = [self._split(stream, samples, is_final) for stream, samples, is_final in items]
        tokens: list[list[str]] = [[] for _ in items]
        with torch.inference_mode():
            for r in range(max((len(p) for p in plans), default=0)):
                rows: list[tuple[int, _Row]] = []
                for i, plan in enumerate(plans):
                    if r < len(plan):
                        row = self._features(items[i][0], *plan[r])
                        if row is not None:
                            rows.append((i, row))
                self._forward([row for _, row in rows])
                for i, row in rows:
                    tokens[i].extend(row.tokens)
        from funasr.utils.postprocess_utils import sentence_postprocess

        texts = []
        for (stream, _, is_final), toks in zip(items, tokens, strict=True):
            texts.append(sentence_postprocess(toks)[0])
            if is_final:
                stream.cache = self._init_cache(stream.settings)
                stream.pending = np.zeros(0, dtype=np.float32)
        return texts

    # ---- buffering and features ------------------------------------------------------------

    def _split(self, stream: Stream, samples: np.ndarray, is_final: bool) -> list[tuple[np.ndarray, bool]]:
        """FunASR's buffering (``ParaformerStreaming.inference``): whole chunks now, the rest later."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        audio = np.concatenate([stream.pending, samples]) if stream.pending.size else samples
        stream.samples_seen += samples.size
        stride = stream.settings.chunk_samples
        n = len(audio) // stride + int(is_final)
        rest = 0 if is_final else len(audio) % stride
        stream.pending = audio[len(audio) - rest:].copy() if rest else np.zeros(0, dtype=np.float32)
        return [(audio[i * stride:(i + 1) * stride], is_final and i == n - 1) for i in range(n)]

    def _features(self, stream: Stream, chunk: np.ndarray, is_final: bool) -> _Row | None:
        if is_final and len(chunk) < _SAMPLES_PER_FRAME:
            # FunASR's tail chunk: no new features; the encoder reruns its look-ahead frames.
            stream.cache["encoder"]["tail_chunk"] = True
            return _Row(stream, None, True)
        from funasr.utils.load_utils import extract_fbank

        speech, _ = extract_fbank([torch.from_numpy(chunk)], data_type="sound", frontend=self.frontend,
                                  cache=stream.cache["frontend"], is_final=is_final)
        if speech.ndim != 3 or speech.shape[1] == 0:  # FunASR would fail here; nothing to recognise
            return None
        return _Row(stream, speech.to(self.device), is_final)

    # ---- the model -------------------------------------------------------------------------

    def _forward(self, rows: list[_Row]) -> None:
        if not rows:
            return
        for row in rows:
            self._encoder_input(row)
        groups: dict[tuple, list[_Row]] = defaultdict(list)
        for row in rows:
            opt = row.stream.cache["encoder"]["opt"]
            groups[(row.stream.settings, row.encoder_in.shape[1], _layer_cache_shapes(opt))].append(row)
        for group in groups.values():
            self._encode(group)
        for row in rows:
            enc = row.stream.cache["encoder"]
            embeds, token_length, _, _ = self.module.calc_predictor_chunk(
                row.encoder_out, None, cache={"encoder": enc}, is_final=row.is_final)
            row.token_count = int(token_length.round().long().max())
            row.embeds = embeds
        decode: dict[tuple, list[_Row]] = defaultdict(list)
        for row in rows:
            if row.token_count >= 1:  # FunASR skips the decoder (and keeps its cache) when nothing fired
                opt = row.stream.cache["decoder"]["opt"]
                decode[(row.stream.settings, row.encoder_out.shape[1], _layer_cache_shapes(opt))].append(row)
        for group in decode.values():
            self._decode(group)

    def _encoder_input(self, row: _Row) -> None:
        """``SANMEncoderChunkOpt.forward_chunk`` up to its layers, for one stream."""
        enc = row.stream.cache["encoder"]
        scale = self._enc_size ** 0.5
        if row.speech is None:
            # FunASR scales the tail chunk's input (its cached look-ahead frames, already scaled and
            # position-encoded) in place and then feeds the cache itself: scaled twice. Kept as it is.
            enc["feats"] = enc["feats"] * scale
            enc["start_idx"] += enc["feats"].shape[1]
            row.encoder_in = enc["feats"]
            return
        x = row.speech * scale
        frames, dim = x.shape[1], x.shape[2]
        start = enc["start_idx"]
        positions = torch.arange(start + 1, start + frames + 1)[None, :]
        x = x + self.module.encoder.embed.encode(positions, dim, x.dtype).to(x.device)
        enc["start_idx"] = start + frames
        overlap = torch.cat((enc["feats"], x), dim=1)
        s = row.stream.settings.chunk_size
        enc["feats"] = overlap[:, -(s[0] + s[2]):, :]
        row.encoder_in = overlap

    def _encode(self, rows: list[_Row]) -> None:
        s = rows[0].stream.settings  # one group: one setting
        x = torch.cat([r.encoder_in for r in rows], dim=0)
        caches = [r.stream.cache["encoder"]["opt"] for r in rows]
        new_caches: list[list[dict | None]] = [[None] * len(self._layers) for _ in rows]
        for li, layer in enumerate(self._layers):
            layer_cache = _stack_kv([c[li] if c is not None else None for c in caches])
            x, out_cache = layer.forward_chunk(x, layer_cache, list(s.chunk_size), s.encoder_chunk_look_back)
            for b, part in enumerate(_split_kv(out_cache, len(rows))):
                new_caches[b][li] = part
        encoder = self.module.encoder
        if encoder.normalize_before:
            x = encoder.after_norm(x)
        keep = s.encoder_chunk_look_back > 0 or s.encoder_chunk_look_back == -1
        for b, row in enumerate(rows):
            row.encoder_out = x[b:b + 1]
            if keep:
                row.stream.cache["encoder"]["opt"] = new_caches[b]

    def _decode(self, rows: list[_Row]) -> None:
        s = rows[0].stream.settings
        width = max(r.token_count for r in rows)
        memory = torch.cat([r.encoder_out for r in rows], dim=0)
        tgt = torch.cat([torch.nn.functional.pad(r.embeds[:, : r.token_count], (0, 0, 0, width - r.token_count))
                         for r in rows], dim=0)
        fsmn = [r.stream.cache["decoder"]["decode_fsmn"] for r in rows]
        opts = [r.stream.cache["decoder"]["opt"] for r in rows]
        cache = {
            "decode_fsmn": [None if k is None else torch.cat([f[j] for f in fsmn], dim=0)
                            for j, k in enumerate(self._dec_fsmn)],
            "opt": None if opts[0] is None else [_stack_kv([o[j] for o in opts]) for j in range(len(opts[0]))],
            "chunk_size": list(s.chunk_size),
            "decoder_chunk_look_back": s.decoder_chunk_look_back,
        }
        logits = self.module.decoder.forward_chunk(memory, tgt, cache)
        scores = torch.log_softmax(logits, dim=-1)
        keep_opt = s.decoder_chunk_look_back > 0 or s.decoder_chunk_look_back == -1
        m = self.module
        for b, row in enumerate(rows):
            dec = row.stream.cache["decoder"]
            new_fsmn = []
            for j, k in enumerate(self._dec_fsmn):
                if k is None:
                    new_fsmn.append(None)
                    continue
                # FunASR's cache after this call: [last k-1 columns before | this call's tokens]; keep
                # this stream's real tokens only, and of those the last k columns (all FunASR reads).
                c = cache["decode_fsmn"][j][b:b + 1, :, : k - 1 + row.token_count]
                new_fsmn.append(c[:, :, -k:])
            dec["decode_fsmn"] = new_fsmn
            if keep_opt:
                dec["opt"] = [_split_kv(o, len(rows))[b] for o in cache["opt"]]
            ids = scores[b, : row.token_count].argmax(dim=-1).tolist()
            ids = [t for t in ids if t not in (m.eos, m.sos, m.blank_id)]
            row.tokens = list(self.tokenizer.ids2tokens(ids))


def _layer_cache_shapes(caches: list[dict | None] | None) -> tuple | None:
    if caches is None:
        return None
    return tuple(None if c is None else tuple(c["k"].shape) for c in caches)


def _stack_kv(parts: list[dict | None]) -> dict | None:
    if parts[0] is None:
        return None
    return {"k": torch.cat([p["k"] for p in parts], dim=0), "v": torch.cat([p["v"] for p in parts], dim=0)}


def _split_kv(cache: dict | None, n: int) -> list[dict | None]:
    if cache is None:
        return [None] * n
    return [{"k": cache["k"][b:b + 1], "v": cache["v"][b:b + 1]} for b in range(n)]
