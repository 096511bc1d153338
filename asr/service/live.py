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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from asr.config import Settings
from asr.core.live import (
    MODES,
    Caption,
    LiveOptions,
    LiveSession,
    Segment,
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


class LiveHub:
    """The service's live streams: their models, their threads and their limit.

    ``pipeline_factory(settings)`` gives a loaded pipeline of the live profile (asr.core.pipeline.build_pipeline);
    its streaming model makes the partials and the pipeline itself the finals.

    Two threads of their own. The live thread owns the streaming model and the VAD: the frames of all the
    streams that are waiting when it is free go through one ``accept_many``, so that under load each pass
    carries more streams instead of each stream waiting for more passes. The final thread runs the second
    passes and saves the sessions, so that one stream's end of speech never holds up the others' captions
    (that stream's own next captions wait for its final: a client gets its messages in order)."""

    def __init__(self, settings: Settings, pipeline_factory: Callable[[Settings], Any] | None = None):
        self.settings = settings
        self._factory = pipeline_factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-live")
        self._finals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-live-final")
        self._lock = threading.Lock()
        self._streams = 0
        self._inbox: list[tuple[LiveSession, bytes, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._draining = False
        self.ready = threading.Event()
        self._pipeline: Any = None
        self._online: Any = None
        #: streams per pass of the streaming model, for the benchmark and the log: {streams: passes}
        self.batch_sizes: dict[int, int] = {}

    def start(self) -> None:
        """Load the live models (on the live thread, which then owns them) and warm them up."""
        self._executor.submit(self._load).result()
        self.ready.set()

    def _load(self) -> None:
        from asr.core.pipeline import build_pipeline

        pipeline = (self._factory or build_pipeline)(self.settings)
        self._online = online_recognizer(pipeline.models)
        self._pipeline = pipeline

    @property
    def streams(self) -> int:
        return self._streams

    def open(self, options: LiveOptions) -> LiveSession:
        """A new stream; EngineBusyError over ``live.max_streams``, EngineNotReadyError while loading."""
        if not self.ready.is_set():
            raise EngineNotReadyError("the live models are loading; try again in a moment")
        with self._lock:
            if self._streams >= self.settings.live.max_streams:
                raise EngineBusyError(f"busy: {self._streams} live streams, the most this service runs at "
                                      "once (live.max_streams); try again later")
            self._streams += 1
        return open_session(self._pipeline, self._online, options)

    def close(self, session: LiveSession) -> None:
        with self._lock:
            self._streams -= 1

    async def audio(self, session: LiveSession, frame: bytes) -> tuple[list[Caption], list[Segment]]:
        """A frame of ``session``'s audio, in the next batch: its partial captions and the segments it ended
        (for ``final``)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._inbox.append((session, frame, future, loop))
            if not self._draining:  # else the batch being gathered takes this frame too
                self._draining = True
                self._executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """On the live thread: every frame waiting, through the streaming model together."""
        with self._lock:
            waiting, self._inbox, self._draining = self._inbox, [], False
        while waiting:  # a session at most once per pass (its handler waits for each frame, so this is rare)
            batch, later, seen = [], [], set()
            for item in waiting:
                (later if id(item[0]) in seen else batch).append(item)
                seen.add(id(item[0]))
            self._pass(batch)
            waiting = later

    def _pass(self, batch: list[tuple[LiveSession, bytes, asyncio.Future, asyncio.AbstractEventLoop]]) -> None:
        heard: list[tuple[LiveSession, np.ndarray, asyncio.Future, asyncio.AbstractEventLoop]] = []
        for session, frame, future, loop in batch:
            try:
                heard.append((session, session.hear(frame), future, loop))
            except Exception as e:  # noqa: BLE001 - a bad frame fails its own stream only
                loop.call_soon_threadsafe(_settle, future, None, e)
        streaming = [(s.stream, samples, False) for s, samples, _, _ in heard if s.stream is not None and len(samples)]
        try:
            texts = iter(self._online.accept_many(streaming) if streaming else ())
        except Exception as e:  # noqa: BLE001 - the model failed: every stream in the pass gets the error
            for _, _, future, loop in heard:
                loop.call_soon_threadsafe(_settle, future, None, e)
            return
        if streaming:
            self.batch_sizes[len(streaming)] = self.batch_sizes.get(len(streaming), 0) + 1
        for session, samples, future, loop in heard:
            text = next(texts) if session.stream is not None and len(samples) else ""
            try:
                result = session.heard(samples, text)
            except Exception as e:  # noqa: BLE001
                loop.call_soon_threadsafe(_settle, future, None, e)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the live thread (the streaming model and the VAD are not re-entrant)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def final(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the final thread: a second pass (``LiveSession.final``) or a session's saving."""
        return await asyncio.get_running_loop().run_in_executor(self._finals, fn, *args)

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._finals.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the client went while its frame was in a batch
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


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

    def recording(options: LiveOptions) -> _Recording:
        return _Recording(spool, options.sample_rate, settings.audio.max_duration_s)

    async def send_error(websocket: WebSocket, error: AsrError, options: LiveOptions | None, code: int) -> None:
        body = {"mode": options.mode if options else "", "wav_name": options.wav_name if options else "",
                "is_final": True, **envelope(error)}
        try:
            await websocket.send_text(json.dumps(body, ensure_ascii=False))
            await websocket.close(code, str(error)[:120])
        except (RuntimeError, WebSocketDisconnect):
            pass  # the client has gone already

    async def receive(websocket: WebSocket) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(websocket.receive(), live.idle_timeout_s)
        except asyncio.TimeoutError:
            raise _Idle() from None

    async def stream(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="binary" if "binary" in offered else None)
        options: LiveOptions | None = None
        session: LiveSession | None = None
        recorded: _Recording | None = None
        user: str | None = None
        try:
            user = user_of(websocket)
            if settings.server.auth and user is None:
                raise LoginRequiredError("log in first: the UI's login, or ws://user:password@host (HTTP Basic)")
            while True:
                message = await receive(websocket)
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    frame = message["bytes"]
                    if session is None:
                        raise RequestError("send the JSON configuration message first (mode, chunk_size, "
                                           "audio_fs ...), then the audio")
                    if len(frame) > live.max_frame_kb * 1024:
                        raise RequestTooLargeError(f"an audio frame of {len(frame) >> 10} KB is larger than the "
                                                   f"{live.max_frame_kb} KB allowed (live.max_frame_kb)")
                    recorded.write(frame)
                    captions, segments = await hub.audio(session, frame)
                    for segment in segments:
                        captions.append(await hub.final(session.final, segment))
                    for caption in captions:
                        await websocket.send_text(json.dumps(caption_message(caption, options, False),
                                                             ensure_ascii=False))
                    continue
                try:
                    body = json.loads(message.get("text") or "")
                except ValueError:
                    raise RequestError("a text message must be JSON, such as {\"is_speaking\": false}") from None
                if not isinstance(body, dict):
                    raise RequestError("a text message must be a JSON object")
                if session is None:
                    options = parse_options(body, settings)
                    session = hub.open(options)
                    recorded = recording(options)
                if body.get("is_speaking") is False:
                    captions, segments = await hub.run(session.end_step)
                    for segment in segments:
                        captions.append(await hub.final(session.final, segment))
                    finals, duration_s = session.utterance
                    done, recorded = recorded, recording(options)
                    await hub.final(save_utterance, engine, settings, finals, duration_s, options.wav_name, user,
                                    done)  # before the last message: a client that reads History then finds it
                    for i, caption in enumerate(captions):
                        await websocket.send_text(json.dumps(
                            caption_message(caption, options, i == len(captions) - 1), ensure_ascii=False))
                    if not captions:
                        await websocket.send_text(json.dumps(
                            {"mode": caption_mode(options), "wav_name": options.wav_name, "text": "",
                             "is_final": True}, ensure_ascii=False))
        except _Idle:
            await send_error(websocket, IdleTimeoutError(f"nothing was received for {live.idle_timeout_s:g} s "
                                                   "(live.idle_timeout_s); the stream is closed"), options, CLOSE_AWAY)
        except WebSocketDisconnect:
            pass
        except AsrError as e:
            close = {"busy": CLOSE_BUSY, "not_ready": CLOSE_BUSY, "request_too_large": CLOSE_TOO_BIG}
            await send_error(websocket, e, options, close.get(e.code, CLOSE_POLICY))
        except Exception:
            logger.exception("live stream failed")
            await send_error(websocket, AsrError("internal error; the details are in the service log"), options,
                             1011)
        finally:
            if session is not None:
                hub.close(session)
            if recorded is not None:  # gone mid-utterance: what was final so far is kept
                finals, duration_s = session.finals, session.position_s
                try:
                    await hub.final(save_utterance, engine, settings, finals, duration_s, options.wav_name, user,
                                    recorded)
                except RuntimeError:  # the service is stopping: its executor is shut
                    recorded.discard()

    for path in paths:
        app.router.add_websocket_route(path, stream)  # plain Starlette: no dependency injection to resolve


def caption_mode(options: LiveOptions) -> str:
    return "2pass-offline" if options.mode == "2pass" else options.mode


class _Idle(Exception):
    pass

