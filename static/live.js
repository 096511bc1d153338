// The Live tab (app.py's gr.HTML with this as js_on_load): the microphone, 60 ms PCM16 frames over the
// service's live WebSocket (FunASR's protocol, asr/service/live.py), and the captions: the partial text in
// grey, replaced by each sentence's punctuated final. The browser's login cookie goes with the socket.
// Given by Gradio: element (stays while Gradio re-renders the HTML inside it).

const FRAME = 960; // 60 ms at 16 kHz, what FunASR's clients send
let live = null; // {socket, context, stream, processor, held}

function parts() {
  return {
    start: element.querySelector(".live-start"),
    stop: element.querySelector(".live-stop"),
    finals: element.querySelector(".live-finals"),
    partial: element.querySelector(".live-partial"),
    status: element.querySelector(".live-status"),
  };
}

function say(key) {
  return element.querySelector(".live-board")?.dataset[key] || "";
}

function show(message) {
  const { finals, partial, status } = parts();
  if (message.error) {
    status.textContent = message.error.message;
    status.classList.add("live-error");
    return;
  }
  if (message.mode.endsWith("online") && !message.is_final) {
    partial.textContent += message.text;
  } else if (message.text) {
    const line = document.createElement("p");
    line.className = "live-final";
    line.textContent = message.text;
    finals.append(line);
    partial.textContent = "";
  }
  if (message.is_final) status.textContent = say("done");
  finals.lastElementChild?.scrollIntoView({ block: "nearest" });
}

function frames(samples) {
  // Float32 at 16 kHz in, PCM16 frames of 60 ms out (the rest waits for the next call)
  const held = live.held.length ? Float32Array.from([...live.held, ...samples]) : samples;
  let at = 0;
  for (; at + FRAME <= held.length; at += FRAME) {
    const pcm = new Int16Array(FRAME);
    for (let i = 0; i < FRAME; i++) pcm[i] = Math.max(-1, Math.min(1, held[at + i])) * 32767;
    if (live.socket.readyState === WebSocket.OPEN) live.socket.send(pcm.buffer);
  }
  live.held = held.slice(at);
}

async function start() {
  const { start, stop, finals, partial, status } = parts();
  status.classList.remove("live-error");
  finals.textContent = "";
  partial.textContent = "";
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  } catch (e) {
    status.textContent = say("nomic");
    status.classList.add("live-error");
    return;
  }
  const url = new URL("v1/live", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url, ["binary"]);
  socket.binaryType = "arraybuffer";
  // the browser resamples to 16 kHz (the model's rate) when the context asks for it
  const context = new AudioContext({ sampleRate: 16000 });
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(2048, 1, 1);
  live = { socket, context, stream, processor, held: new Float32Array(0) };
  socket.onmessage = (event) => show(JSON.parse(event.data));
  socket.onclose = () => finish(false);
  socket.onopen = () => {
    const wav_name = `recording ${new Date().toISOString().slice(0, 19).replace("T", " ").replaceAll(":", "-")}`;
    socket.send(JSON.stringify({ mode: "2pass", chunk_size: [5, 10, 5], chunk_interval: 10, wav_name,
                                 wav_format: "pcm", audio_fs: 16000, is_speaking: true }));
    processor.onaudioprocess = (event) => live && frames(event.inputBuffer.getChannelData(0));
    source.connect(processor);
    processor.connect(context.destination);
    status.textContent = say("listening");
    start.disabled = true;
    stop.disabled = false;
  };
}

function finish(ask) {
  // ask: the user pressed Stop (the socket stays for the last final); else the socket has closed
  if (!live) return;
  const { start, stop, status } = parts();
  live.processor.disconnect();
  live.stream.getTracks().forEach((t) => t.stop());
  live.context.close();
  if (ask && live.socket.readyState === WebSocket.OPEN) {
    live.socket.send(JSON.stringify({ is_speaking: false }));
    status.textContent = say("finishing");
    const socket = live.socket;
    socket.addEventListener("message", (event) => JSON.parse(event.data).is_final && socket.close());
  }
  live = null;
  start.disabled = false;
  stop.disabled = true;
}

element.addEventListener("click", (event) => {
  if (event.target.closest(".live-start")) start();
  else if (event.target.closest(".live-stop")) finish(true);
});
