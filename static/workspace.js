// The transcript workspace (app.py's gr.HTML with this as js_on_load): one card per file, each with its
// player, its sentences and its own status or error. Events are delegated to `element`, which stays
// while Gradio re-renders the HTML inside it on every progress update.
// Given by Gradio: element, trigger, props, server (the Python functions of app.workspace_functions).

const card = (node) => node.closest(".ws-job");
const player = (job) => job && job.querySelector("audio, video");
const editing = (node) => node.closest("[contenteditable=true], input, select, textarea");

function showProblem(job, message) {
  let box = job.querySelector(".ws-edit-error");
  if (!box) {
    box = document.createElement("p");
    box.className = "ws-edit-error";
    box.setAttribute("role", "alert");
    job.querySelector(".ws-sentences")?.before(box);
  }
  box.textContent = message || "";
  box.hidden = !message;
}

function seek(sentence, stopAtEnd = false) {
  // A speech segment (VAD) plays to its end and stops; a sentence plays on, as a reader expects.
  const audio = player(card(sentence));
  if (!audio) return;
  audio.currentTime = Number(sentence.dataset.start) / 1000;
  audio.dataset.stopAt = stopAtEnd ? sentence.dataset.end : "";
  audio.play().catch(() => {});
}

function follow(audio) {
  // The sentence under the playhead is highlighted, and kept in view while it plays.
  const job = card(audio);
  const now = audio.currentTime * 1000;
  if (audio.dataset.stopAt && now >= Number(audio.dataset.stopAt)) {
    audio.dataset.stopAt = "";
    audio.pause();
  }
  let current = null;
  for (const s of job.querySelectorAll(".ws-sentence, .ws-seg")) {
    const on = now >= Number(s.dataset.start) && now < Number(s.dataset.end);
    s.classList.toggle("ws-playing", on);
    if (on && s.matches(".ws-sentence")) current = s;
  }
  if (current && !audio.paused && !current.matches(":hover")) {
    current.scrollIntoView({ block: "nearest" });
  }
}

async function saveText(node) {
  const sentence = node.closest(".ws-sentence");
  const job = card(node);
  const text = node.textContent.trim();
  node.removeAttribute("contenteditable");
  if (text === node.dataset.original) return;
  const answer = await server.save_sentence([job.dataset.job, Number(sentence.dataset.index), text, null]);
  if (answer.error) {
    node.textContent = node.dataset.original;
    showProblem(job, answer.error);
    return;
  }
  showProblem(job, "");
  node.textContent = answer.text;
  sentence.classList.add("ws-edited");
  job.dataset.edited = "true";
}

async function saveSpeaker(select) {
  const sentence = select.closest(".ws-sentence");
  const job = card(select);
  const answer = await server.save_sentence([job.dataset.job, Number(sentence.dataset.index), null, Number(select.value)]);
  if (answer.error) {
    select.value = sentence.dataset.speaker;
    showProblem(job, answer.error);
    return;
  }
  showProblem(job, "");
  sentence.dataset.speaker = select.value;
  sentence.classList.add("ws-edited");
}

async function rename(chip) {
  const job = card(chip);
  const name = chip.textContent.trim();
  chip.removeAttribute("contenteditable");
  if (name === chip.dataset.original) return;
  const answer = await server.rename_speaker([job.dataset.job, Number(chip.dataset.speaker), name]);
  if (answer.error) {
    chip.textContent = chip.dataset.original;
    showProblem(job, answer.error);
    return;
  }
  showProblem(job, "");
  for (const option of job.querySelectorAll(`option[value="${chip.dataset.speaker}"]`)) option.textContent = answer.name;
  chip.textContent = answer.name;
}

function startEditing(node) {
  node.dataset.original = node.textContent.trim();
  node.setAttribute("contenteditable", "true");
  node.focus();
  document.getSelection()?.selectAllChildren(node);
}

element.addEventListener("click", async (event) => {
  const target = event.target;
  if (target.closest(".ws-edit")) {
    startEditing(target.closest(".ws-sentence").querySelector(".ws-text"));
    return;
  }
  if (target.closest(".ws-rename")) {
    startEditing(target.closest(".ws-chip").querySelector(".ws-name-of"));
    return;
  }
  if (target.closest(".ws-cancel")) {
    const job = card(target);
    target.disabled = true;
    const answer = await server.cancel_jobs([job ? [job.dataset.job] : []]);
    if (answer.error && job) showProblem(job, answer.error);
    return;
  }
  if (target.closest(".ws-cancel-all")) {
    target.disabled = true;
    const ids = [...element.querySelectorAll(".ws-job[data-active=true]")].map((j) => j.dataset.job);
    await server.cancel_jobs([ids]);
    return;
  }
  const segment = target.closest(".ws-seg");
  if (segment) {
    seek(segment, true);
    return;
  }
  const sentence = target.closest(".ws-sentence");
  if (sentence && !editing(target)) seek(sentence, card(sentence).dataset.kind === "vad");
});

element.addEventListener("keydown", (event) => {
  const node = event.target;
  if (!node.matches("[contenteditable=true]")) return;
  if (event.key === "Enter") {
    event.preventDefault();
    node.blur();
  } else if (event.key === "Escape") {
    node.textContent = node.dataset.original;
    node.blur();
  }
});

element.addEventListener("focusout", (event) => {
  const node = event.target;
  if (!node.matches("[contenteditable=true]")) return;
  if (node.classList.contains("ws-text")) saveText(node);
  else if (node.classList.contains("ws-name-of")) rename(node);
});

element.addEventListener("change", (event) => {
  if (event.target.matches("select.ws-who")) saveSpeaker(event.target);
});

// Media events do not bubble, but they pass the ancestors on the way down.
element.addEventListener("timeupdate", (event) => follow(event.target), true);
element.addEventListener("seeked", (event) => follow(event.target), true);

if (!window.__asrWorkspaceKeys) {
  // Once per page: space plays and pauses the transcript being read, Ctrl+Enter transcribes.
  window.__asrWorkspaceKeys = true;
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable=true]");
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const run = document.querySelector("#transcribe-button");
      if (run && run.offsetParent !== null) {
        event.preventDefault();
        run.click();
      }
      return;
    }
    if (event.key === "Enter" && event.target.closest?.("#history-search")) {
      event.preventDefault();
      document.querySelector("#history-refresh")?.click();
      return;
    }
    if (event.key !== " " || typing || event.target.closest?.("button, a")) return;
    const audios = [...document.querySelectorAll(".ws-board audio, .ws-board video")].filter((a) => a.offsetParent !== null);
    const audio = audios.find((a) => !a.paused) || audios[0];
    if (!audio) return;
    event.preventDefault();
    if (audio.paused) audio.play().catch(() => {});
    else audio.pause();
  });
}

watch("value", () => {
  // A new result: bring it into view (on a phone it is below the form).
  const first = element.querySelector(".ws-job[data-active=false]");
  if (first && element.dataset.shown !== first.dataset.job) {
    element.dataset.shown = first.dataset.job;
    first.scrollIntoView({ block: "start", behavior: "smooth" });
  }
});
