// ponder's web chat: streams /v1/chat/completions, shows the reasoning summary (and the raw thinking
// when asked) in a collapsed "Thought for N tokens" section, and sends thumbs up / down to /v1/feedback.
// No framework, no CDN: everything this page needs is served by ponder itself.
"use strict";

const $ = (id) => document.getElementById(id);
const turns = []; // {role, content} of the conversation so far
let model = null;

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("api-key").value || localStorage.getItem("ponder-api-key");
  if (key) h.authorization = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (response.status === 401) {
    $("key-label").hidden = false; // the server wants a key: ask for it
  }
  if (!response.ok) {
    const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
    throw new Error(error.error ? error.error.message : response.statusText);
  }
  return response;
}

async function loadModel() {
  try {
    const list = await (await api("/v1/models")).json();
    model = list.data[0].id;
    $("model").textContent = model;
  } catch (e) {
    $("model").textContent = "(" + e.message + ")";
  }
}

// Server-sent events: "data: {...}" blocks separated by a blank line; "data: [DONE]" ends the stream.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function addTurn(role, text) {
  const turn = document.createElement("article");
  turn.className = "turn " + role;
  turn.dataset.testid = role + "-turn";
  turn.textContent = text;
  $("conversation").appendChild(turn);
  return turn;
}

async function send(question) {
  if (!model) await loadModel();
  turns.push({ role: "user", content: question });
  addTurn("user", question);
  const turn = $("assistant-turn").content.firstElementChild.cloneNode(true);
  $("conversation").appendChild(turn);
  const part = (name) => turn.querySelector(name);
  const showRaw = $("show-thinking").checked;
  part(".raw").hidden = !showRaw;
  const request = {
    model, messages: turns, stream: true, stream_options: { include_usage: true },
    ponder: { show_thinking: showRaw },
  };
  if ($("effort").value) request.reasoning_effort = $("effort").value;
  let id = null;
  let answer = "";
  try {
    const response = await api("/v1/chat/completions", request);
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      id = chunk.id;
      if (chunk.usage) {
        const n = chunk.usage.completion_tokens_details.reasoning_tokens;
        part(".thinking summary").textContent = `Thought for ${n} token${n === 1 ? "" : "s"}`;
      }
      for (const choice of chunk.choices) {
        const delta = choice.delta;
        if (delta.reasoning_summary) part(".summary").textContent += delta.reasoning_summary;
        if (delta.reasoning_content) part(".raw").textContent += delta.reasoning_content;
        if (delta.content) {
          answer += delta.content;
          part(".answer").textContent = answer;
        }
      }
      $("conversation").scrollTop = $("conversation").scrollHeight;
    }
    turns.push({ role: "assistant", content: answer });
    if (id) enableFeedback(turn, id);
  } catch (e) {
    part(".answer").classList.add("error");
    part(".answer").textContent = "error: " + e.message;
    turns.pop(); // the question was not answered: do not send it twice
  }
}

function enableFeedback(turn, id) {
  const box = turn.querySelector(".feedback");
  box.hidden = false;
  for (const [selector, rating] of [[".up", "up"], [".down", "down"]]) {
    const button = box.querySelector(selector);
    button.addEventListener("click", async () => {
      const note = box.querySelector(".note");
      try {
        await api("/v1/feedback", { type: "thumbs", completion: { id, choice: 0 }, rating, source: "web" });
        box.querySelectorAll("button").forEach((b) => b.classList.remove("chosen"));
        button.classList.add("chosen");
        note.textContent = "thanks, saved";
      } catch (e) {
        note.textContent = "not saved: " + e.message;
      }
    });
  }
}

$("api-key").addEventListener("change", () => localStorage.setItem("ponder-api-key", $("api-key").value));
$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("prompt").value.trim();
  if (!question) return;
  $("prompt").value = "";
  $("send").disabled = true;
  try {
    await send(question);
  } finally {
    $("send").disabled = false;
    $("prompt").focus();
  }
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
loadModel();
