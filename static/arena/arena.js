// The arena page: start a battle, stream both answers, follow up, regenerate, vote, reveal.
// Plain JavaScript against the same JSON API that scripts use.
(function () {
  "use strict";
  const root = document.getElementById("arena");
  const form = document.getElementById("prompt-form");
  const promptBox = document.getElementById("prompt");
  const sendButton = document.getElementById("send");
  const regenerateButton = document.getElementById("regenerate");
  const newRoundButton = document.getElementById("new-round");
  const notice = document.getElementById("notice");
  const voteButtons = Array.from(root.querySelectorAll("[data-vote]"));
  const panes = { a: document.getElementById("pane-a"), b: document.getElementById("pane-b") };
  const SHORTCUTS = { "1": "a", "2": "b", "3": "tie", "4": "both_bad" };

  let battleId = null;
  let voted = false;
  let source = null;
  let sideState = {};

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function post(url, body) {
    const reply = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await reply.json(); } catch (e) { data = { error: "The server sent an unreadable reply." }; }
    if (!reply.ok) {
      const error = new Error(data.error || ("Request failed (" + reply.status + ")"));
      error.status = reply.status;
      throw error;
    }
    return data;
  }

  function say(message, kind) {
    notice.textContent = message;
    notice.className = "notice" + (kind ? " " + kind : "");
    notice.hidden = !message;
  }

  function setVoting(enabled) {
    voteButtons.forEach((b) => { b.disabled = !enabled; });
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    promptBox.disabled = busy;
    regenerateButton.disabled = busy || !battleId || voted;
  }

  function bubble(side, role, text) {
    const div = document.createElement("div");
    div.className = "message " + role;
    div.textContent = text;
    panes[side].querySelector("[data-conversation]").appendChild(div);
    return div;
  }

  function currentAnswer(side) {
    const all = panes[side].querySelectorAll(".message.assistant");
    return all[all.length - 1];
  }

  function setState(side, state, label) {
    sideState[side] = state;
    const tag = panes[side].querySelector("[data-state]");
    tag.textContent = label;
    tag.className = "state " + state;
  }

  function openStream() {
    if (source) source.close();
    setState("a", "generating", "generating…");
    setState("b", "generating", "generating…");
    setVoting(false);
    setBusy(true);
    source = new EventSource("/battles/" + battleId + "/stream");
    source.addEventListener("delta", (e) => {
      const d = JSON.parse(e.data);
      currentAnswer(d.side).textContent += d.text;
    });
    source.addEventListener("snapshot", (e) => {
      const d = JSON.parse(e.data);
      currentAnswer(d.side).textContent = d.text;
    });
    source.addEventListener("done", (e) => {
      const d = JSON.parse(e.data);
      setState(d.side, "done", d.finish_reason === "length" ? "done (length limit)" : "done");
    });
    source.addEventListener("failed", (e) => {
      const d = JSON.parse(e.data);
      setState(d.side, "failed", "failed");
      currentAnswer(d.side).classList.add("failed");
      say(d.error, "error");
    });
    source.addEventListener("end", () => {
      source.close();
      source = null;
      const failed = sideState.a === "failed" || sideState.b === "failed";
      setVoting(!failed);
      setBusy(false);
      regenerateButton.disabled = voted;
      if (failed) { promptBox.disabled = true; sendButton.disabled = true; }
      else { say("Both answers are in: vote, or send a follow-up.", ""); promptBox.focus(); }
    });
    source.addEventListener("interrupted", (e) => { say(JSON.parse(e.data).error, ""); });
    source.onerror = () => {
      // EventSource reconnects by itself and resumes from the last event id.
      if (source && source.readyState === EventSource.CONNECTING) say("Connection lost, reconnecting…", "");
    };
  }

  async function send() {
    const prompt = promptBox.value.trim();
    if (!prompt) { say("Type a prompt first.", "error"); return; }
    setBusy(true);
    say("", "");
    try {
      if (!battleId || voted) {
        resetPanes();
        const state = await post("/battles", { prompt: prompt });
        battleId = state.id;
      } else {
        await post("/battles/" + battleId + "/turns", { prompt: prompt });
      }
    } catch (error) {
      say(error.message, "error");
      setBusy(false);
      return;
    }
    promptBox.value = "";
    ["a", "b"].forEach((side) => { bubble(side, "user", prompt); bubble(side, "assistant", ""); });
    openStream();
  }

  async function regenerate() {
    try {
      await post("/battles/" + battleId + "/regenerate");
    } catch (error) { say(error.message, "error"); return; }
    ["a", "b"].forEach((side) => {
      const answer = currentAnswer(side);
      answer.textContent = "";
      answer.classList.remove("failed");
    });
    say("", "");
    openStream();
  }

  async function vote(choice) {
    setVoting(false);
    let result;
    try {
      result = await post("/battles/" + battleId + "/vote", { choice: choice });
    } catch (error) {
      say(error.message, "error");
      setVoting(error.status !== 409);
      return;
    }
    voted = true;
    regenerateButton.disabled = true;
    ["a", "b"].forEach((side) => {
      const model = result["model_" + side];
      const reveal = panes[side].querySelector("[data-reveal]");
      reveal.textContent = model.display_name + (model.organization ? " · " + model.organization : "");
      reveal.hidden = false;
    });
    say(result.counted ? "Thanks! Your vote counts." :
        "This vote will not count: " + (result.reason || "it was excluded") + ".", result.counted ? "ok" : "error");
    promptBox.disabled = false;
    sendButton.disabled = false;
    promptBox.placeholder = "Type a prompt to start a new round";
  }

  function resetPanes() {
    ["a", "b"].forEach((side) => {
      panes[side].querySelector("[data-conversation]").textContent = "";
      const reveal = panes[side].querySelector("[data-reveal]");
      reveal.hidden = true;
      reveal.textContent = "";
      setState(side, "", "");
    });
    voted = false;
  }

  function newRound() {
    if (source) { source.close(); source = null; }
    battleId = null;
    resetPanes();
    setVoting(false);
    setBusy(false);
    say("", "");
    promptBox.placeholder = "Type a prompt and press Enter (Shift+Enter for a new line)";
    promptBox.focus();
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  regenerateButton.addEventListener("click", regenerate);
  newRoundButton.addEventListener("click", newRound);
  voteButtons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
  document.addEventListener("keydown", (e) => {
    if (e.target === promptBox || e.ctrlKey || e.metaKey || e.altKey) return;
    const choice = SHORTCUTS[e.key];
    if (choice && !voteButtons[0].disabled) { e.preventDefault(); vote(choice); }
  });
})();
