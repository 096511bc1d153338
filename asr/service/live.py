"""Live captions over WebSocket, in FunASR runtime's protocol (runtime/docs/websocket_protocol.md), so that
FunASR's own clients, and the third-party ones made for it, work unchanged:

    client → {"mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10, "wav_name": "mic",
              "wav_format": "pcm", "audio_fs": 16000, "hotwords": "{\\"阿里巴巴\\": 20}", "itn": true}
    client → PCM16 frames (binary) ...            server → {"mode": "2pass-online", "text": ..., "is_final": false}
                                                  server → {"mode": "2pass-offline", "text": ..., "timestamp": ...}
    client → {"is_speaking": false}               server → ... the last one with "is_final": true

Served at ``/`` (where FunASR's clients connect: ``ws://host:port``) and at ``/v1/live``, behind the same
Host/Origin guards as every route; with logins on, a stream needs the UI's login cookie or HTTP Basic
(``ws://user:password@host:port``, which FunASR's Python clients send as a header).

``is_final`` is true only on the last message after ``{"is_speaking": false}``, as the protocol says ("the end
of recognition") and as FunASR's C++ runtime sends it: clients stop reading at it. A segment's second-pass text
is the ``2pass-offline`` message. Errors come as ``{"is_final": true, "error": {"code", "message"}}`` (the
service's one envelope), then the socket closes.

Live streams run on two threads of their own with their own loaded models (the ``live`` profile's), so
they never wait behind the file queue, and the file queue never waits behind them: one batches the streaming
model over all the streams, the other runs the second passes (``LiveHub``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from asr.config import Settings
from asr.core.live import (
    MODES,
    Caption,
    LiveOptions,
    LiveSession,
    online_recognizer,
    open_session,
    session_transcript,
)
from asr.core.options import build_options, hotwords_available
from asr.errors import (
    AsrError,
    EngineBusyError,
    EngineNotReadyError,
    IdleTimeoutError,
    LoginRequiredError,
    RequestError,
    RequestTooLargeError,
)
from asr.service.guards import envelope

logger = logging.getLogger(__name__)

#: the WebSocket close codes: done; going away (idle, stopping); policy (a bad message, a login); too big; busy
CLOSE_DONE, CLOSE_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_BUSY = 1000, 1001, 1008, 1009, 1013


class LiveFeed:
    """One stream's way through the hub, made by ``LiveHub.open`` on the event loop: ``audio`` and ``end`` hand
    over what the client sent, at once (the live thread takes it when it is free), and ``next`` gives back what
    became of it, in order: ``("audio", captions, segments)``, ``("end", captions, segments, finals, duration_s,
    payload)`` or ``("error", exception)``. The segments are for ``LiveSession.final``."""

    def __init__(self, hub: LiveHub, session: LiveSession) -> None:
        self.session = session
        self._hub = hub
        self._loop = asyncio.get_running_loop()
        self._results: asyncio.Queue = asyncio.Queue()
        self._room = asyncio.Event()
        self._answered = asyncio.Event()
        self.waiting: deque[Any] = deque()  # frames (bytes) and ends (_End), under the hub's lock
        self.waiting_bytes = 0
        self.scheduled = False
        self.closed = False
        self.failed = False
        self.pushed = 0  # what was handed over, and of it what has been answered (each gives one result)
        self.answered = 0

    @property
    def idle(self) -> bool:
        """Nothing handed over is still unanswered: the client is not waiting for the service."""
        return self.answered >= self.pushed or self.failed or self.closed

    def answer(self) -> None:
        """One result has been dealt with (sent, its finals made, its utterance saved)."""
        self.answered += 1
        self._answered.set()

    async def settled(self) -> None:
        """Until everything handed over has been answered."""
        while not self.idle:
            self._answered.clear()
            if not self.idle:
                await self._answered.wait()

    def audio(self, frame: bytes) -> bool:
        """A frame of PCM16. True when this stream now has more than ``live.max_backlog_s`` of audio waiting:
        then wait for ``room()`` before reading more from the client (so TCP slows a client that sends faster
        than the service keeps up, and the audio waiting here stays bounded)."""
        return self._hub._push(self, frame)

    async def room(self) -> None:
        """Until the live thread has taken what this stream has waiting (or the stream is closed)."""
        while self._hub._full(self) and not self.closed:
            self._room.clear()
            if self._hub._full(self):
                await self._room.wait()

    def taken(self) -> None:
        """From the live thread: what was waiting has been taken."""
        self._call(self._room.set)

    def end(self, payload: Any = None) -> None:
        """``{"is_speaking": false}``, after the frames before it; ``payload`` comes back with its results."""
        self._hub._push(self, _End(payload))

    async def next(self) -> tuple:
        return await self._results.get()

    def deliver(self, item: tuple) -> None:
        """From the live thread."""
        self._call(self._results.put_nowait, item)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # its event loop is gone (the service stopping): nobody is waiting
            pass


def _torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


@dataclass(frozen=True)
class _End:
    payload: Any


class LiveHub:
    """The service's live streams: their models, their threads and their limit.

    ``pipeline_factory(settings)`` gives a loaded pipeline of the live profile (asr.core.pipeline.build_pipeline);
    its streaming model makes the partials and the pipeline itself the finals.

    Two threads of their own. The live thread owns the streaming model and the VAD. Whenever it is free it takes
    everything the streams have sent since, and goes through it frame by frame, stream by stream, in order; a
    frame that completes a chunk waits until every stream has reached its own, and those chunks go through the
    model in one pass. A frame that does not complete a chunk costs only the VAD. So the service batches by
    itself exactly when it needs to: under load, when each stream has several frames waiting. The final thread
    runs the second passes and saves the sessions, so one stream's end of speech never holds up the others'
    partials (its own next messages wait for its final: a client gets them in order)."""

    def __init__(self, settings: Settings, pipeline_factory: Callable[[Settings], Any] | None = None):
        self.settings = settings
        self._factory = pipeline_factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-live")
        self._finals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-live-final",
                                          initializer=_torch_threads, initargs=(settings.live.final_threads,))
        self._lock = threading.Lock()
        self._streams = 0
        self._ready: list[LiveFeed] = []  # feeds with something waiting
        self._draining = False
        self.ready = threading.Event()
        self._pipeline: Any = None
        self._online: Any = None
        self._passes: dict[int, int] = {}  # passes of the streaming model by how many streams each carried

    def start(self) -> None:
        """Load the live models (on the live thread, which then owns them) and warm them up, each on the thread
        that will run it."""
        self._executor.submit(self._load).result()
        self._finals.submit(self._pipeline.warm_up).result()
        self.ready.set()

    def _load(self) -> None:
        from asr.core.pipeline import build_pipeline

        pipeline = (self._factory or build_pipeline)(self.settings)
        # torch's thread count is per thread (OpenMP's): this one's, after the loading set the process's
        _torch_threads(self.settings.live.threads or self.settings.runtime.threads or len(os.sched_getaffinity(0)))
        self._online = online_recognizer(pipeline.models)
        self._pipeline = pipeline
        # the first stream's first chunk would otherwise pay torch's one-time costs (2 s here)
        warm = open_session(pipeline, self._online, LiveOptions(mode="2pass"))
        noise = (np.random.default_rng(0).standard_normal(16000 * 2) * 1000).astype("<i2").tobytes()
        for i in range(0, len(noise), 1920):
            warm.audio(noise[i:i + 1920])
        warm.end_step()  # not end(): the second pass is warmed on its own thread

    @property
    def streams(self) -> int:
        return self._streams

    def passes(self) -> dict[int, int]:
        """Passes of the streaming model so far, by how many streams each carried: {streams: passes}."""
        with self._lock:  # the live thread adds to it; a scrape reads it
            return dict(self._passes)

    def open(self, options: LiveOptions) -> LiveFeed:
        """A new stream (on the event loop that will read its results); EngineBusyError over
        ``live.max_streams``, EngineNotReadyError while loading."""
        if not self.ready.is_set():
            raise EngineNotReadyError("the live models are loading; try again in a moment")
        with self._lock:
            if self._streams >= self.settings.live.max_streams:
                raise EngineBusyError(f"busy: {self._streams} live streams, the most this service runs at "
                                      "once (live.max_streams); try again later")
            self._streams += 1
        return LiveFeed(self, open_session(self._pipeline, self._online, options))

    def close(self, feed: LiveFeed) -> None:
        """The stream is over: what it has waiting is dropped, and its place given back."""
        with self._lock:
            if feed.closed:
                return
            feed.closed = True
            feed.waiting.clear()
            feed.waiting_bytes = 0
            self._streams -= 1
        feed.taken()

    def _push(self, feed: LiveFeed, item: Any) -> bool:
        with self._lock:
            if feed.closed or feed.failed:
                return False
            if isinstance(item, bytes):
                feed.waiting_bytes += len(item)
            feed.waiting.append(item)
            feed.pushed += 1
            if not feed.scheduled:
                feed.scheduled = True
                self._ready.append(feed)
            if not self._draining:  # else the drain being gathered takes this too
                self._draining = True
                self._executor.submit(self._drain)
            return self._full(feed)

    def _full(self, feed: LiveFeed) -> bool:
        return feed.waiting_bytes / (2 * feed.session.options.sample_rate) > self.settings.live.max_backlog_s

    def _drain(self) -> None:
        """On the live thread: everything waiting, in order per stream, the chunks of all streams batched."""
        with self._lock:
            work = []
            for feed in self._ready:
                work.append((feed, deque(feed.waiting)))
                feed.waiting.clear()
                feed.waiting_bytes = 0
                feed.scheduled = False
                feed.taken()
            self._ready, self._draining = [], False
        while work:
            at_chunk: list[tuple[LiveFeed, np.ndarray]] = []  # streams whose next frame completes a chunk
            for feed, items in work:
                self._until_chunk(feed, items, at_chunk)
            if at_chunk:
                self._chunks(at_chunk)
            work = [(feed, items) for feed, items in work if items and not (feed.closed or feed.failed)]

    def _until_chunk(self, feed: LiveFeed, items: deque, at_chunk: list[tuple[LiveFeed, np.ndarray]]) -> None:
        """``feed``'s items up to the next frame that completes a chunk, which is added to ``at_chunk``."""
        session = feed.session
        try:
            while items and not (feed.closed or feed.failed):
                item = items.popleft()
                if isinstance(item, _End):
                    captions, segments = session.end_step()
                    finals, duration_s = session.utterance
                    feed.deliver(("end", captions, segments, finals, duration_s, item.payload))
                    continue
                samples = session.hear(item)
                if session.needs_model(samples):
                    at_chunk.append((feed, samples))
                    return
                text = self._online.accept(session.stream, samples, False) if session.stream is not None else ""
                feed.deliver(("audio", *session.heard(samples, text)))
        except Exception as e:  # noqa: BLE001 - a bad frame (or a failure) ends its own stream only
            self._fail(feed, items, e)

    def _fail(self, feed: LiveFeed, items: deque, error: Exception) -> None:
        items.clear()
        feed.failed = True  # what it sends from now on is dropped: its handler closes it
        feed.deliver(("error", error))

    def _chunks(self, at_chunk: list[tuple[LiveFeed, np.ndarray]]) -> None:
        try:
            texts = self._online.accept_many([(feed.session.stream, samples, False) for feed, samples in at_chunk])
        except Exception as e:  # noqa: BLE001 - the model failed: every stream in the pass gets the error
            for feed, _ in at_chunk:
                self._fail(feed, deque(), e)
            return
        with self._lock:
            self._passes[len(at_chunk)] = self._passes.get(len(at_chunk), 0) + 1
        for (feed, samples), text in zip(at_chunk, texts, strict=True):
            try:
                feed.deliver(("audio", *feed.session.heard(samples, text)))
            except Exception as e:  # noqa: BLE001
                self._fail(feed, deque(), e)

    async def final(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the final thread: a second pass (``LiveSession.final``) or a session's saving."""
        return await asyncio.get_running_loop().run_in_executor(self._finals, fn, *args)

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._finals.shutdown(wait=False, cancel_futures=True)


def parse_options(message: dict[str, Any], settings: Settings) -> LiveOptions:
    """The client's first message as LiveOptions; RequestError (the message says which field) for a bad one."""
    def number(name: str, default: int) -> int:
        value = message.get(name)
        if value is None:  # FunASR's clients send null for what they leave to the server
            return default
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
            raise RequestError(f"{name} must be a whole number, not {value!r}")
        return int(value)

    mode = message.get("mode", "2pass") or "2pass"
    if mode not in MODES:
        raise RequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    chunk = message.get("chunk_size", [5, 10, 5])
    if isinstance(chunk, str):
        chunk = [c.strip() for c in chunk.split(",")]
    try:
        chunk_size = tuple(int(c) for c in chunk)
    except (TypeError, ValueError):
        raise RequestError(f"chunk_size must be three whole numbers such as 5,10,5, not {chunk!r}") from None
    wav_format = str(message.get("wav_format") or "pcm").lower()
    if wav_format not in ("pcm", "wav"):
        raise RequestError(f"wav_format must be pcm (PCM16 mono frames), not {wav_format!r}")
    words = _hotwords(message.get("hotwords"))
    if words and not hotwords_available(settings):
        logger.info("live stream: hotwords ignored (this deployment's ASR model is not SeACo-Paraformer)")
        words = None
    itn = message.get("itn", None)
    final = build_options(settings, itn=bool(itn) if itn is not None else None, hotwords=words)
    return LiveOptions(
        mode=mode, chunk_size=chunk_size, chunk_interval=number("chunk_interval", 10),  # type: ignore[arg-type]
        sample_rate=number("audio_fs", 16000), wav_name=str(message.get("wav_name") or "microphone")[:200],
        encoder_chunk_look_back=number("encoder_chunk_look_back", 4),
        decoder_chunk_look_back=number("decoder_chunk_look_back", 1),
        final=replace(final, use_vad=False),  # the VAD has cut the segment already
    )


def _hotwords(raw: Any) -> str | None:
    """FunASR's clients send hotwords as a JSON object string ({"阿里巴巴": 20}: the weights are not used by
    SeACo), a space-separated string, or nothing."""
    if not raw:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return raw
    if isinstance(raw, (dict, list)):  # a dict's keys are the words
        return " ".join(str(k) for k in raw)
    return str(raw)


def caption_message(caption: Caption, options: LiveOptions, is_final: bool) -> dict[str, Any]:
    """A caption as FunASR's runtime sends it."""
    mode = f"2pass-{caption.source}" if options.mode == "2pass" else options.mode
    message: dict[str, Any] = {"mode": mode, "wav_name": options.wav_name, "text": caption.text, "is_final": is_final}
    if caption.source == "offline":
        tokens = [t for s in caption.sentences for t in s.tokens]
        message["timestamp"] = json.dumps([[t.start_ms, t.end_ms] for t in tokens])
        message["stamp_sents"] = [
            {"text_seg": " ".join(t.text for t in s.tokens), "punc": _trailing_punctuation(s.text),
             "start": s.start_ms, "end": s.end_ms, "ts_list": [[t.start_ms, t.end_ms] for t in s.tokens]}
            for s in caption.sentences
        ]
    return message


def _trailing_punctuation(text: str) -> str:
    stripped = text.rstrip("，。？！、,.?!;；：:")
    return text[len(stripped):]


class _Recording:
    """An utterance's audio, kept on disk as it comes (FLAC at the client's rate, up to
    ``audio.max_duration_s``): the player's copy of the job it becomes in the history, moved there as it is."""

    def __init__(self, directory: Path, sample_rate: int, max_s: float):
        import soundfile as sf

        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{uuid.uuid4().hex}.flac"
        self._file = sf.SoundFile(self.path, "w", samplerate=sample_rate, channels=1, format="FLAC", subtype="PCM_16")
        self._room = int(max_s * sample_rate)

    def write(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")[: self._room]
        self._room -= len(samples)
        if len(samples):
            self._file.write(samples)

    def close(self) -> Path:
        self._file.close()
        return self.path

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def save_utterance(engine: Any, settings: Settings, finals: list[Caption], duration_s: float, name: str,
                   owner: str | None, recording: _Recording) -> None:
    """A finished utterance (its finals) as a job in the history, with its audio for the player; nothing when
    nothing was said. Runs on the final thread; quick (a row, and the recording moved into place)."""
    from asr.service.media import media_root, playback_path

    try:
        audio = recording.close()
        if not finals:
            return
        record = engine.record_live(name, session_transcript(finals, duration_s), owner)
        try:
            target = playback_path(media_root(settings) / record.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(audio, target)
        except OSError as e:
            logger.warning("job %s: no playback copy of the live session (%s)", record.id, e)
    except AsrError as e:  # the history cannot take it: the client has its captions already
        logger.error("live session %s not saved in the history: %s", name, e)
    finally:
        recording.discard()


def add_live_routes(app: Any, engine: Any, settings: Settings, user_of: Callable[[Any], str | None],
                    paths: tuple[str, ...] = ("/", "/v1/live")) -> None:
    """The live WebSocket at ``paths``, over ``engine.live``; each finished utterance becomes a job in
    ``engine``'s history. ``user_of(websocket)`` is the signed-in user (the UI's cookie, or HTTP Basic),
    None without one; with logins on a stream without one is refused."""
    from starlette.websockets import WebSocket, WebSocketDisconnect

    live, hub = settings.live, engine.live
    spool = settings.storage.cache_path() / "live"

    def recording(options: LiveOptions, kept: list[_Recording]) -> _Recording:
        kept.append(_Recording(spool, options.sample_rate, settings.audio.max_duration_s))
        return kept[-1]

    async def send_error(websocket: WebSocket, error: AsrError, options: LiveOptions | None, code: int) -> None:
        body = {"mode": options.mode if options else "", "wav_name": options.wav_name if options else "",
                "is_final": True, **envelope(error)}
        try:
            await websocket.send_text(json.dumps(body, ensure_ascii=False))
            await websocket.close(code, str(error)[:120])
        except (RuntimeError, WebSocketDisconnect):
            pass  # the client has gone already

    async def receive(websocket: WebSocket, feed: LiveFeed | None) -> dict[str, Any]:
        """The client's next message; _Idle after ``live.idle_timeout_s`` without one, unless the client is
        waiting for the service (its audio, or its finals, still on their way)."""
        while True:
            try:
                return await asyncio.wait_for(websocket.receive(), live.idle_timeout_s)
            except asyncio.TimeoutError:
                if feed is None or feed.idle:
                    raise _Idle() from None

    async def send_results(websocket: WebSocket, feed: LiveFeed, options: LiveOptions, user: str | None) -> None:
        """What the hub made of the stream, to the client, in order; a segment's final is awaited in its place.
        A client that has gone gets nothing more, but its finals are still made and its utterances saved."""
        session = feed.session
        gone = False

        async def send(body: dict[str, Any]) -> None:
            nonlocal gone
            if not gone:
                try:
                    await websocket.send_text(json.dumps(body, ensure_ascii=False))
                except (WebSocketDisconnect, RuntimeError):  # RuntimeError: Starlette's "send after close"
                    gone = True

        try:
            while True:
                item = await feed.next()
                if item[0] == "error":
                    raise item[1]
                captions = list(item[1])
                for segment in item[2]:
                    captions.append(await hub.final(session.final, segment))
                if item[0] == "audio":
                    for caption in captions:
                        await send(caption_message(caption, options, False))
                    feed.answer()
                    continue
                _, _, _, finals, duration_s, done = item
                # saved before the last message: a client that reads History then finds it
                await hub.final(save_utterance, engine, settings, finals, duration_s, options.wav_name, user, done)
                for i, caption in enumerate(captions):
                    await send(caption_message(caption, options, i == len(captions) - 1))
                if not captions:
                    await send({"mode": caption_mode(options), "wav_name": options.wav_name, "text": "",
                                "is_final": True})
                feed.answer()
        except AsrError as e:
            await send_error(websocket, e, options, _close_code(e))
        except Exception:
            logger.exception("live stream failed")
            await send_error(websocket, AsrError("internal error; the details are in the service log"), options,
                             1011)

    async def stream(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="binary" if "binary" in offered else None)
        options: LiveOptions | None = None
        feed: LiveFeed | None = None
        sender: asyncio.Task | None = None
        recorded: _Recording | None = None
        recordings: list[_Recording] = []  # every one this connection made: none may outlive it
        user: str | None = None
        gone = False

        async def stop_sending() -> None:
            if sender is not None and not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

        try:
            user = user_of(websocket)
            if settings.server.auth and user is None:
                raise LoginRequiredError("log in first: the UI's login, or ws://user:password@host (HTTP Basic)")
            while True:
                message = await receive(websocket, feed)
                if message["type"] == "websocket.disconnect" or (sender is not None and sender.done()):
                    gone = True  # or closed by the sender, after an error it has sent
                    return
                if message.get("bytes") is not None:
                    frame = message["bytes"]
                    if feed is None:
                        raise RequestError("send the JSON configuration message first (mode, chunk_size, "
                                           "audio_fs ...), then the audio")
                    if len(frame) > live.max_frame_kb * 1024:
                        raise RequestTooLargeError(f"an audio frame of {len(frame) >> 10} KB is larger than the "
                                                   f"{live.max_frame_kb} KB allowed (live.max_frame_kb)")
                    recorded.write(frame)
                    if feed.audio(frame):  # the service is behind this stream: read no more until it catches up
                        await feed.room()
                    continue
                try:
                    body = json.loads(message.get("text") or "")
                except ValueError:
                    raise RequestError("a text message must be JSON, such as {\"is_speaking\": false}") from None
                if not isinstance(body, dict):
                    raise RequestError("a text message must be a JSON object")
                if feed is None:
                    options = parse_options(body, settings)
                    feed = hub.open(options)
                    recorded = recording(options, recordings)
                    sender = asyncio.create_task(send_results(websocket, feed, options, user))
                if body.get("is_speaking") is False:
                    done, recorded = recorded, recording(options, recordings)
                    feed.end(done)
        except _Idle:
            await stop_sending()
            await send_error(websocket, IdleTimeoutError(f"nothing was received for {live.idle_timeout_s:g} s "
                                                   "(live.idle_timeout_s); the stream is closed"), options, CLOSE_AWAY)
        except WebSocketDisconnect:
            pass
        except AsrError as e:
            await stop_sending()
            await send_error(websocket, e, options, _close_code(e))
        except Exception:
            logger.exception("live stream failed")
            await stop_sending()
            await send_error(websocket, AsrError("internal error; the details are in the service log"), options,
                             1011)
        finally:
            if gone and feed is not None and sender is not None and not sender.done():
                try:  # what the client sent before it went is still answered: its finals made, its utterance saved
                    await asyncio.wait_for(feed.settled(), max(60.0, live.idle_timeout_s))
                except asyncio.TimeoutError:
                    logger.warning("live stream %s: gone, and its last results took too long", options.wav_name)
            await stop_sending()
            if feed is not None:
                hub.close(feed)
            if recorded is not None:  # gone mid-utterance: what was final so far is kept
                session = feed.session
                try:
                    await hub.final(save_utterance, engine, settings, session.finals, session.position_s,
                                    options.wav_name, user, recorded)
                except RuntimeError:  # the service is stopping: its executor is shut
                    pass
            # the ends the client sent but the stream did not get to (it was gone first): their saving never
            # came, and the saves that did have run (the final thread takes them in turn)
            for kept in recordings:
                kept.discard()

    for path in paths:
        app.router.add_websocket_route(path, stream)  # plain Starlette: no dependency injection to resolve


def _close_code(error: AsrError) -> int:
    return {"busy": CLOSE_BUSY, "not_ready": CLOSE_BUSY, "request_too_large": CLOSE_TOO_BIG}.get(error.code,
                                                                                               CLOSE_POLICY)


def caption_mode(options: LiveOptions) -> str:
    return "2pass-offline" if options.mode == "2pass" else options.mode


class _Idle(Exception):
    pass

