#!/usr/bin/env python3
"""Live captions: what a stream costs and how late its captions come, printed as markdown.

    .venv/bin/python scripts/bench_live.py                      # full-size models, 1-8 streams of 60 s
    .venv/bin/python scripts/bench_live.py --smoke              # tiny models, 15 s streams: nothing written
    .venv/bin/python scripts/bench_live.py --streams 1,4,6,8 --seconds 90

Two parts, on the full-size random-weight models (scripts/make_test_models.py --full; speed does not depend
on weight values) and espeak-ng Mandarin with pauses (scripts/mandarin_speech.py):

1. **The streaming model alone**, in this process: the compute for one 600 ms chunk of one stream, through
   FunASR's ``AutoModel.generate(input=chunk, cache=..., chunk_size=[5, 10, 5], ...)`` (how FunASR's own
   server runs every stream) and through ``OnlineRecognizer.accept_many`` with 1 to 8 streams in one pass.
2. **The service**: app.py with the live profile, and N clients over real WebSockets, each sending 60 ms
   PCM16 frames at real time (FunASR's client's frame size), staggered so that their chunks and their ends of
   speech fall at different moments. Each message a client receives is matched to the frame that caused it
   through a replay: the same audio through one ``LiveSession`` beforehand (its captions are the service's,
   which the replay checks), so a partial's latency is counted from the moment the client sent the last
   frame of its chunk, and a final's from the moment it sent the frame in which the VAD found the end.

Columns: **chunk → partial** (p50 / p95 / max): the client sending the frame that completes a 600 ms chunk
to it receiving that chunk's partial. A word waits for its chunk besides (0 to 600 ms, and the model looks
300 ms ahead), as with FunASR's server. **speech end → final**: the end of the speech, in the audio, to the
client receiving its final, which includes the VAD's wait for enough silence; **of which compute**: from the
frame in which the VAD found the end. **server CPU**: the service process's CPU time over the run, as a
share of the 2 cores, and per second of one stream's audio. **batch**: the mean number of streams per pass
of the streaming model. A stream keeps up when its partials do not fall behind: the p95 under one chunk.
Run it on a quiet machine: the numbers are wall-clock seconds. A full run replaces its own block of
docs/BENCHMARKS.md (``<!-- bench:live -->``), nothing else; ``--out`` sends a trial run elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_report import DOC, invocation, publish, stamp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
CACHE = REPO / ".cache" / "bench-live"
LIVE = "vad+asr+punc+live"
FRAME = 960  # 60 ms at 16 kHz: what FunASR's clients send (chunk_size[1] * 60 / chunk_interval)
CHUNK = 9600  # 600 ms
STREAM_KWARGS = {"chunk_size": [5, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}


def make_audio(seconds: float) -> np.ndarray:
    import soundfile as sf
    from mandarin_speech import SENTENCES, speak, write_speech

    path = CACHE / f"speech-{seconds:g}s.wav"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        clips, rate = speak(SENTENCES, to_16k=True)
        # most pauses long enough for the VAD to end the sentence (800 ms of silence), as between a speaker's
        # sentences; some not, as within a thought
        write_speech(path, seconds, clips, rate, seed=seconds, pauses=(0.4, 1.2, 1.6, 2.0))
    audio, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    return audio


def settings_for(models_root: Path, max_streams: int = 4):
    from asr.config import load_settings

    return load_settings(None, models={"cache_dir": str(models_root), "profile": LIVE},
                         runtime={"device": "cpu"}, live={"max_streams": max_streams},
                         storage={"cache_dir": str(CACHE / "service-cache" / models_root.name),
                                  "state_dir": str(CACHE / "state")})


# ---- part 1: the streaming model alone ----------------------------------------------------------------


def model_alone(models_root: Path, audio: np.ndarray, batches: list[int], rounds: int) -> dict:
    """ms of compute per stream per 600 ms chunk: FunASR's generate, and ours at each batch size."""
    import torch

    from asr.core.streaming import OnlineRecognizer, StreamSettings
    from asr.models.loading import load_models

    models = load_models(settings_for(models_root))
    online = models.online
    recognizer = OnlineRecognizer(online.module, online.frontend, online.tokenizer, models.device)
    samples = audio.astype(np.float32) / 32768
    chunks = [samples[i:i + CHUNK] for i in range(0, CHUNK * rounds, CHUNK)]
    settings = StreamSettings(chunk_size=(5, 10, 5))
    threads = torch.get_num_threads()
    result = {}

    from asr.models.funasr_import import import_registered

    import_registered("ParaformerStreaming")
    from funasr.auto.auto_model import AutoModel

    theirs = AutoModel(model=str(online.location.directory), device="cpu", disable_update=True, disable_pbar=True,
                       log_level="ERROR", ncpu=threads)
    for attempt in range(2):  # the first round warms up
        cache: dict = {}
        started = time.perf_counter()
        for i, chunk in enumerate(chunks):
            theirs.generate(input=chunk, cache=cache, is_final=i == len(chunks) - 1, **STREAM_KWARGS)
        result["funasr"] = (time.perf_counter() - started) / len(chunks) * 1000
    torch.set_num_threads(threads)
    for batch in batches:
        for attempt in range(2):
            streams = [recognizer.new_stream(settings) for _ in range(batch)]
            started = time.perf_counter()
            for i, chunk in enumerate(chunks):
                recognizer.accept_many([(s, chunk, i == len(chunks) - 1) for s in streams])
            result[batch] = (time.perf_counter() - started) / len(chunks) / batch * 1000
    return result


# ---- part 2: the service over WebSocket ----------------------------------------------------------------


def replay(models_root: Path, audio: np.ndarray) -> list[tuple[int, dict, int]]:
    """The audio through the service's own LiveHub, here, one 60 ms frame at a time: (the frame index that
    caused it, the message, and for a final the end of its speech in ms, as the VAD found it). The hub runs its
    threads as the service's does (their torch thread counts change the rounding, and random weights' text
    with it), so the service's messages are these."""
    from asr.service.live import LiveHub, caption_message, parse_options

    settings = settings_for(models_root)
    hub = LiveHub(settings)
    hub.start()
    options = parse_options({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "bench"}, settings)
    pcm = audio.astype("<i2").tobytes()
    frames = [pcm[i:i + FRAME * 2] for i in range(0, len(pcm), FRAME * 2)]

    async def one_by_one() -> list[tuple[int, dict, int]]:
        feed, out = hub.open(options), []

        async def answer(k: int, last: bool) -> None:
            kind, captions, segments, *_ = await feed.next()
            assert kind != "error", captions
            captions = list(captions) + [await hub.final(feed.session.final, s) for s in segments]
            out.extend((k, caption_message(c, options, last and i == len(captions) - 1), c.end_ms)
                       for i, c in enumerate(captions))

        for k, frame in enumerate(frames):
            feed.audio(frame)
            await answer(k, False)
        feed.end()
        await answer(len(frames), True)
        hub.close(feed)
        return out

    try:
        return asyncio.run(one_by_one())
    finally:
        hub.stop()


async def client(url: str, audio: np.ndarray, delay: float, name: str) -> dict:
    """One stream at real time: when each frame was sent, when each message came."""
    import websockets

    await asyncio.sleep(delay)
    pcm = audio.astype("<i2").tobytes()
    frames = [pcm[i:i + FRAME * 2] for i in range(0, len(pcm), FRAME * 2)]
    sent: list[float] = []
    received: list[tuple[float, dict]] = []
    async with websockets.connect(url, max_size=None, open_timeout=30, ping_interval=None) as socket:  # as FunASR's
        await socket.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10,
                                      "wav_name": name, "wav_format": "pcm", "audio_fs": 16000, "itn": True}))

        async def listen() -> None:
            async for message in socket:
                body = json.loads(message)
                received.append((time.monotonic(), body))
                if body.get("is_final"):
                    return

        listener = asyncio.create_task(listen())
        start = time.monotonic()
        for k, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + k * FRAME / 16000 - time.monotonic()))
            sent.append(time.monotonic())
            await socket.send(frame)
        sent.append(time.monotonic())  # the end message: it "causes" the last final
        await socket.send(json.dumps({"is_speaking": False}))
        await asyncio.wait_for(listener, 600)
    return {"start": start, "sent": sent, "received": received}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_run(server, audio: np.ndarray, streams: int, expected: list[tuple[int, dict, int]]) -> dict:
    url = server.url.replace("http://", "ws://") + "/v1/live"
    stagger = 0.6 * 7 / 8  # spreads the streams' chunk boundaries over a chunk, and their sentences apart

    async def all_streams() -> list[dict]:
        return await asyncio.gather(*(client(url, audio, i * stagger, f"bench-{i}") for i in range(streams)))

    import httpx

    before = cpu_seconds(server.process.pid)
    wall = time.monotonic()
    runs = asyncio.run(all_streams())
    wall = time.monotonic() - wall
    cpu = cpu_seconds(server.process.pid) - before
    batch = httpx.get(server.url + "/metrics").text
    partial, final, compute, same = [], [], [], True
    for run in runs:
        if [m["text"] for _, m in run["received"]] != [m["text"] for _, m, _ in expected]:
            same = False
            continue
        for (arrived, message), (k, _, end_ms) in zip(run["received"], expected, strict=True):
            if message["mode"] == "2pass-online":
                partial.append(arrived - run["sent"][k])
            elif message["mode"] == "2pass-offline":
                compute.append(arrived - run["sent"][k])
                if k < len(run["sent"]) - 1:  # an end the VAD found (not the client's end of the stream)
                    final.append(arrived - (run["start"] + end_ms / 1000))
    seconds = len(audio) / 16000
    return {"streams": streams, "same": same, "partial": partial, "final": final, "compute": compute,
            "cpu_share": cpu / wall / (os.cpu_count() or 1), "cpu_per_audio_s": cpu / (seconds * streams),
            "metrics": batch}


def mean_batch(metrics_before: str, metrics_after: str) -> float | None:
    """Streams per pass of the streaming model between two scrapes of /metrics (asr_live_passes_total)."""
    def passes(text: str) -> dict[int, float]:
        found = {}
        for line in text.splitlines():
            if line.startswith("asr_live_passes_total{"):
                label, value = line.rsplit(" ", 1)
                found[int(label.split('"')[1])] = float(value)
        return found

    before, after = passes(metrics_before), passes(metrics_after)
    delta = {n: after[n] - before.get(n, 0.0) for n in after}
    total = sum(delta.values())
    return sum(n * c for n, c in delta.items()) / total if total else None


def quantiles(values: list[float]) -> str:
    if not values:
        return "—"
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"{statistics.median(ms):.0f} / {p95:.0f} / {ms[-1]:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models, 15 s of audio: checks the script runs, nothing written")
    parser.add_argument("--streams", default=None, help="concurrent streams to try, e.g. 1,2,4,8")
    parser.add_argument("--seconds", type=float, default=None, help="audio per stream")
    parser.add_argument("--batches", default="1,2,4,8", help="batch sizes for the model-alone part")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the service, e.g. ASR_RUNTIME__THREADS=1 (repeatable)")
    parser.add_argument("--service-only", action="store_true", help="skip the model-alone part")
    parser.add_argument("--out", type=Path, default=DOC, help="the doc whose live block a full run replaces")
    args = parser.parse_args(argv)
    streams = [int(s) for s in (args.streams or ("1,2" if args.smoke else "1,2,4,6,8")).split(",")]
    # smoke keeps the streams asked for (the runner checks its own arguments) but always short audio
    seconds = 15.0 if args.smoke else (args.seconds or 60.0)
    batches = [int(b) for b in args.batches.split(",")]
    models_root = REPO / ".cache" / ("test-models" if args.smoke else "full-models")
    if not (models_root / "models").exists():
        build = "" if args.smoke else " --full"
        raise SystemExit(f"no models in {models_root}: run scripts/make_test_models.py{build}")
    audio = make_audio(seconds)

    alone = None if args.service_only else model_alone(models_root, audio, batches,
                                                       rounds=min(20, len(audio) // CHUNK - 1))
    env = dict(item.split("=", 1) for item in args.server_env)
    os.environ.update(env)  # the replay's hub reads the service's settings
    expected = replay(models_root, audio)

    from tests.server import start_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    overrides = {"models": {"profile": LIVE}, "live": {"max_streams": max(streams)}}
    server = start_server(work, models_root, overrides=overrides, ready_timeout=600, env=env)
    rows = []
    try:
        import httpx

        for n in streams:
            before = httpx.get(server.url + "/metrics").text
            try:
                row = service_run(server, audio, n, expected)
            except Exception as e:  # noqa: BLE001 - a configuration that fails is a result too
                rows.append({"streams": n, "error": f"{type(e).__name__}: {e}"})
                print(f"{n} streams: failed: {e}", file=sys.stderr)
                continue
            row["batch"] = mean_batch(before, row.pop("metrics"))
            rows.append(row)
            print(f"{n} streams: partial {quantiles(row['partial'])} ms, final {quantiles(row['final'])} ms, "
                  f"CPU {row['cpu_share']:.0%}", file=sys.stderr)
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)

    lines = [stamp(invocation(argv)), ""]
    if env:
        lines += [f"Service environment: `{' '.join(args.server_env)}`", ""]
    if alone is not None:
        lines += [
            "**The streaming model alone**: compute per stream for one 600 ms chunk (chunk_size 5,10,5).", "",
            "| | ms per stream-chunk | share of real time |", "|---|---|---|",
            f"| FunASR `AutoModel.generate`, one stream per call | {alone['funasr']:.1f} | "
            f"{alone['funasr'] / 600:.1%} |",
        ]
        for b in batches:
            lines.append(f"| ours, `accept_many`, {b} stream{'s' if b > 1 else ''} per pass | {alone[b]:.1f} | "
                         f"{alone[b] / 600:.1%} |")
    lines += [
        "", "**The service over WebSocket**: clients at real time (ms: p50 / p95 / max).", "",
        "| streams | chunk → partial | speech end → final | of which compute | server CPU (of 2 cores) "
        "| CPU s per stream-second | batch | captions as one stream alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['streams']} | failed: {r['error'][:120]} | | | | | | |")
            continue
        batch = f"{r['batch']:.2f}" if r["batch"] else "—"
        lines.append(f"| {r['streams']} | {quantiles(r['partial'])} | {quantiles(r['final'])} | "
                     f"{quantiles(r['compute'])} | {r['cpu_share']:.0%} | {r['cpu_per_audio_s']:.3f} | {batch} | "
                     f"{'yes' if r['same'] else 'no'} |")
    publish({"live": "\n".join(lines)}, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
