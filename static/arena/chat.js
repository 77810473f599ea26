// The chat page: a conversation with one chosen model, each answer rated up, down or flagged.
// Plain JavaScript against the JSON API of /chats (see the README); the answer streams over the
// same Server-Sent Events as a battle's, on one side ("a").
(function () {
  "use strict";
  const root = document.getElementById("chat");
  if (!root) return;
  const Markdown = window.ArenaMarkdown;
  const form = document.getElementById("prompt-form");
  const promptBox = document.getElementById("prompt");
  const sendButton = document.getElementById("send");
  const modelSelect = document.getElementById("chat-model");
  const box = root.querySelector("[data-conversation]");
  const notice = document.getElementById("notice");
  const errorBox = document.getElementById("error");
  const STORE_KEY = "arena.chat";
  const LABELS = [["up", "Good"], ["down", "Bad"], ["flag", "Flag"]];

  let chatId = null;
  let phase = "idle"; // idle -> sending -> streaming -> ready (-> sending ...) | failed
  let source = null;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const reply = await fetch(url, {
      method: method,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await reply.json(); } catch (e) { data = {}; }
    if (!reply.ok) throw new Error(data.error || "The server answered " + reply.status + ".");
    return data;
  }

  function setPhase(next) {
    phase = next;
    root.dataset.phase = next;
    sendButton.disabled = next === "sending" || next === "streaming";
    modelSelect.disabled = !(next === "idle");
  }

  function feedbackBar(index, current) {
    const bar = document.createElement("div");
    bar.className = "feedback";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Rate this answer");
    LABELS.forEach(([label, text]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.feedback = label;
      button.textContent = text;
      button.setAttribute("aria-pressed", String(current === label));
      button.addEventListener("click", () => rate(index, label, bar));
      bar.appendChild(button);
    });
    return bar;
  }

  async function rate(index, label, bar) {
    try {
      await api("POST", "/chats/" + encodeURIComponent(chatId) + "/turns/" + index + "/feedback", { label: label });
    } catch (error) {
      errorBox.textContent = error.message;
      return;
    }
    errorBox.textContent = "";
    bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.feedback === label)));
    notice.textContent = "Thanks: your rating is saved.";
  }

  function turnAdd(index, prompt, answer) {
    const placeholder = box.querySelector(".placeholder");
    if (placeholder) placeholder.remove();
    const user = document.createElement("div");
    user.className = "message user";
    user.textContent = prompt;
    const reply = document.createElement("div");
    reply.className = "message assistant markdown";
    reply.dataset.turn = String(index);
    box.append(user, reply);
    Markdown.set(reply, (answer && answer.text) || "", { now: true });
    if (answer && answer.status === "done") box.appendChild(feedbackBar(index, answer.feedback));
    if (answer && answer.status === "failed") reply.classList.add("failed");
    return reply;
  }

  function clear() {
    if (source) { source.close(); source = null; }
    box.textContent = "";
    const placeholder = document.createElement("p");
    placeholder.className = "placeholder";
    placeholder.textContent = "The conversation will appear here.";
    box.appendChild(placeholder);
  }

  function stream(index) {
    const reply = box.querySelector('[data-turn="' + index + '"]');
    reply.classList.add("waiting");
    Markdown.set(reply, "", { now: true }); // the stream replays the answer from its start
    const events = new EventSource("/chats/" + encodeURIComponent(chatId) + "/stream");
    source = events;
    const end = (ok) => {
      events.close();
      source = null;
      reply.classList.remove("waiting", "streaming");
      if (ok) {
        box.appendChild(feedbackBar(index, null));
        setPhase("ready");
        notice.textContent = "Rate the answer, or send the next message.";
      } else {
        reply.classList.add("failed");
        setPhase("failed");
        errorBox.textContent = "The model failed to answer; start a new chat.";
        notice.textContent = "";
      }
    };
    events.addEventListener("delta", (e) => {
      reply.classList.remove("waiting");
      reply.classList.add("streaming");
      Markdown.append(reply, JSON.parse(e.data).text);
    });
    events.addEventListener("snapshot", (e) => Markdown.set(reply, JSON.parse(e.data).text));
    events.addEventListener("done", () => end(true));
    events.addEventListener("failed", () => end(false));
  }

  async function send() {
    const prompt = promptBox.value.trim();
    if (phase === "sending" || phase === "streaming") return;
    if (!prompt) { errorBox.textContent = "Type a message first."; promptBox.focus(); return; }
    const fresh = !chatId || phase === "failed";
    const before = phase;
    setPhase("sending");
    errorBox.textContent = "";
    notice.textContent = "Sending…";
    let state;
    try {
      state = fresh
        ? await api("POST", "/chats", { prompt: prompt, model: modelSelect.value })
        : await api("POST", "/chats/" + encodeURIComponent(chatId) + "/turns", { prompt: prompt });
    } catch (error) {
      setPhase(before);
      notice.textContent = "";
      errorBox.textContent = error.message;
      return;
    }
    if (fresh) { clear(); chatId = state.id; sessionStorage.setItem(STORE_KEY, chatId); }
    promptBox.value = "";
    const last = state.turns[state.turns.length - 1];
    turnAdd(last.index, last.prompt, null);
    setPhase("streaming");
    notice.textContent = state.model.display_name + " is answering…";
    stream(last.index);
  }

  function newChat() {
    chatId = null;
    sessionStorage.removeItem(STORE_KEY);
    clear();
    errorBox.textContent = "";
    notice.textContent = "";
    setPhase("idle");
  }

  async function restore() {
    const stored = sessionStorage.getItem(STORE_KEY);
    if (!stored) return;
    let state;
    try { state = await api("GET", "/chats/" + encodeURIComponent(stored)); } catch (e) {
      sessionStorage.removeItem(STORE_KEY);
      return;
    }
    chatId = state.id;
    modelSelect.value = state.model.name;
    clear();
    state.turns.forEach((t) => turnAdd(t.index, t.prompt, t.answer));
    const last = state.turns[state.turns.length - 1];
    const status = last.answer ? last.answer.status : "queued";
    if (status === "done") setPhase("ready");
    else if (status === "failed") setPhase("failed");
    else { setPhase("streaming"); stream(last.index); }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  document.getElementById("new-chat").addEventListener("click", newChat);
  setPhase("idle");
  restore();
})();
