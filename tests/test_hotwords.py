"""Hotwords: parsing, merging and limits (asr.core.hotwords), and SeACo-Paraformer decoding with them
on the tiny random-weight model, against FunASR's own ``SeacoParaformer.inference`` in this process
(the AutoModel oracle, in a process of its own, is tests/test_hotword_oracle.py)."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from asr.config import HotwordsConfig, load_settings
from asr.core.hotwords import read_hotword_file, resolve_hotwords
from asr.errors import HotwordsError, HotwordsUnavailableError
from tests.conftest import TEST_CONFIG, TEST_MODELS

# ---- the tiny SeACo model -----------------------------------------------------------------------

#: Three times as many hotwords as SeACo's filter keeps (50), so that the filter runs and each
#: segment keeps a different 50; CJK of the tiny vocab.
_rng = random.Random(50)
MANY = tuple(dict.fromkeys(
    "".join(chr(0x4E00 + _rng.randrange(7000)) for _ in range(_rng.randint(2, 4))) for _ in range(150)
))
#: Words the seg_dict knows whole, splits by character, or does not know (FunASR makes those <unk>).
FEW = ("公园", "散步")
TRICKY = ("Hello", "公园2", "a股", "xfevkqo", "XFEVKQO")


def seaco_settings(**runtime):
    return load_settings(TEST_CONFIG, models={"asr_model": "seaco"},
                         runtime={"device": "cpu", "precision": "fp32", **runtime})


def load_seaco_models(settings=None):
    """The tiny SeACo model of the test cache (with VAD and punctuation), loaded as the product
    loads it. Needs the ``test_models`` fixture first (it builds the cache)."""
    import make_test_models

    from asr.models.files import locate_model
    from asr.models.loading import load_models

    settings = settings or seaco_settings()
    directory = locate_model(settings.models, "asr").directory
    if not (directory / "seg_dict").is_file():  # built before the builder wrote one: build it again
        shutil.rmtree(directory)
        make_test_models.main(["--out", str(TEST_MODELS)])
    return load_models(settings)


@pytest.fixture(scope="session")
def seaco_models(test_models):
    return load_seaco_models()


@pytest.fixture(scope="session")
def seaco(seaco_models):
    from asr.core.recognize import Recognizer

    return Recognizer(seaco_models.asr, seaco_models.device, "fp32")


def funasr_inference(model, wave: np.ndarray, hotword: str | None) -> tuple[str, list[tuple[int, int]]]:
    """FunASR's own SeacoParaformer.inference on one whole clip (what AutoModel runs without VAD)."""
    with torch.inference_mode():
        results, _ = model.module.inference([torch.from_numpy(wave)], key=["clip"], tokenizer=model.tokenizer,
                                            frontend=model.frontend, hotword=hotword, device="cpu")
    return results[0]["text"], [tuple(t) for t in results[0]["timestamp"]]


def ours(segment) -> tuple[str, list[tuple[int, int]]]:
    return " ".join(segment.words), list(segment.timestamps)


def difference(a: tuple[str, list], b: tuple[str, list]) -> str:
    """Where two (text, timestamps) first differ (pytest's own diff of long lists takes minutes)."""
    for name, x, y in (("word", a[0].split(), b[0].split()), ("timestamp", a[1], b[1])):
        i = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        if x != y:
            return f"{name} {i} of {len(x)}/{len(y)}: {x[i:i + 3]} != {y[i:i + 3]}"
    return "equal"


# ---- parsing, merging, limits --------------------------------------------------------------------


def limits(**update) -> HotwordsConfig:
    return HotwordsConfig(**update)


@pytest.mark.parametrize(("request_", "expected"), [
    (None, ()),
    ("", ()),
    ("  \n ", ()),
    ("魔搭", ("魔搭",)),
    (" 魔搭  达摩院\t阿里巴巴\n通义 ", ("魔搭", "达摩院", "阿里巴巴", "通义")),
    ("魔搭\u3000达摩院", ("魔搭", "达摩院")),  # the ideographic space splits too, as in FunASR's str.split()
    (["New  York", " 魔搭 ", "", "  "], ("New York", "魔搭")),  # a list: one hotword per item
    (("达摩院",), ("达摩院",)),
])
def test_a_request_splits_as_funasr_splits_its_hotword_string(request_, expected):
    assert resolve_hotwords(request_, limits()) == expected


def test_the_string_split_is_funasrs(seaco, seaco_models):
    text = " 公园  散步\t今天\n你好\u3000Hello "
    model = seaco_models.asr
    theirs = model.module.generate_hotwords_list(text, tokenizer=model.tokenizer, frontend=model.frontend)
    words = resolve_hotwords(text, limits())
    assert len(words) == 5 and seaco.hotword_ids(words) == theirs


def test_items_that_are_not_strings_are_refused():
    with pytest.raises(HotwordsError, match="strings"):
        resolve_hotwords(["魔搭", 3], limits())
    with pytest.raises(HotwordsError, match="string or a list"):
        resolve_hotwords(42, limits())


def test_duplicates_go_ignoring_case_and_the_first_spelling_stays():
    assert resolve_hotwords("GPU 魔搭 gpu Gpu 魔搭 cuda", limits()) == ("GPU", "魔搭", "cuda")


def test_the_deployment_file_comes_first_and_is_merged(tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("达摩院\nNew York\n\n  魔搭  \n", encoding="utf-8")
    config = limits(file=path)
    assert resolve_hotwords(None, config) == ("达摩院", "New York", "魔搭")
    assert resolve_hotwords("通义 魔搭 new york", config) == ("达摩院", "New York", "魔搭", "通义", "new", "york")
    assert resolve_hotwords(["通义", "new york"], config) == ("达摩院", "New York", "魔搭", "通义")


def test_an_edited_deployment_file_is_read_again(tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("达摩院\n", encoding="utf-8")
    config = limits(file=path)
    assert resolve_hotwords(None, config) == ("达摩院",)
    path.write_text("魔搭\n通义\n", encoding="utf-8")
    assert resolve_hotwords(None, config) == ("魔搭", "通义")


@pytest.mark.parametrize("max_count", [1, 5, 200])
def test_the_count_limit_counts_what_the_model_would_get(max_count):
    words = [f"词{i}" for i in range(max_count)]
    assert len(resolve_hotwords(words + words[:3], limits(max_count=max_count))) == max_count  # duplicates are free
    with pytest.raises(HotwordsError) as error:
        resolve_hotwords(" ".join(words + ["多一个"]), limits(max_count=max_count))
    assert str(error.value) == f"{max_count + 1} hotwords; at most {max_count} (hotwords.max_count)"
    assert error.value.http_status == 400 and error.value.code == "bad_hotwords"


def test_the_count_limit_says_how_many_came_from_the_file(tmp_path):
    path = tmp_path / "hotwords.txt"
    path.write_text("".join(f"词{i}\n" for i in range(150)), encoding="utf-8")
    with pytest.raises(HotwordsError) as error:
        resolve_hotwords([f"话{i}" for i in range(51)], limits(file=path))
    assert str(error.value) == f"201 hotwords, 150 of them from {path} (hotwords.file); at most 200 (hotwords.max_count)"


def test_the_length_limit_names_the_word_and_the_key(tmp_path):
    assert resolve_hotwords("一二三四五六七八九十一二三四五六", limits()) == ("一二三四五六七八九十一二三四五六",)
    with pytest.raises(HotwordsError) as error:
        resolve_hotwords("短 一二三四五六七八九十一二三四五六七", limits())
    assert str(error.value) == "hotword '一二三四五六七八九十一二三四五六七' has 17 characters; at most 16 (hotwords.max_chars)"
    with pytest.raises(HotwordsError, match=r"'abcd' has 4 characters; at most 3 \(hotwords.max_chars\)"):
        resolve_hotwords(["abcd"], limits(max_chars=3))
    path = tmp_path / "hotwords.txt"
    path.write_text("New York City\n", encoding="utf-8")
    with pytest.raises(HotwordsError, match=f"'New York City' in {path} has 13 characters; at most 8"):
        resolve_hotwords(None, limits(file=path, max_chars=8))


def test_an_unreadable_deployment_file_names_its_path(tmp_path):
    missing = tmp_path / "no-such-file.txt"
    with pytest.raises(HotwordsError, match=f"cannot read the hotword file {missing} \\(hotwords.file\\)"):
        resolve_hotwords("魔搭", limits(file=missing))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x00 not text")
    with pytest.raises(HotwordsError, match=f"hotword file {binary} is not UTF-8 text"):
        resolve_hotwords("魔搭", limits(file=binary))
    with pytest.raises(HotwordsError, match=f"cannot read the hotword file {tmp_path}"):
        read_hotword_file(tmp_path)  # a directory


def test_read_hotword_file_keeps_lines_as_they_are(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeff魔搭\r\n  New   York \r\n\r\n魔搭\n".encode())
    assert read_hotword_file(path) == ("魔搭", "New York", "魔搭")
    assert read_hotword_file(str(path)) == ("魔搭", "New York", "魔搭")


# ---- SeACo decoding on the tiny model --------------------------------------------------------------


def test_hotword_tokens_are_funasrs(seaco, seaco_models, tmp_path):
    model = seaco_models.asr
    for words in (FEW, TRICKY, MANY):
        theirs = model.module.generate_hotwords_list(" ".join(words), tokenizer=model.tokenizer, frontend=model.frontend)
        assert seaco.hotword_ids(words) == theirs
    # the seg_dict is used: an English word becomes its pieces, whatever its case
    word, pieces = next((k, v) for k, v in seaco._seg_dict.items() if " " in v)
    assert seaco.hotword_ids((word.upper(),)) == [model.tokenizer.tokens2ids(pieces.split()), [model.module.sos]]
    assert model.tokenizer.unk_id not in seaco.hotword_ids((word.upper(),))[0]
    # a hotword of several words: FunASR's file form, where a line is one hotword
    path = tmp_path / "hotwords.txt"
    path.write_text("New York\n公园\nab@@ cd\n", encoding="utf-8")
    theirs = model.module.generate_hotwords_list(str(path), tokenizer=model.tokenizer, frontend=model.frontend)
    assert seaco.hotword_ids(read_hotword_file(path)) == theirs


def test_decoding_with_hotwords_equals_funasr(seaco, seaco_models, sentence_clips):
    """Text and timestamps equal FunASR's, with a few hotwords and with more than its filter keeps;
    and the hotwords change the text on these weights, so this can fail."""
    model = seaco_models.asr
    feats = [seaco.featurize(clip) for clip in sentence_clips]
    plain = [ours(s) for s in seaco.decode(feats)]
    for words in ((), FEW, TRICKY, MANY):
        batched = seaco.decode(feats, words)
        for clip, segment, without in zip(sentence_clips, batched, plain):
            theirs = funasr_inference(model, clip, " ".join(words) or None)
            agree = ours(segment) == theirs
            assert agree, f"{len(words)} hotwords: {difference(ours(segment), theirs)}"
            assert segment.words
            if words:
                assert ours(segment)[0] != without[0], f"hotwords {words[:3]} changed nothing"
    few, many = seaco.decode(feats, FEW), seaco.decode(feats, MANY)
    assert [s.words for s in few] != [s.words for s in many]


def test_batched_with_hotwords_equals_each_segment_alone(seaco, sentence_clips):
    """Padding and the per-segment hotword filter: a segment's text does not depend on its batch."""
    clips = [*sentence_clips, sentence_clips[0][: 16000], np.concatenate(sentence_clips[1:])]
    feats = [seaco.featurize(clip) for clip in clips]
    for words in (FEW, MANY):
        together = seaco.decode(feats, words)
        for i, (feat, segment) in enumerate(zip(feats, together)):
            alone = ours(seaco.decode([feat], words)[0])
            agree = ours(segment) == alone
            assert agree, f"segment {i}, {len(words)} hotwords: {difference(ours(segment), alone)}"


def test_the_bias_encoder_runs_once_per_hotword_list(seaco, sentence_clips):
    from asr.core.recognize import HOTWORD_CACHE_SIZE

    calls = []
    handle = seaco.module.bias_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        seaco._hotword_cache.clear()
        feats = [seaco.featurize(clip) for clip in sentence_clips]
        first = seaco.decode(feats[:2], FEW)
        second = seaco.decode(feats[2:], FEW)
        assert len(calls) == 1
        assert seaco.decode(feats[:2], list(FEW)) == first and len(calls) == 1  # a list is the same key
        seaco.decode(feats[2:], TRICKY)
        assert len(calls) == 2
        seaco.decode(feats[:1])  # no hotwords: no bias encoder
        assert len(calls) == 2
        for i in range(HOTWORD_CACHE_SIZE + 3):
            seaco.decode(feats[:1], (f"词{i}",))
        assert len(seaco._hotword_cache) == HOTWORD_CACHE_SIZE
        assert seaco.decode(feats[2:], FEW) == second  # evicted and computed again: the same
        assert len(calls) == 2 + HOTWORD_CACHE_SIZE + 3 + 1
    finally:
        handle.remove()


def test_a_model_without_a_bias_encoder_refuses_hotwords(models, seaco, sentence_clips):
    from asr.core.recognize import Recognizer

    assert seaco.supports_hotwords
    bicif = Recognizer(models.asr, models.device, "fp32")
    assert not bicif.supports_hotwords
    feats = [bicif.featurize(sentence_clips[0])]
    with pytest.raises(HotwordsUnavailableError, match="models.asr_model: seaco"):
        bicif.decode(feats, ("魔搭",))
    assert bicif.decode(feats, ()) == bicif.decode(feats)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precisions_run_with_hotwords(precision, seaco_models, seaco, sentence_clips, tmp_path):
    """int8/bf16 convert the encoder and decoder; the bias encoder and bias decoder stay fp32 (under
    autocast in bf16). Their text is not FunASR's; they run, keep timestamps in the segment, and the
    hotwords still change the text."""
    from asr.core.recognize import Recognizer
    from asr.models.loading import load_models
    from asr.models.precision import cpu_has_bf16

    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no AVX512_BF16/AMX")
    settings = seaco_settings(precision=precision)
    settings = settings.model_copy(update={"storage": settings.storage.model_copy(
        update={"cache_dir": tmp_path / "cache", "state_dir": tmp_path / "state"})})
    reduced = load_models(settings)
    assert reduced.precision == precision
    recognizer = Recognizer(reduced.asr, reduced.device, precision)
    assert recognizer.supports_hotwords
    # the hotword embedding is the fp32 one, or close (bf16 embeds the tokens in bf16)
    for words in (FEW, MANY):
        close = torch.allclose(recognizer._hotword_embeddings(words), seaco._hotword_embeddings(words), atol=2e-2)
        assert close
    feats = [recognizer.featurize(clip) for clip in sentence_clips]
    plain = recognizer.decode(feats)
    for words in (FEW, MANY):
        segments = recognizer.decode(feats, words)
        for feat, segment, without in zip(feats, segments, plain):
            assert segment.words and len(segment.words) == len(segment.timestamps)
            assert all(0 <= s <= e <= feat.shape[0] * 60 + 60 for s, e in segment.timestamps)
            assert segment.words != without.words
