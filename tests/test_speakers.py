"""Speaker labels, fast tier: the clustering on synthetic embeddings with known speakers, the pieces
against FunASR's own functions, and the Diarizer on the (random-weight, full-size) CAM++ on short audio.

Random CAM++ weights do not encode voices, so who-is-who is tested on synthetic embeddings only; the
model tests check structure. The end-to-end dialogue and the AutoModel oracle are in test_speaker_oracle.
"""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from asr.core import speaker_clustering as sc
from asr.errors import SpeakersError
from asr.types import Sentence, SpeechSegment
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_speakers import synthetic_embeddings, window_accuracy  # noqa: E402


@pytest.fixture(scope="module")
def funasr_campplus():
    """FunASR's campplus utilities, through our selective import."""
    from asr.models.funasr_import import import_registered

    import_registered("CAMPPlus")
    from funasr.models.campplus import utils

    return utils


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return len(a) == len(b) and len(set(zip(a, b))) == len(set(a)) == len(set(b))


# ---- windows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [0, 1, 399, 12000, 23999, 24000, 24001, 36000, 16000 * 7 + 1234, 16000 * 30])
def test_windows_are_funasrs(funasr_campplus, samples):
    wave = np.zeros(samples, dtype=np.float32)
    theirs = funasr_campplus.sv_chunk([[2.5, 2.5 + samples / 16000, wave]])
    ours = sc.window_spans(2500, samples)
    assert [(s, e) for s, e, _, _ in ours] == [(t[0], t[1]) for t in theirs]
    assert all(last - first == min(samples, sc.WINDOW_SAMPLES) for _, _, first, last in ours)


def test_window_features_are_funasrs(funasr_campplus):
    import torch

    from asr.core.speakers import window_features

    rng = np.random.default_rng(0)
    for samples in (5000, 24000, 16000 * 7 + 1234):
        wave = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        spans = sc.window_spans(0, samples)
        chunks = funasr_campplus.sv_chunk([[0.0, samples / 16000, wave]])
        theirs, _, _ = funasr_campplus.extract_feature([torch.from_numpy(c[2]) for c in chunks])
        ours = torch.stack(window_features(wave, spans))
        assert torch.equal(ours, theirs)  # the slices of the segment's fbank are exact


# ---- clustering ------------------------------------------------------------------------------------


def test_two_speakers_in_ten_windows():
    """FunASR labels anything under 20 windows speaker 0 (a two-person 15 s exchange is one speaker)."""
    pool, who = synthetic_embeddings(400, 2, seed=3)
    pure = [i for i in range(1, 399) if who[i - 1] == who[i] == who[i + 1]]  # not across a turn change
    truth = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    picks = [iter([i for i in pure if who[i] == 0]), iter([i for i in pure if who[i] == 1])]
    x = pool[[next(picks[k]) for k in truth]]
    labels = sc.cluster(x)
    assert same_partition(labels, truth)
    assert same_partition(sc.cluster(x, num_speakers=2), truth)


def test_one_speaker_in_few_windows_stays_one():
    for n in (2, 5, 12, 19):
        x, _ = synthetic_embeddings(n, 1, seed=n)
        assert set(sc.cluster(x)) == {0}


@pytest.mark.parametrize("n,speakers", [(60, 2), (400, 3), (1500, 5)])
def test_automatic_count_finds_the_speakers(n, speakers):
    x, truth = synthetic_embeddings(n, speakers, seed=n, within=0.6)
    labels = sc.cluster(x)
    assert len(set(labels)) == speakers
    assert window_accuracy(labels, truth) > 0.9


def test_known_count():
    x, truth = synthetic_embeddings(400, 3, seed=1, within=0.6)
    labels = sc.cluster(x, num_speakers=3)
    assert len(set(labels)) == 3 and window_accuracy(labels, truth) > 0.9
    assert len(set(sc.cluster(x, num_speakers=2))) == 2  # told two: two, however many there are
    assert len(set(sc.cluster(x[:5], num_speakers=9))) == 5  # never more speakers than windows


def test_min_and_max():
    x, _ = synthetic_embeddings(400, 4, seed=2, within=0.6)
    assert len(set(sc.cluster(x))) == 4
    assert len(set(sc.cluster(x, max_speakers=2))) <= 2
    one, _ = synthetic_embeddings(300, 1, seed=4)
    assert len(set(sc.cluster(one))) == 1
    assert len(set(sc.cluster(one, min_speakers=2))) == 2
    few, _ = synthetic_embeddings(12, 1, seed=4)
    assert len(set(sc.cluster(few, min_speakers=3))) == 3


def test_labels_by_first_appearance_and_seeded():
    x, _ = synthetic_embeddings(300, 3, seed=5, within=0.6)
    labels = sc.cluster(x)
    firsts = [int(np.argmax(labels == k)) for k in range(labels.max() + 1)]
    assert firsts == sorted(firsts) and labels[0] == 0
    assert np.array_equal(labels, sc.cluster(x))


def test_spectral_is_funasrs(funasr_campplus):
    """Below 2048 windows our spectral clustering is FunASR's SpectralCluster (seeded)."""
    from funasr.models.campplus.cluster_backend import SpectralCluster

    x, _ = synthetic_embeddings(300, 4, seed=6)
    for known in (None, 4):
        np.random.seed(0)  # FunASR's k-means takes numpy's global generator; ours seeds 0
        theirs = SpectralCluster()(x.copy(), known)
        assert same_partition(sc.spectral(x, known), theirs)


def test_merge_by_cosine(funasr_campplus):
    from funasr.models.campplus.cluster_backend import ClusterBackend

    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 192))
    base[1] = base[0] + 0.3 * rng.standard_normal(192)  # cluster 1 is a near copy of cluster 0
    x = np.repeat(base, 10, axis=0) + 0.05 * rng.standard_normal((30, 192))
    labels = np.repeat([0, 1, 2], 10)
    merged = sc.merge_by_cosine(labels, x)
    assert same_partition(merged, np.repeat([0, 0, 1], 10))
    assert same_partition(merged, ClusterBackend().merge_by_cos(labels.copy(), x, 0.78))
    assert len(set(sc.merge_by_cosine(labels, x, min_speakers=3))) == 3


def _eigh_sizes(monkeypatch) -> list[int]:
    import scipy.linalg

    sizes: list[int] = []
    real = scipy.linalg.eigh

    def recording(a, *args, **kwargs):
        sizes.append(len(a))
        return real(a, *args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", recording)
    return sizes


@pytest.mark.slow  # long audio: hours of speaker windows
def test_long_recording_with_known_count_needs_no_dense_eigendecomposition(monkeypatch):
    """FunASR's 2 h file with a known count ran a dense eigendecomposition of a 10k x 10k matrix; from
    2048 windows on, the only one here is of the 2000 centroids, whatever the count."""
    x, truth = synthetic_embeddings(2100, 3, seed=7, within=0.6)
    sizes = _eigh_sizes(monkeypatch)
    labels = sc.cluster(x, num_speakers=3)
    assert len(set(labels)) == 3 and window_accuracy(labels, truth) > 0.9
    assert len(sizes) == 1 and sizes[0] <= sc.MICRO_CLUSTERS < len(x)


@pytest.mark.slow  # long audio: hours of speaker windows
def test_long_recording_memory_is_bounded():
    """5000 windows (~1 h of speech): less memory than one float32 windows x windows matrix (100 MB);
    what it takes does not grow with the recording (FunASR: 15 h killed at 100 GB)."""
    x, truth = synthetic_embeddings(5000, 3, seed=8, within=0.6)
    sc.cluster(x[:30])  # imports and first-call caches are not the clustering's
    tracemalloc.start()
    try:
        labels = sc.cluster(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(x) ** 2 * 4
    assert len(set(labels)) == 3 and window_accuracy(labels, truth) > 0.9


# ---- timeline and assignment -----------------------------------------------------------------------


def test_timeline_is_funasrs_postprocess(funasr_campplus):
    rng = np.random.default_rng(0)
    for case in range(200):
        n = int(rng.integers(1, 40))
        segments, start = [], 0.0
        for _ in range(n):  # windows of a few VAD segments
            if rng.random() < 0.2:
                start += float(rng.uniform(0.2, 3.0))
            length = float(rng.choice([1.5, rng.uniform(0.1, 1.5)]))
            segments.append([start, start + length])
            start += 0.75 if length == 1.5 else length
        labels = rng.integers(0, 3, n)
        theirs = funasr_campplus.postprocess([s + [None] for s in segments], None, labels.copy(), None)
        ours = sc.timeline([tuple(s) for s in segments], labels)
        assert [tuple(t) for t in theirs] == ours, case


def test_timeline_refuses_mismatched_counts():
    """FunASR asserts len(segments) == len(labels) deep inside; here it cannot happen (spans and
    embeddings are stored together), and if it did the message says what."""
    with pytest.raises(ValueError, match="3 windows but 2 labels"):
        sc.timeline([(0, 1.5), (0.75, 2.25), (1.5, 3.0)], [0, 1])
    assert sc.timeline([], []) == []


def test_assign_sums_overlap_per_speaker(funasr_campplus):
    """A sentence over turns B (3 s), A (2 s), A (2 s): A overlaps it 4 s, B 3 s. We say A; FunASR's
    distribute_spk says B (it counts the first overlapping turn twice and never adds up A)."""
    turns = [(0.0, 3.0, 1), (3.0, 5.0, 0), (5.5, 7.5, 0)]
    assert sc.assign([(0, 7500)], turns) == [0]
    theirs = funasr_campplus.distribute_spk([{"start": 0, "end": 7500}], [list(t) for t in turns])
    assert theirs[0]["spk"] == 1


def test_assign_without_overlap_takes_the_nearest_speaker(funasr_campplus):
    """FunASR gives a sentence that overlaps no turn speaker 0; we give it the nearest turn's."""
    turns = [(0.0, 2.0, 0), (3.0, 5.0, 1)]
    assert sc.assign([(6000, 6000), (2100, 2200), (2800, 2900), (1000, 1000)], turns) == [1, 0, 1, 0]
    assert funasr_campplus.distribute_spk([{"start": 6000, "end": 6000}], [list(t) for t in turns])[0]["spk"] == 0
    assert sc.assign([(0, 5000)], [(0.0, 2.0, 0), (2.0, 4.0, 1)]) == [0]  # a tie: the earlier turn


# ---- the Diarizer on the model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def spk_models(test_models):
    from asr.config import load_settings
    from asr.models.loading import load_models

    settings = load_settings(REPO / "config.test-models.yaml", models={"profile": "vad+asr+punc+spk"},
                             runtime={"device": "cpu", "precision": "fp32"})
    return load_models(settings)


@pytest.fixture(scope="module")
def speech(sentence_clips) -> np.ndarray:
    return np.concatenate(sentence_clips)


def _segments(audio: np.ndarray, length_ms: int = 4000, gap_ms: int = 500):
    start = 0
    while start * 16 < len(audio):
        end = min(start + length_ms, len(audio) // 16)
        yield SpeechSegment(start, end), audio[start * 16 : end * 16]
        start = end + gap_ms


def test_embeddings_equal_funasrs_and_vary(spk_models, speech, funasr_campplus):
    """Batched embeddings are CAM++'s one window at a time (as AutoModel runs it on a CPU); and the test
    build gives varied embeddings (random batch-norm statistics gave cosine 0.99 between any two)."""
    import torch

    from asr.core.speakers import Diarizer

    diarizer = Diarizer(spk_models.spk, spk_models.device)
    segments = list(_segments(speech))
    for segment, wave in segments:
        diarizer.add(segment, wave)
    ours = diarizer.embeddings()
    chunks = funasr_campplus.sv_chunk([[s.start_ms / 1000, s.end_ms / 1000, w] for s, w in segments])
    with torch.no_grad():
        theirs = np.concatenate([
            spk_models.spk.module(funasr_campplus.extract_feature([torch.from_numpy(c[2])])[0]).numpy()
            for c in chunks])
    assert ours.shape == (len(chunks), 192) and len(diarizer.spans) == len(chunks)
    assert [(a, b) for a, b in diarizer.spans] == [(c[0], c[1]) for c in chunks]
    # the same up to float rounding (a batch sums in another order than one window alone)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.99999
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cosine = unit @ unit.T
    assert cosine[np.triu_indices(len(unit), 1)].mean() < 0.9


def test_diarizer_keeps_no_audio(spk_models, speech):
    from asr.core.speakers import BATCH_WINDOWS, Diarizer

    diarizer = Diarizer(spk_models.spk, spk_models.device)
    long = np.tile(speech, 4)
    most_pending = 0
    for segment, wave in _segments(long, length_ms=6000):
        diarizer.add(segment, wave)
        most_pending = max(most_pending, len(diarizer._pending))
    assert most_pending < BATCH_WINDOWS
    windows = len(diarizer.spans)
    held = sum(a.nbytes for a in diarizer._embeddings) + sum(t.numel() * 4 for t in diarizer._pending)
    assert held <= windows * 192 * 4 + BATCH_WINDOWS * 148 * 80 * 4
    assert held < long.nbytes / 3


def test_assign_on_the_model(spk_models, speech):
    from asr.core.speakers import Diarizer

    diarizer = Diarizer(spk_models.spk, spk_models.device, max_speakers=4)
    segments = list(_segments(speech, length_ms=2000, gap_ms=300))
    for segment, wave in segments:
        diarizer.add(segment, wave)
    diarizer.add(SpeechSegment(99000, 99000), np.zeros(0, dtype=np.float32))  # nothing to embed
    diarizer.add(SpeechSegment(99000, 99006), np.zeros(100, dtype=np.float32))  # under one fbank frame
    sentences = [Sentence(f"s{i}", s.start_ms, s.end_ms) for i, (s, _) in enumerate(segments)]
    sentences.append(Sentence("after the end", 200000, 201000))
    labelled, count = diarizer.assign(sentences)
    assert 1 <= count <= 4
    ids = [s.speaker for s in labelled]
    assert ids[0] == 0 and set(ids) == set(range(count))
    assert all(max(ids[: i + 1]) <= max(ids[:i], default=-1) + 1 for i in range(len(ids)))  # first appearance
    assert [(s.text, s.start_ms, s.end_ms) for s in labelled] == [(s.text, s.start_ms, s.end_ms) for s in sentences]
    assert diarizer.assign(sentences) == (labelled, count)
    two, n = diarizer.assign(sentences, num_speakers=1)
    assert n == 1 and {s.speaker for s in two} == {0}


def test_assign_without_speech_and_bad_counts(spk_models):
    from asr.core.speakers import Diarizer

    diarizer = Diarizer(spk_models.spk, spk_models.device)
    sentences = (Sentence("a", 0, 1000),)
    assert diarizer.assign(sentences) == (sentences, 0)
    for bad in ({"min_speakers": 3, "max_speakers": 2}, {"num_speakers": 0}, {"min_speakers": 0}):
        with pytest.raises(SpeakersError):
            diarizer.assign(sentences, **bad)
