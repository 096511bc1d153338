"""`asr batch` without Ray: listing inputs and manifests, outputs, the results manifest, resume,
failures and idempotence, with the real pipeline on espeak-ng speech and the tiny test models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.core.writers import WRITERS
from asr.errors import AsrError, ConfigError
from asr.scaleout.batch import (
    RESULTS_NAME,
    BatchInput,
    BatchRun,
    BatchSpec,
    list_inputs,
    read_results,
    run_local,
)
from asr.types import TranscribeOptions, Transcript
from tests.conftest import REPO, TEST_CONFIG, with_pauses

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


# ---- a directory of inputs shared by the batch tests (also by tests/test_ray.py) ------------------------


def make_corpus(root: Path, clips: list[np.ndarray]) -> dict[str, Path]:
    """Spoken Mandarin as WAV and FLAC in nested directories, two files with the same name in
    different directories, a long file, and two that cannot be decoded. Returns {id: path}."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "a/s0": ("a/s0.wav", clips[0]),
        "a/s1": ("a/s1.wav", clips[1]),
        "b/s0": ("b/s0.flac", clips[2]),
        "b/c/pair": ("b/c/pair.wav", with_pauses(clips[:2], 1.5)),
        "long": ("long.flac", with_pauses(clips, 2.5)),
    }
    paths = {}
    for id_, (name, audio) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, 16000, subtype="PCM_16")
        paths[id_] = path
    (root / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 12)  # a header, then nothing
    paths["broken"] = root / "broken.wav"
    (root / "b" / "empty.mp3").write_bytes(b"")
    paths["b/empty"] = root / "b" / "empty.mp3"
    (root / "notes.txt").write_text("not an input: a directory listing takes audio extensions only\n")
    (root / ".hidden").mkdir()
    sf.write(root / ".hidden" / "skipped.wav", clips[0], 16000)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sentence_clips) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, sentence_clips)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, corpus, settings, pipeline):
    """The whole corpus, every format, run locally once: (output directory, summary)."""
    out = tmp_path_factory.mktemp("local-run")
    summary = run_local(list_inputs([corpus[0]]), out, settings, spec_for(settings), pipeline=pipeline,
                        progress=False)
    return out, summary


def spec_for(settings, formats=FORMATS, punctuate=True, **options) -> BatchSpec:
    return BatchSpec.create(settings, formats, TranscribeOptions(punctuate=punctuate, **options))


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]


def comparable(path: Path) -> bytes | dict:
    """A file's content, without what differs between two runs of the same input (JSON timings)."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("timings"), data.pop("rtf")
        return data
    return path.read_bytes()


def output_files(out: Path) -> dict[str, bytes | dict]:
    return {str(p.relative_to(out)): comparable(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (RESULTS_NAME,) and not p.name.startswith(".")}


class CountingPipeline:
    """The real pipeline, counting what it is asked to transcribe (and optionally stopping, like a
    run interrupted with Ctrl-C, after ``stop_after`` files)."""

    def __init__(self, pipeline, stop_after: int | None = None):
        self.pipeline, self.stop_after = pipeline, stop_after
        self.calls: list[str] = []

    def transcribe(self, source, options=TranscribeOptions(), progress=None, name=None):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(name)
        return self.pipeline.transcribe(source, options, progress=progress, name=name)


# ---- listing -------------------------------------------------------------------------------------------


def test_directories_are_listed_recursively_by_audio_extension(corpus):
    root, paths = corpus
    items = list_inputs([root])
    assert {i.id: Path(i.path) for i in items} == {k: p.resolve() for k, p in paths.items()}
    assert all(os.path.isabs(i.path) and i.size >= 0 and i.mtime_ns > 0 for i in items)
    assert [i.id for i in items] == sorted(i.id for i in items)  # stable order: sorted walk


def test_manifests_files_ids_duplicates_and_collisions(tmp_path, corpus):
    root, paths = corpus
    plain = tmp_path / "lists" / "inputs.txt"
    plain.parent.mkdir()
    plain.write_text(
        "# comments and blank lines are skipped\n\n"
        f"{os.path.relpath(paths['a/s0'], plain.parent)}\n"  # relative to the manifest
        f"{paths['b/s0']}\n"
        f"{root / 'gone.wav'}\n",  # missing: kept, its failure is recorded when it is processed
        encoding="utf-8",
    )
    jsonl = tmp_path / "inputs.jsonl"
    jsonl.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in [
        {"path": str(paths["long"]), "id": "lectures/第一讲"},
        {"path": str(paths["a/s1"]), "id": "../../escape"},
        {"input": str(paths["b/c/pair"])},  # a results manifest can be fed back in
    ]) + "\n", encoding="utf-8")
    items = list_inputs([plain, jsonl, paths["a/s0"]])  # a/s0 named twice: listed once
    by_path = {Path(i.path): i.id for i in items}
    assert len(items) == 6
    a_s0, b_s0 = by_path[paths["a/s0"].resolve()], by_path[paths["b/s0"].resolve()]
    # two different files both called s0: each id gets a hash of its own path, whatever the order
    assert a_s0 != b_s0 and a_s0.startswith("s0-") and b_s0.startswith("s0-")
    assert [i.id for i in list_inputs([paths["b/s0"], paths["a/s0"]])] == [b_s0, a_s0]
    assert by_path[paths["long"].resolve()] == "lectures/第一讲"
    assert by_path[paths["a/s1"].resolve()] == "escape"  # never outside the output directory
    assert by_path[paths["b/c/pair"].resolve()] == "pair"
    gone = next(i for i in items if i.path.endswith("gone.wav"))
    assert (gone.id, gone.size, gone.mtime_ns) == ("gone", -1, -1)

    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text(f'{{"path": "{paths["a/s0"]}", "id": "x"}}\n{{"path": "{paths["a/s1"]}", "id": "x"}}\n')
    with pytest.raises(ConfigError, match="id 'x' is given to two inputs"):
        list_inputs([duplicate])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.wav"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        list_inputs([bad])
    with pytest.raises(ConfigError, match="input not found"):
        list_inputs([tmp_path / "no-such-dir"])


# ---- running -------------------------------------------------------------------------------------------


def test_local_batch_writes_outputs_and_one_manifest_entry_per_input(local_run, corpus, settings, pipeline):
    _, paths = corpus
    out, summary = local_run
    assert (summary.total, summary.skipped, summary.done, summary.failed, summary.lost) == (7, 0, 7, 2, 0)

    entries = {e["id"]: e for e in manifest_lines(out)}
    assert list(entries) == sorted(paths)  # exactly one entry per input, sorted by id
    for id_, path in paths.items():
        entry = entries[id_]
        assert entry["input"] == str(path.resolve())
        assert entry["size"] == path.stat().st_size and entry["mtime_ns"] == path.stat().st_mtime_ns
        if id_ in ("broken", "b/empty"):
            assert entry["status"] == "failed" and entry["outputs"] == {}
            assert entry["error"].startswith(path.name + ": ")
            assert entry["error_code"] in ("empty_file", "corrupt_audio")
            continue
        assert entry["status"] == "ok" and entry["error"] is None
        assert set(entry["outputs"]) == set(FORMATS)
        assert entry["audio_s"] == pytest.approx(sf.info(path).duration, abs=0.01)
        assert entry["rtf"] == pytest.approx(entry["wall_s"] / entry["audio_s"], rel=0.01)
        # every file renders the same transcript (the JSON one), as `asr transcribe` would write it
        transcript = Transcript.from_dict(json.loads((out / f"{id_}.json").read_text(encoding="utf-8")))
        for fmt, relative in entry["outputs"].items():
            assert relative == f"{id_}.{WRITERS[fmt].extension}"
            assert (out / relative).read_text(encoding="utf-8") == _render(transcript, fmt, settings)
    direct = pipeline.transcribe(paths["a/s0"])  # and that transcript is the pipeline's
    assert (out / "a" / "s0.txt").read_text(encoding="utf-8") == _render(direct, "txt", settings)
    assert not list(out.rglob("*.asr-tmp-*"))


def _render(transcript, fmt, settings) -> str:
    import io

    buffer = io.StringIO()
    WRITERS[fmt].write(transcript, buffer, settings.output)
    return buffer.getvalue()


@pytest.mark.slow  # transcribes the corpus over again, twice
def test_rerun_skips_what_is_done_and_redoes_what_changed(tmp_path, corpus, settings, pipeline):
    root = tmp_path / "in"  # a part of the corpus (this test changes an input)
    paths = {}
    for id_ in ("a/s0", "a/s1", "b/s0", "broken", "b/empty"):
        source = corpus[1][id_]
        paths[id_] = root / source.relative_to(corpus[0])
        paths[id_].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, paths[id_])
    out = tmp_path / "out"
    spec = spec_for(settings, ("txt", "srt"))
    run_local(list_inputs([root]), out, settings, spec, pipeline=pipeline, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")}

    counting = CountingPipeline(pipeline)
    again = run_local(list_inputs([root]), out, settings, spec, pipeline=counting, progress=False)
    # idempotent: only the two failed inputs are tried again; nothing done is redone or rewritten
    assert (again.skipped, again.done, again.failed) == (3, 2, 2)
    assert sorted(counting.calls) == ["broken.wav", "empty.mp3"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")} == stamps

    # what makes an input pending again: a missing output, an edited output, a changed input,
    # a format not made yet (fewer formats than last time is no reason)
    (out / "a" / "s0.srt").unlink()
    (out / "a" / "s1.txt").write_text("edited by hand\n", encoding="utf-8")
    os.utime(paths["b/s0"], ns=(paths["b/s0"].stat().st_atime_ns, paths["b/s0"].stat().st_mtime_ns + 10**9))
    counting = CountingPipeline(pipeline)
    third = run_local(list_inputs([root]), out, settings, spec, pipeline=counting, progress=False)
    assert sorted(counting.calls) == ["broken.wav", "empty.mp3", "s0.flac", "s0.wav", "s1.wav"]
    assert third.skipped == 0
    assert (out / "a" / "s1.txt").read_text(encoding="utf-8") != "edited by hand\n"

    counting = CountingPipeline(pipeline)
    run_local(list_inputs([root]), out, settings, spec_for(settings, ("txt",)), pipeline=counting, progress=False)
    assert sorted(counting.calls) == ["broken.wav", "empty.mp3"]
    counting = CountingPipeline(pipeline)
    run_local(list_inputs([root]), out, settings, spec_for(settings, ("txt", "vtt")), pipeline=counting,
              progress=False)
    assert len(counting.calls) == 5
    # a setting that changes the transcript (punctuation off) makes everything pending
    counting = CountingPipeline(pipeline)
    run_local(list_inputs([root]), out, settings, spec_for(settings, ("txt",), punctuate=False), pipeline=counting,
              progress=False)
    assert len(counting.calls) == 5
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == sorted(paths)


def test_an_interrupted_run_resumes_without_losing_or_repeating_a_file(tmp_path, corpus, local_run, settings,
                                                                      pipeline):
    root, paths = corpus
    out = tmp_path / "out"
    items = list_inputs([root])
    spec = spec_for(settings)
    stopping = CountingPipeline(pipeline, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_local(items, out, settings, spec, pipeline=stopping, progress=False)
    first = [e["id"] for e in manifest_lines(out)]
    assert len(first) == 3 and len(stopping.calls) == 3
    # and a crash in the middle of writing the manifest leaves a torn last line
    with open(out / RESULTS_NAME, "a", encoding="utf-8") as f:
        f.write('{"id": "long", "status": "o')
    # plus a temporary output the crash left behind
    (out / "a" / ".s1.txt.asr-tmp-deadbeef").write_text("half", encoding="utf-8")

    counting = CountingPipeline(pipeline)
    summary = run_local(items, out, settings, spec, pipeline=counting, progress=False)
    assert first == ["a/s0", "a/s1", "b/c/pair"] and summary.skipped == 3
    assert sorted(counting.calls) == ["broken.wav", "empty.mp3", "long.flac", "s0.flac"]
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == sorted(paths)
    assert not list(out.rglob("*.asr-tmp-*"))

    assert output_files(out) == output_files(local_run[0])  # the same files as one uninterrupted run


def test_manifest_reader_keeps_the_last_entry_and_skips_torn_lines(tmp_path):
    path = tmp_path / RESULTS_NAME
    path.write_text('{"id": "a", "status": "failed"}\n{"id": "b", "status": "ok"}\n'
                    '{"id": "a", "status": "ok"}\n{"id": "c", "sta', encoding="utf-8")
    entries, bad = read_results(path)
    assert entries == {"a": {"id": "a", "status": "ok"}, "b": {"id": "b", "status": "ok"}} and bad == 1


def test_a_second_batch_on_the_same_directory_is_refused(tmp_path, settings):
    spec = spec_for(settings)
    items = [BatchInput.of("x", tmp_path / "x.wav")]
    with BatchRun(tmp_path / "out", items, spec, progress=False):
        with pytest.raises(AsrError, match="another `asr batch` is writing"):
            with BatchRun(tmp_path / "out", items, spec, progress=False):
                pass
    with BatchRun(tmp_path / "out", items, spec, progress=False):  # free again
        pass


# ---- the command ---------------------------------------------------------------------------------------


def run_asr(*args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ASR_")}
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow  # starts processes
def test_asr_batch_command(tmp_path, corpus, test_models):
    root, paths = corpus
    out = tmp_path / "out"
    inputs = (root / "b", paths["broken"])
    first = run_asr("batch", *inputs, "--out", out, "--format", "txt,srt", "--config", TEST_CONFIG, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # two inputs failed; the others are done
    assert "Traceback" not in first.stderr
    assert f"{paths['broken'].resolve()}: error: " in first.stderr
    assert "4 inputs: 2 transcribed, 2 failed, 0 already done" in first.stdout
    assert {e["id"]: e["status"] for e in manifest_lines(out)} == {
        "broken": "failed", "c/pair": "ok", "empty": "failed", "s0": "ok"}
    assert (out / "c" / "pair.srt").is_file() and (out / "s0.txt").is_file()

    again = run_asr("batch", *inputs, "--out", out, "--format", "txt", "--config", TEST_CONFIG, cwd=tmp_path)
    assert "4 inputs: 0 transcribed, 2 failed, 2 already done (skipped)" in again.stdout, again.stderr

    refused = run_asr("batch", root, "--out", out, "--workers", "2", "--config", TEST_CONFIG, cwd=tmp_path)
    assert refused.returncode == 2 and "--workers need --ray" in refused.stderr
    missing = run_asr("batch", tmp_path / "nothing-here", "--out", out, "--config", TEST_CONFIG, cwd=tmp_path)
    assert missing.returncode == 2 and "input not found" in missing.stderr


# ---- Ray stays optional ----------------------------------------------------------------------------------


CORE_IMPORTS = """
import sys
import app, asr.service.api, asr.service.server, asr.scaleout.batch, asr.cli, asr.service.engine, asr.core.pipeline
import asr.models.loading
asr.cli.build_parser().parse_args(["serve"])
asr.cli.build_parser().parse_args(["batch", "x.wav", "--out", "o"])
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print("RAY MODULES:", loaded)
sys.exit(1 if loaded else 0)
"""


@pytest.mark.slow  # starts processes
def test_the_core_service_never_imports_ray():
    result = subprocess.run([sys.executable, "-c", CORE_IMPORTS], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


NO_RAY = """
import sys
sys.modules["ray"] = None  # as if the extra were not installed
from asr.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # starts processes
def test_without_the_ray_extra_batch_on_ray_says_how_to_install_it(tmp_path, corpus, test_models):
    root, _ = corpus
    for command in (["batch", str(root), "--out", str(tmp_path / "out"), "--ray", "auto"], ["serve", "--ray", "auto"]):
        result = subprocess.run([sys.executable, "-c", NO_RAY, *command, "--config", str(TEST_CONFIG)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert "Ray is not installed; install the extra: pip install '.[ray]'" in result.stderr
