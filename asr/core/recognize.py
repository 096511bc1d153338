"""Paraformer recognition of a batch of speech segments, with per-token timestamps.

This is ``BiCifParaformer.inference`` taken apart so that a batch is decoded once:

* the CIF predictor runs without its timestamp branch (FunASR runs that BLSTM twice per
  batch and throws the first result away);
* padding is zeroed before the predictor and the timestamp branch's BLSTM sees packed
  sequences, so a short segment batched with a long one gets the tokens and timestamps it
  would get alone (FunASR's batches let padding leak into both);
* text and timestamp post-processing are FunASR's own functions, so the fp32 output is
  token-identical to FunASR's.

A plain Paraformer (no timestamp branch, e.g. a lighter model) gets its timestamps from the
CIF peaks, as FunASR does for it.

SeACo-Paraformer (a BiCif Paraformer with a bias encoder and a bias decoder) decodes as above
without hotwords. With hotwords it follows ``SeacoParaformer._seaco_decode_with_ASF``:

* the hotwords' embedding (the bias encoder's LSTM over each hotword's tokens) depends only on
  the hotword list, so it is computed once per list and cached (the last few lists), not once
  per segment or per batch as FunASR does;
* with 50 hotwords or more FunASR keeps, for each decode, the 50 entries its attention scores
  highest, plus the ``<s>`` entry (again, if it was among them); it scores the first segment of
  a batch only and applies that to all.
  We score each segment on its own, which is what FunASR gives a segment decoded alone (as it
  does on CPU), so a segment's text does not depend on what it is batched with;
* the bias decoder runs on the whole batch; per token, its answer replaces the decoder's
  unless it says NO_BIAS.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from asr.core.fbank import fast_fbank
from asr.errors import HotwordsUnavailableError
from asr.models.loading import LoadedModel
from asr.models.precision import compute_dtype, cpu_has_bf16
from asr.types import RecognizedSegment

logger = logging.getLogger(__name__)

#: FunASR's LFR frontend emits one feature frame per 60 ms (10 ms shift x LFR 6).
FRAME_MS = 60
#: Tokens FunASR's text post-processing removes.
_DROPPED_TOKENS = frozenset({"<s>", "</s>", "<unk>", "<OOV>"})
#: SeACo's hotword filter (ASF): with more hotwords than this, each decode keeps this many.
#: FunASR's default in ``_seaco_decode_with_ASF``, which ``inference`` never overrides; so is the
#: merge weight 1.0, under which a token is the bias decoder's unless it says NO_BIAS.
ASF_KEEP = 50
#: Hotword lists whose embeddings are kept (each is hotwords x inner_dim floats: 0.4 MB for 200).
HOTWORD_CACHE_SIZE = 8
#: CJK characters and digits: a word FunASR splits into characters when the seg_dict lacks it.
_CHARACTERWISE = re.compile(r"^[\u4E00-\u9FA50-9]+$")


def _read_seg_dict(path) -> dict[str, str]:
    """FunASR's ``load_seg_dict``: each line is a word and the tokens it splits into."""
    entries = {}
    with open(path, encoding="utf8") as f:
        for line in f:
            parts = line.strip().split()
            if parts:
                entries[parts[0]] = " ".join(parts[1:])
    return entries


def _split_directions(blstm: torch.nn.LSTM) -> tuple[torch.nn.LSTM, torch.nn.LSTM]:
    """Two one-way LSTMs sharing the bidirectional one's weights."""
    directions = []
    for suffix in ("", "_reverse"):
        one = torch.nn.LSTM(blstm.input_size, blstm.hidden_size, 1, bias=blstm.bias, batch_first=True,
                            device="meta")
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            if hasattr(blstm, name + suffix):
                setattr(one, name, getattr(blstm, name + suffix))
        one.flatten_parameters()
        directions.append(one.eval())
    return directions[0], directions[1]


class Recognizer:
    """Decode batches of 16 kHz float32 segments with one loaded Paraformer."""

    def __init__(self, model: LoadedModel, device: torch.device, precision: str = "fp32"):
        self.model = model
        self.device = device
        self.dtype = compute_dtype(precision)
        # Reduced modes also take the vectorised fbank; fp32 keeps FunASR's, bit for bit.
        self.fast_features = precision != "fp32"
        self.module = model.module
        self.frontend = model.frontend
        self.tokenizer = model.tokenizer
        self.predictor = self.module.predictor
        predictor_module = sys.modules[type(self.predictor).__module__]
        self._cif = predictor_module.cif
        self._cif_wo_hidden = predictor_module.cif_wo_hidden
        self._has_timestamp_branch = hasattr(self.predictor, "get_upsample_timestamp")
        self._blstm_dtype = torch.float32
        if self._has_timestamp_branch and getattr(self.predictor, "upsample_type", "") == "cnn_blstm":
            # In reduced modes the timestamp BLSTM runs in bf16 where the CPU has it (2x faster
            # than fp32; dynamic int8 gains nothing on an LSTM here).
            if precision in ("bf16", "int8") and (device.type == "cuda" or cpu_has_bf16()):
                self._blstm_dtype = torch.bfloat16 if device.type == "cpu" or precision == "bf16" else torch.float32
            self.predictor.blstm.to(self._blstm_dtype)
            self._blstm_directions = _split_directions(self.predictor.blstm)
        from funasr.models.transformer.utils.nets_utils import make_pad_mask
        from funasr.utils import postprocess_utils
        from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard

        self._make_pad_mask = make_pad_mask
        self._postprocess = postprocess_utils.sentence_postprocess
        self._timestamps = ts_prediction_lfr6_standard
        #: True for SeACo-Paraformer, the one model here with a bias encoder.
        self.supports_hotwords = all(
            getattr(self.module, name, None) is not None
            for name in ("bias_encoder", "seaco_decoder", "hotword_output_layer")
        )
        self._seg_dict: dict[str, str] | None = None
        self._hotword_cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        if self.supports_hotwords:
            # FunASR reads the seg_dict beside the model's am.mvn; without one a hotword is looked
            # up as a single token (so a word of several characters is <unk>).
            seg_dict = model.location.directory / "seg_dict"
            if seg_dict.is_file():
                self._seg_dict = _read_seg_dict(seg_dict)
            else:
                logger.warning("SeACo model in %s has no seg_dict: hotwords of more than one token will be <unk>",
                               model.location.directory)

    # ---- features ----------------------------------------------------------------------------

    def featurize(self, wave: np.ndarray) -> torch.Tensor:
        """fbank + LFR + CMVN of one segment with FunASR's frontend: (frames, 560) float32."""
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None, :]
        with fast_fbank(self.fast_features):
            feat, _ = self.frontend(tensor, [tensor.shape[1]])
        return feat[0]

    @staticmethod
    def _pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int32)
        batch = feats[0][None] if len(feats) == 1 else pad_sequence(feats, batch_first=True)
        return batch, lengths

    # ---- model stages ----------------------------------------------------------------------

    def _predict_tokens(self, hidden: torch.Tensor, mask: torch.Tensor):
        """CIF: acoustic embeddings and token counts, without the timestamp branch."""
        p = self.predictor
        if not self._has_timestamp_branch:
            embeds, token_num, alphas, peaks = self.module.calc_predictor(hidden, mask.sum(-1).squeeze(-1))
            return embeds, token_num, alphas, peaks
        output = torch.relu(p.cif_conv1d(p.pad(hidden.transpose(1, 2))))
        alphas = torch.sigmoid(p.cif_output(output.transpose(1, 2)))
        alphas = torch.nn.functional.relu(alphas * p.smooth_factor - p.noise_threshold)
        frame_mask = mask.transpose(-1, -2).float()
        alphas = (alphas * frame_mask).squeeze(-1)
        frame_mask = frame_mask.squeeze(-1)
        token_num = alphas.sum(-1)
        if p.tail_threshold > 0.0:
            hidden, alphas, token_num = p.tail_process_fn(hidden, alphas, token_num, mask=frame_mask)
        embeds, peaks = self._cif(hidden, alphas, p.threshold)
        if p.tail_threshold > 0.0:
            embeds = embeds[:, : int(torch.max(token_num).item()), :]
        return embeds, token_num, alphas, peaks

    def _upsampled_alphas(self, hidden: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, token_num):
        """The timestamp branch (CIF2 on the 3x upsampled encoder output)."""
        p = self.predictor
        context = hidden.transpose(1, 2)
        source = torch.relu(p.cif_conv1d(p.pad(context))) if p.use_cif1_cnn else context
        up = p.upsample_cnn(source).transpose(1, 2)
        if p.upsample_type == "cnn_blstm":
            up_lengths = lengths.long() * p.upsample_times
            if bool((up_lengths == up.shape[1]).all()):
                up, _ = p.blstm(up.to(self._blstm_dtype))
            else:
                up = self._blstm_unpadded(up, up_lengths)
            up = up.float()
        elif p.upsample_type == "cnn_attn":
            up, _ = p.self_attn(up, mask)
        alphas2 = torch.sigmoid(p.cif_output2(up))
        alphas2 = torch.nn.functional.relu(alphas2 * p.smooth_factor2 - p.noise_threshold2)
        mask2 = mask.repeat(1, p.upsample_times, 1).transpose(-1, -2).reshape(alphas2.shape[0], -1)
        alphas2 = (alphas2 * mask2.unsqueeze(-1)).squeeze(-1)
        alphas2 = alphas2 * (token_num / alphas2.sum(-1))[:, None]
        peaks2 = self._cif_wo_hidden(alphas2, p.threshold - 1e-4)
        return alphas2, peaks2

    def _autocast(self):
        """bf16/fp16: FunASR multiplies activations by fp32 masks, which promotes them back to
        fp32; autocast casts them again at each matmul and convolution."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _blstm_unpadded(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The bidirectional LSTM as if each sequence ran alone, without packing (the packed CPU
        path is twice as slow): the forward direction never sees the padding at the end, and
        the backward direction runs forward over each sequence reversed within its own length."""
        forward, backward = self._blstm_directions
        x = x.to(self._blstm_dtype)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        index = reverse[:, :, None].expand(-1, -1, x.shape[2])
        ahead, _ = forward(x)
        behind, _ = backward(torch.gather(x, 1, index))
        behind = torch.gather(behind, 1, reverse[:, :, None].expand(-1, -1, behind.shape[2]))
        return torch.cat([ahead, behind], dim=-1)

    # ---- hotwords (SeACo) ------------------------------------------------------------------

    def _seg_tokenize(self, words: list[str]) -> list[str]:
        """FunASR's ``seg_tokenize`` (in ``generate_hotwords_list``)."""
        seg_dict = self._seg_dict
        tokens: list[str] = []
        for word in words:
            word = word.lower()
            if word in seg_dict:
                tokens.extend(seg_dict[word].split())
            elif _CHARACTERWISE.match(word):
                for char in word:
                    tokens.extend(seg_dict[char].split() if char in seg_dict else ["<unk>"])
            else:
                tokens.append("<unk>")
        return tokens

    def hotword_ids(self, hotwords: Sequence[str]) -> list[list[int]]:
        """Token ids of each hotword, then ``[<s>]``: FunASR's ``generate_hotwords_list`` (a hotword's
        space-separated words are tokenised together, as in its hotword-file form)."""
        ids = []
        for hotword in hotwords:
            words = hotword.split()
            tokens = self._seg_tokenize(words) if self._seg_dict is not None else words
            ids.append(self.tokenizer.tokens2ids(tokens))
        ids.append([self.module.sos])
        return ids

    @torch.inference_mode()
    def _hotword_embeddings(self, hotwords: tuple[str, ...]) -> torch.Tensor:
        """(hotwords + 1, inner_dim) float32 on the device: the bias encoder's last output for
        each hotword and for ``<s>``; cached per list (FunASR computes it again for every batch)."""
        cached = self._hotword_cache.get(hotwords)
        if cached is not None:
            self._hotword_cache.move_to_end(hotwords)
            return cached
        module = self.module
        ids = self.hotword_ids(hotwords)
        if any(not i for i in ids):
            raise ValueError("a hotword with no tokens")  # resolve_hotwords drops empty ones
        lengths = torch.tensor([len(i) for i in ids], dtype=torch.int32)
        padded = pad_sequence([torch.tensor(i, dtype=torch.long) for i in ids], batch_first=True).to(self.device)
        lstm = module.bias_encoder
        # In reduced modes the decoder (and its embedding) may be bf16; the bias encoder is fp32.
        embedded = module.decoder.embed(padded).to(lstm.weight_ih_l0.dtype)
        packed = torch.nn.utils.rnn.pack_padded_sequence(embedded, lengths.long(), batch_first=True,
                                                         enforce_sorted=False)
        output, _ = lstm(packed)
        output = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True)[0]
        if getattr(module, "lstm_proj", None) is not None:
            output = module.lstm_proj(output)
        selected = output[torch.arange(len(ids)), (lengths - 1).long()].float()
        if len(self._hotword_cache) >= HOTWORD_CACHE_SIZE:
            self._hotword_cache.popitem(last=False)
        self._hotword_cache[hotwords] = selected
        unknown = [h for h, i in zip(hotwords, ids) if self.tokenizer.unk_id in i] if hotwords else []
        if unknown:
            logger.info("%d of %d hotwords have tokens this model does not know (<unk>): %s",
                        len(unknown), len(hotwords), ", ".join(unknown[:10]))
        return selected

    def _bias_contexts(self, selected: torch.Tensor, decoder_hidden: torch.Tensor, token_num: torch.Tensor):
        """The hotword entries each segment attends to, (batch, entries, inner_dim): all of them,
        or with ASF_KEEP or more hotwords the ones the bias decoder's attention scores highest
        for that segment (FunASR's ASF), with ``<s>`` last."""
        batch, entries = decoder_hidden.shape[0], selected.shape[0]
        contexts = selected.unsqueeze(0).repeat(batch, 1, 1)
        lengths = torch.full((batch,), entries, dtype=torch.int32, device=selected.device)
        if not 0 < ASF_KEEP < entries:
            return contexts, lengths
        scores = self.module.seaco_decoder.forward_asf6(contexts, lengths, decoder_hidden, token_num).float()
        keep = min(ASF_KEEP, entries - 1)
        chosen = []
        for i in range(batch):
            # (heads, tokens, entries) of this segment's own tokens, summed as FunASR sums its one
            score = scores[i, :, : int(token_num[i])].contiguous().sum(0).sum(0)
            index = torch.topk(score, keep)[1].tolist()
            index.append(entries - 1)
            chosen.append(selected[index])
        contexts = torch.stack(chosen)
        return contexts, torch.full((batch,), contexts.shape[1], dtype=torch.int32, device=selected.device)

    def _decode_with_hotwords(self, hidden, hidden_lengths, embeds, token_num, hotwords) -> torch.Tensor:
        """SeACo's decoder with the bias decoder merged in: (batch, tokens, vocab) log-probabilities."""
        module = self.module
        selected = self._hotword_embeddings(hotwords)
        with self._autocast():
            decoder_out, decoder_hidden, _ = module.decoder(
                hidden, hidden_lengths, embeds, token_num, return_hidden=True, return_both=True
            )
            decoder_pred = torch.log_softmax(decoder_out, dim=-1)
            contexts, context_lengths = self._bias_contexts(selected, decoder_hidden, token_num)
            cif_attended, _ = module.seaco_decoder(contexts, context_lengths, embeds, token_num)
            dec_attended, _ = module.seaco_decoder(contexts, context_lengths, decoder_hidden, token_num)
            bias_out = module.hotword_output_layer(module._merge(cif_attended, dec_attended))
        bias_pred = torch.log_softmax(bias_out.float(), dim=-1)
        # FunASR's _merge_res at weight 1: dec * m + bias * (1 - m) with m = (bias argmax == NO_BIAS)
        no_bias = (bias_pred.max(-1)[-1] == module.NO_BIAS).unsqueeze(-1)
        return torch.where(no_bias, decoder_pred.float(), bias_pred)

    # ---- decoding --------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, feats: list[torch.Tensor], hotwords: Sequence[str] = ()) -> list[RecognizedSegment]:
        """Recognise one batch of feature matrices (from ``featurize``), in their order.

        ``hotwords`` (SeACo-Paraformer only; from ``asr.core.hotwords.resolve_hotwords``) bias the
        decoding towards those words; their embedding is computed once per list and cached.
        Raises HotwordsUnavailableError when given to a model without a bias encoder."""
        hotwords = tuple(hotwords)
        if hotwords and not self.supports_hotwords:
            raise HotwordsUnavailableError(
                f"hotwords need SeACo-Paraformer; this ASR model is {type(self.module).__name__} "
                "(set models.asr_model: seaco)"
            )
        if not feats:
            return []
        speech, lengths = self._pad(feats)
        if self.device.type == "cuda":  # untested here: pinned memory lets the copy overlap
            speech = speech.pin_memory().to(self.device, dtype=self.dtype, non_blocking=True)
        else:
            speech = speech.to(self.dtype)
        lengths_dev = lengths.to(self.device)
        with self._autocast():
            hidden, hidden_lengths = self.module.encode(speech, lengths_dev)
        if isinstance(hidden, tuple):
            hidden = hidden[0]
        mask = (~self._make_pad_mask(hidden_lengths, maxlen=hidden.size(1))[:, None, :]).to(hidden.device)
        # The predictor's 3-tap convolution reads one frame past each segment's end: zero the
        # padding so that a batched segment sees what it sees alone (FunASR leaves it dirty).
        hidden = hidden * mask.transpose(1, 2).to(hidden.dtype)
        # CIF integrates alphas up to a threshold of 1.0: always in fp32, whatever the mode.
        hidden_f = hidden.float()
        embeds, token_num, alphas, peaks = self._predict_tokens(hidden_f, mask)
        token_num = token_num.round().long()
        if int(token_num.max()) < 1:
            return [RecognizedSegment((), ()) for _ in feats]
        if hotwords:
            decoder_out = self._decode_with_hotwords(hidden, hidden_lengths, embeds.to(self.dtype), token_num, hotwords)
        else:
            with self._autocast():
                decoder_out, _ = self.module.cal_decoder_with_predictor(hidden, hidden_lengths, embeds.to(self.dtype), token_num)
            decoder_out = decoder_out.float()
        if self._has_timestamp_branch:
            us_alphas, us_peaks = self._upsampled_alphas(hidden_f, hidden_lengths, mask, token_num)
        ids = decoder_out.argmax(dim=-1).cpu()
        hidden_lengths = hidden_lengths.cpu()
        token_num = token_num.cpu()
        results = []
        for i in range(len(feats)):
            token_int = [
                t for t in ids[i, : token_num[i]].tolist()
                if t not in (self.module.eos, self.module.sos, self.module.blank_id)
            ]
            tokens = self.tokenizer.ids2tokens(token_int)
            if self._has_timestamp_branch:
                n = int(hidden_lengths[i]) * self.predictor.upsample_times
                _, stamps = self._timestamps(us_alphas[i][:n].cpu(), us_peaks[i][:n].cpu(), copy.copy(tokens))
            else:
                _, stamps = self._timestamps(
                    peaks[i][: int(hidden_lengths[i]) + 1].cpu(), alphas[i][: int(hidden_lengths[i]) + 1].cpu(),
                    copy.copy(tokens), upsample_rate=1,
                )
            # FunASR stamps every token but its post-processing drops <unk>/<s>/</s> from the
            # words only, which shifts later stamps onto the wrong words; drop both together.
            kept = [(t, st) for t, st in zip(tokens, stamps) if t not in _DROPPED_TOKENS]
            tokens = [t for t, _ in kept]
            _, stamps, words = self._postprocess(tokens, [st for _, st in kept])
            results.append(
                RecognizedSegment(tuple(words), tuple((int(s), int(e)) for s, e in stamps))
            )
        return results
