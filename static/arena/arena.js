// The arena page: start a battle, stream both answers, follow up, regenerate, vote, reveal.
// Plain JavaScript against the same JSON API that scripts use (see the README).
//
// Phases (on #arena's data-phase, which the CSS reads too):
//   idle -> sending -> streaming -> ready -> (follow-up: sending ...) -> voting -> voted
//   streaming -> failed (a model failed: only a new round is offered)
(function () {
  "use strict";
  const root = document.getElementById("arena");
  if (!root) return;
  const Markdown = window.ArenaMarkdown;
  const form = document.getElementById("prompt-form");
  const promptBox = document.getElementById("prompt");
  const imageInput = document.getElementById("image");
  const imageClear = document.getElementById("image-clear");
  const sendButton = document.getElementById("send");
  const regenerateButton = document.getElementById("regenerate");
  const notice = document.getElementById("notice");
  const errorBox = document.getElementById("error");
  const voteHint = root.querySelector("[data-vote-hint]");
  const voteButtons = Array.from(root.querySelectorAll("[data-vote]"));
  const outcome = root.querySelector("[data-outcome]");
  const outcomeText = root.querySelector("[data-outcome-text]");
  const outcomeNewRound = outcome.querySelector("[data-new-round]");
  const panes = { a: document.getElementById("pane-a"), b: document.getElementById("pane-b") };
  const SIDES = ["a", "b"];
  const LABEL = { a: "Model A", b: "Model B" };
  const SHORTCUTS = { "1": "a", "2": "b", "3": "tie", "4": "both_bad" };
  // "named": side by side with models the visitor chose (/side-by-side), names shown throughout.
  const named = root.dataset.mode === "named";
  const STORE_KEY = named ? "arena.named" : "arena.battle";
  const shareButton = root.querySelector("[data-share]");
  const shareLink = root.querySelector("[data-share-link]");
  const PLACEHOLDER = {
    idle: "Ask both models anything",
    ready: "Send a follow-up to both models, or vote",
    voted: "Type a prompt to start a new round",
    failed: "Type a prompt to start a new round",
  };

  let battleId = null;
  let phase = "idle";
  let source = null;
  let lastEventId = null;
  let reconnect = { timer: 0, attempts: 0, lost: false };
  let sides = {}; // per side: state, and the client's own timing of the current answer
  let sentAt = 0;
  let cooldown = 0;
  let cooldownTimer = 0;
  // A touch screen has no keyboard shortcuts to offer, and focusing the prompt there would open
  // the on-screen keyboard and scroll the page past the header and the introduction.
  const touch = window.matchMedia("(hover: none), (pointer: coarse)").matches;
  const smallScreen = window.matchMedia("(max-width: 760px)").matches;

  // --- Talking to the server ------------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    let reply;
    try {
      reply = await fetch(url, {
        method: method,
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
        body: method === "GET" ? undefined : JSON.stringify(body || {}),
        credentials: "same-origin",
      });
    } catch (e) {
      const error = new Error("The server cannot be reached. Check your connection and try again.");
      error.network = true;
      throw error;
    }
    let data = null;
    try { data = await reply.json(); } catch (e) { data = null; }
    if (!reply.ok) {
      const message = (data && data.error) ||
        (reply.status >= 500 ? "The server had a problem (" + reply.status + "). Try again in a moment."
          : "The request was refused (" + reply.status + ").");
      const error = new Error(message);
      error.status = reply.status;
      error.retryAfter = parseInt(reply.headers.get("Retry-After") || "0", 10) || 0;
      throw error;
    }
    return data || {};
  }

  // --- What the visitor sees -------------------------------------------------------------------

  function say(message) {
    notice.textContent = message || "";
  }

  function warn(message) {
    errorBox.textContent = message || "";
  }

  function setPhase(next) {
    phase = next;
    root.dataset.phase = next;
    const busy = next === "sending" || next === "streaming";
    voteButtons.forEach((b) => { b.disabled = next !== "ready"; });
    voteHint.textContent = next === "ready" ? (touch ? "Tap the better answer's button." : "Click, or press 1–4.")
      : "Vote when both answers are complete.";
    regenerateButton.disabled = next !== "ready";
    sendButton.disabled = busy || cooldown > 0;
    outcome.hidden = !(next === "voted" || next === "failed");
    if (PLACEHOLDER[next]) promptBox.placeholder = PLACEHOLDER[next];
    SIDES.forEach((side) => panes[side].setAttribute("aria-busy", String(busy)));
    // An image goes with a battle's first prompt only.
    if (imageInput) imageInput.disabled = !(next === "idle" || next === "voted" || next === "failed");
  }

  function setSideState(side, state, label) {
    sides[side].state = state;
    const tag = panes[side].querySelector("[data-state]");
    tag.textContent = label;
    tag.className = "state " + state;
  }

  function conversation(side) {
    return panes[side].querySelector("[data-conversation]");
  }

  function currentAnswer(side) {
    const all = conversation(side).querySelectorAll(".message.assistant");
    return all[all.length - 1];
  }

  function panesClear() {
    SIDES.forEach((side) => {
      const box = conversation(side);
      box.textContent = "";
      const placeholder = document.createElement("p");
      placeholder.className = "placeholder";
      placeholder.textContent = LABEL[side] + "'s answer will appear here.";
      box.appendChild(placeholder);
      box.style.maxHeight = "";
      const reveal = panes[side].querySelector("[data-reveal]");
      reveal.hidden = true;
      reveal.textContent = "";
      panes[side].classList.remove("winner", "revealed");
      sides[side] = { state: "" };
      setSideState(side, "", "");
    });
  }

  function turnAdd(prompt, answers, imageUrl) {
    SIDES.forEach((side) => {
      const box = conversation(side);
      const placeholder = box.querySelector(".placeholder");
      if (placeholder) placeholder.remove();
      const user = document.createElement("div");
      user.className = "message user";
      user.textContent = prompt; // the visitor's own words, shown as typed
      if (imageUrl) {
        // The battle's own URL, served to this session only: it names no model.
        const img = document.createElement("img");
        img.className = "prompt-image";
        img.src = imageUrl;
        img.alt = "Your image";
        user.prepend(img);
      }
      const answer = document.createElement("div");
      answer.className = "message assistant markdown";
      box.append(user, answer);
      if (answers) {
        Markdown.set(answer, answers[side] || "", { now: true });
      } else {
        answer.classList.add("waiting");
        Markdown.set(answer, "", { now: true });
      }
    });
  }

  function answersReset() {
    SIDES.forEach((side) => {
      const answer = currentAnswer(side);
      answer.classList.remove("failed", "streaming");
      answer.classList.add("waiting");
      Markdown.set(answer, "", { now: true });
      const note = panes[side].querySelector(".pane-error");
      if (note) note.remove();
    });
  }

  function generatingShow() {
    SIDES.forEach((side) => {
      sides[side] = { state: "", first: null, end: null };
      setSideState(side, "generating", "generating…");
    });
  }

  // --- The stream ------------------------------------------------------------------------------

  function streamClose() {
    if (source) { source.close(); source = null; }
    clearTimeout(reconnect.timer);
    reconnect.timer = 0;
  }

  function streamOpen() {
    streamClose();
    let url = "/battles/" + encodeURIComponent(battleId) + "/stream";
    if (lastEventId) url += "?last_event_id=" + encodeURIComponent(lastEventId);
    const stream = new EventSource(url);
    source = stream;
    const on = (name, handler) => stream.addEventListener(name, (event) => {
      if (stream !== source) return; // a stream that was replaced
      if (event.lastEventId) lastEventId = event.lastEventId;
      connectionBack();
      handler(JSON.parse(event.data || "{}"));
    });
    on("delta", (d) => {
      const answer = currentAnswer(d.side);
      if (sides[d.side].first == null) {
        sides[d.side].first = performance.now() - sentAt;
        answer.classList.remove("waiting");
        answer.classList.add("streaming");
      }
      Markdown.append(answer, d.text);
    });
    on("snapshot", (d) => {
      const answer = currentAnswer(d.side);
      answer.classList.remove("waiting");
      Markdown.set(answer, d.text);
    });
    on("done", (d) => {
      sides[d.side].end = performance.now() - sentAt;
      const answer = currentAnswer(d.side);
      answer.classList.remove("waiting", "streaming");
      Markdown.set(answer, Markdown.text(answer), { now: true });
      if (!Markdown.text(answer).trim()) answer.classList.add("empty");
      setSideState(d.side, "done", d.finish_reason === "length" ? "done · hit the length limit" : "done");
    });
    on("failed", (d) => {
      const answer = currentAnswer(d.side);
      answer.classList.remove("waiting", "streaming");
      answer.classList.add("failed");
      setSideState(d.side, "failed", "failed");
      const note = document.createElement("p");
      note.className = "pane-error";
      note.textContent = d.error || LABEL[d.side] + " failed.";
      conversation(d.side).appendChild(note);
    });
    on("interrupted", () => connectionLost());
    on("end", () => {
      streamClose();
      lastEventId = null;
      reconnect.attempts = 0;
      const failed = SIDES.filter((side) => sides[side].state === "failed");
      if (failed.length) {
        setPhase("failed");
        const who = failed.map((side) => LABEL[side]).join(" and ");
        outcomeText.textContent = who + (failed.length > 1 ? " failed" : " failed") +
          " to answer, so this battle cannot be voted on. Start a new round.";
        warn("");
        say("");
        outcomeNewRound.focus();
        return;
      }
      setPhase("ready");
      say("Both answers are complete: vote, or send a follow-up.");
      const typing = document.activeElement === promptBox && promptBox.value.trim();
      if (!typing) voteButtons[0].focus({ preventScroll: true });
    });
    stream.onopen = () => { if (stream === source) connectionBack(); };
    stream.onerror = () => {
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) {
        // The browser gave up (an error reply, or a network error it does not retry): we retry.
        reconnectSchedule();
      } else {
        connectionLost(); // EventSource reconnects by itself, sending Last-Event-ID.
      }
    };
  }

  function connectionLost() {
    if (!reconnect.lost) {
      reconnect.lost = true;
      root.classList.add("reconnecting");
      say("Connection lost. Reconnecting…");
      SIDES.forEach((side) => {
        if (sides[side].state === "generating") setSideState(side, "generating", "reconnecting…");
      });
    }
  }

  function connectionBack() {
    if (!reconnect.lost) return;
    reconnect.lost = false;
    reconnect.attempts = 0;
    root.classList.remove("reconnecting");
    say("Reconnected.");
    SIDES.forEach((side) => {
      if (sides[side].state === "generating") setSideState(side, "generating", "generating…");
    });
  }

  function reconnectSchedule() {
    if (source) { source.close(); source = null; }
    connectionLost();
    reconnect.attempts += 1;
    const delay = Math.min(1000 * 2 ** (reconnect.attempts - 1), 10000);
    clearTimeout(reconnect.timer);
    reconnect.timer = setTimeout(reconnectTry, navigator.onLine === false ? 10000 : delay);
  }

  async function reconnectTry() {
    reconnect.timer = 0;
    try {
      await api("GET", "/battles/" + encodeURIComponent(battleId));
    } catch (error) {
      if (error.network || (error.status && error.status >= 500)) { reconnectSchedule(); return; }
      // The battle is gone or not ours any more: nothing to resume.
      root.classList.remove("reconnecting");
      reconnect.lost = false;
      say("");
      warn(error.message);
      setPhase("failed");
      outcomeText.textContent = "This battle cannot continue. Start a new round.";
      return;
    }
    streamOpen();
  }

  window.addEventListener("online", () => {
    if (reconnect.timer && battleId) { clearTimeout(reconnect.timer); reconnectTry(); }
  });

  // --- Actions ---------------------------------------------------------------------------------

  function refusalShow(error) {
    if (error.status === 429 && error.retryAfter) {
      cooldownStart(error.message, error.retryAfter);
    } else {
      warn(error.message);
    }
  }

  // One countdown, shown in the notice and on the Send button alike: the server's "Try again in
  // N s." is replaced by the live number, so the two never disagree. The alert is read out once;
  // the seconds that follow change quietly (aria-live off), not once a second.
  function cooldownStart(message, seconds) {
    const reason = message.replace(/\s*Try again in \d+ s\.?\s*$/, "");
    const end = performance.now() + seconds * 1000;
    const left = document.createElement("span");
    left.setAttribute("aria-live", "off");
    clearTimeout(cooldownTimer);
    const tick = () => {
      cooldown = Math.max(0, Math.ceil((end - performance.now()) / 1000));
      if (cooldown <= 0) {
        cooldownTimer = 0;
        sendButton.textContent = "Send";
        sendButton.disabled = phase === "sending" || phase === "streaming";
        if (left.isConnected) { warn(""); say("You can send again."); }
        return;
      }
      left.textContent = "Try again in " + cooldown + " s.";
      sendButton.textContent = "Send (" + cooldown + " s)";
      sendButton.disabled = true;
      cooldownTimer = setTimeout(tick, ((end - performance.now()) % 1000) + 5);
    };
    tick();
    errorBox.textContent = reason + " ";
    errorBox.appendChild(left);
  }

  async function send(text) {
    const prompt = (text === undefined ? promptBox.value : text).trim();
    if (phase === "sending" || phase === "streaming" || phase === "voting") {
      say("Wait until both answers are complete.");
      return;
    }
    if (!prompt) { warn("Type a prompt first."); promptBox.focus(); return; }
    if (cooldown > 0) return;
    const fresh = !battleId || phase === "voted" || phase === "failed" || phase === "idle";
    const before = phase;
    setPhase("sending");
    warn("");
    say(fresh ? "Starting a new battle…" : "Sending your follow-up…");
    sentAt = performance.now();
    let imageUrl = null;
    try {
      if (fresh) {
        let state;
        if (named) {
          state = await api("POST", "/side-by-side/battles", {
            prompt: prompt,
            model_a: document.getElementById("model-a").value,
            model_b: document.getElementById("model-b").value,
          });
        } else {
          const body = { prompt: prompt };
          const file = imageInput && imageInput.files && imageInput.files[0];
          if (file) body.image = await fileDataUrl(file);
          state = await api("POST", "/battles", body);
          imageUrl = state.turns && state.turns[0] && state.turns[0].image_url;
        }
        battleId = state.id;
        namesShow(state);
        sessionStorage.setItem(STORE_KEY, battleId);
      } else {
        await api("POST", "/battles/" + encodeURIComponent(battleId) + "/turns", { prompt: prompt });
      }
    } catch (error) {
      setPhase(before);
      say("");
      refusalShow(error);
      return;
    }
    promptBox.value = "";
    if (fresh) { panesClear(); imageReset(); }
    turnAdd(prompt, undefined, imageUrl);
    generatingShow();
    lastEventId = null;
    setPhase("streaming");
    say("Both models are answering…");
    streamOpen();
  }

  function fileDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error("The image could not be read."));
      reader.readAsDataURL(file);
    });
  }

  function imageReset() {
    if (imageInput) imageInput.value = "";
    if (imageClear) imageClear.hidden = true;
  }

  if (imageInput) {
    imageInput.addEventListener("change", () => { imageClear.hidden = !imageInput.files.length; });
    imageClear.addEventListener("click", imageReset);
  }

  async function regenerate() {
    if (phase !== "ready") return;
    setPhase("sending");
    warn("");
    sentAt = performance.now();
    try {
      await api("POST", "/battles/" + encodeURIComponent(battleId) + "/regenerate");
    } catch (error) {
      setPhase("ready");
      refusalShow(error);
      return;
    }
    answersReset();
    generatingShow();
    lastEventId = null;
    setPhase("streaming");
    say("Both answers are being regenerated…");
    streamOpen();
  }

  // A named battle's models are known from the start: their names head the panes.
  function namesShow(state) {
    SIDES.forEach((side) => {
      const model = state["model_" + side];
      const title = panes[side].querySelector(".pane-head h2");
      title.textContent = model ? (model.display_name || model.name) : LABEL[side];
    });
  }

  async function share() {
    shareButton.disabled = true;
    try {
      const reply = await api("POST", "/battles/" + encodeURIComponent(battleId) + "/share");
      shareLink.textContent = "";
      const link = document.createElement("a");
      link.href = reply.share_url;
      link.textContent = reply.share_url;
      link.setAttribute("data-share-url", "");
      shareLink.append("Read-only link: ", link);
      shareLink.hidden = false;
    } catch (error) {
      refusalShow(error);
      shareButton.disabled = false;
    }
  }

  function seconds(ms) {
    return ms == null ? null : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function revealShow(result) {
    const winner = { model_a: "a", model_b: "b" }[result.outcome];
    SIDES.forEach((side) => {
      const model = result["model_" + side] || {};
      const reveal = panes[side].querySelector("[data-reveal]");
      reveal.textContent = "";
      const name = document.createElement("strong");
      name.className = "model-name";
      name.textContent = model.display_name || model.name || "Unknown model";
      reveal.appendChild(name);
      const facts = [model.organization, model.license && model.license + " license"].filter(Boolean);
      if (facts.length) {
        const meta = document.createElement("span");
        meta.className = "model-meta";
        meta.textContent = facts.join(" · ");
        reveal.appendChild(meta);
      }
      // Timing is shown only now: before the vote, speed would hint at who is who.
      const server = result.timing && result.timing[side];
      const first = server && server.ttft_ms != null ? server.ttft_ms : sides[side] && sides[side].first;
      const total = server && server.latency_ms != null ? server.latency_ms : sides[side] && sides[side].end;
      if (first != null) {
        const timing = document.createElement("span");
        timing.className = "model-timing";
        timing.textContent = "first token after " + seconds(first) +
          (total != null ? " · full answer in " + seconds(total) : "");
        reveal.appendChild(timing);
      }
      if (winner === side) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "your pick";
        reveal.appendChild(badge);
      }
      panes[side].classList.toggle("winner", winner === side);
      panes[side].classList.add("revealed");
      reveal.hidden = false;
    });
  }

  // After the reveal, the page must not jump and the outcome with "New round" must be in view:
  // a conversation that fills its pane gives up the room the names take, so the pane keeps its
  // height and the outcome takes the vote bar's place; each pane then shows the start of the turn
  // that was judged (the prompt first, a whole line) under the model's name.
  function revealSettle() {
    SIDES.forEach((side) => {
      const box = conversation(side);
      const reveal = panes[side].querySelector("[data-reveal]");
      if (box.scrollHeight > box.clientHeight + 1) {
        box.style.maxHeight = Math.max(box.clientHeight - reveal.offsetHeight, 160) + "px";
      }
      const prompts = box.querySelectorAll(".message.user");
      const last = prompts[prompts.length - 1];
      if (last) {
        const gap = parseFloat(getComputedStyle(box).paddingTop) || 0;
        box.scrollTop += last.getBoundingClientRect().top - box.getBoundingClientRect().top - gap;
      }
    });
    const calm = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    outcome.scrollIntoView({ block: "nearest", behavior: calm ? "auto" : "smooth" });
  }

  function pickSay(result) {
    const name = (side) => {
      const model = result["model_" + side] || {};
      return model.display_name || model.name || LABEL[side];
    };
    const a = name("a"), b = name("b");
    return {
      model_a: "You picked " + a + " over " + b + ".",
      model_b: "You picked " + b + " over " + a + ".",
      tie: "You called it a tie between " + a + " and " + b + ".",
      both_bad: "You found both " + a + " and " + b + " bad.",
    }[result.outcome] || "";
  }

  async function vote(choice) {
    if (phase !== "ready") return;
    setPhase("voting");
    let result;
    try {
      result = await api("POST", "/battles/" + encodeURIComponent(battleId) + "/vote", { choice: choice });
    } catch (error) {
      refusalShow(error);
      setPhase(error.status === 409 ? "failed" : "ready");
      if (error.status === 409) outcomeText.textContent = error.message;
      return;
    }
    setPhase("voted");
    revealShow(result);
    warn("");
    say("");
    outcomeText.textContent = pickSay(result) + " " + (result.counted
      ? "Thanks! Your vote counts toward the leaderboard."
      : "Your vote was recorded but does not count: " + (result.reason || "it was excluded") + ".");
    outcome.classList.toggle("not-counted", !result.counted);
    outcomeNewRound.focus({ preventScroll: true });
    revealSettle();
  }

  function newRound() {
    streamClose();
    battleId = null;
    lastEventId = null;
    if (shareButton) { shareButton.disabled = false; shareLink.hidden = true; }
    reconnect = { timer: 0, attempts: 0, lost: false };
    root.classList.remove("reconnecting");
    sessionStorage.removeItem(STORE_KEY);
    panesClear();
    setPhase("idle");
    warn("");
    say("");
    if (touch || smallScreen) {
      root.scrollIntoView({ block: "start" }); // the examples and the intro, without a keyboard
    } else {
      promptBox.focus();
    }
  }

  // --- A reload in the middle of a battle picks it up again -----------------------------------

  async function restore() {
    const stored = sessionStorage.getItem(STORE_KEY);
    if (!stored) return;
    let state;
    try {
      state = await api("GET", "/battles/" + encodeURIComponent(stored));
    } catch (error) {
      sessionStorage.removeItem(STORE_KEY);
      return;
    }
    if (!state.turns || !state.turns.length) return;
    battleId = state.id;
    panesClear();
    namesShow(state);
    const last = state.turns[state.turns.length - 1];
    state.turns.forEach((turn) => {
      const answers = { a: (turn.a && turn.a.text) || "", b: (turn.b && turn.b.text) || "" };
      turnAdd(turn.prompt, answers, turn.image_url);
    });
    const statuses = SIDES.map((side) => (last[side] && last[side].status) || "queued");
    if (state.voted && state.vote) {
      SIDES.forEach((side) => setSideState(side, "done", "done"));
      setPhase("voted");
      revealShow(state.vote);
      outcomeText.textContent = "You voted in this battle. Start a new round when you are ready.";
      outcomeNewRound.focus({ preventScroll: true });
      revealSettle();
      return;
    }
    if (statuses.every((s) => s === "done" || s === "failed")) {
      SIDES.forEach((side, i) => {
        setSideState(side, statuses[i], statuses[i]);
        if (statuses[i] === "failed") currentAnswer(side).classList.add("failed");
      });
      if (statuses.includes("failed")) {
        setPhase("failed");
        outcomeText.textContent = "A model failed to answer, so this battle cannot be voted on. Start a new round.";
        outcomeNewRound.focus({ preventScroll: true });
      } else {
        setPhase("ready");
        say("Both answers are complete: vote, or send a follow-up.");
        voteButtons[0].focus({ preventScroll: true });
      }
      return;
    }
    // Still answering: replay the current answers from the start of their streams.
    answersReset();
    generatingShow();
    sentAt = performance.now();
    setPhase("streaming");
    streamOpen();
  }

  // --- Wiring ----------------------------------------------------------------------------------

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      send();
    }
  });
  regenerateButton.addEventListener("click", regenerate);
  if (shareButton) shareButton.addEventListener("click", share);
  root.querySelectorAll("[data-new-round]").forEach((b) => b.addEventListener("click", newRound));
  // An example goes into the prompt box to be edited or sent as it is: it is not sent at once.
  root.querySelectorAll("[data-example]").forEach((b) => b.addEventListener("click", () => {
    promptBox.value = b.textContent.trim();
    promptBox.focus();
    promptBox.setSelectionRange(promptBox.value.length, promptBox.value.length);
  }));
  voteButtons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    const target = e.target;
    if (target.closest && target.closest("textarea, input, select, [contenteditable]")) return;
    const choice = SHORTCUTS[e.key];
    if (choice && phase === "ready") { e.preventDefault(); vote(choice); return; }
    if ((e.key === "n" || e.key === "N") && (phase === "voted" || phase === "failed")) {
      e.preventDefault();
      newRound();
    }
  });

  SIDES.forEach((side) => { sides[side] = { state: "" }; });
  setPhase("idle");
  if (!touch && !smallScreen) promptBox.focus({ preventScroll: true });
  restore();
})();
