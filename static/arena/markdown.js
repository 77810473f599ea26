// Markdown for the answers: markdown-it with raw HTML off (model output is untrusted: any HTML
// in it is shown as text), images off (no request leaves for a URL a model wrote), links opened
// in a new tab without a referrer. Code blocks are highlighted by highlight.js, whose core and
// grammars are loaded on first use, and get a copy button.
(function () {
  "use strict";
  const vendor = document.documentElement.dataset.vendor || "/static/vendor/";
  const GRAMMARS = {
    python: "python", py: "python",
    javascript: "javascript", js: "javascript", jsx: "javascript", node: "javascript",
    typescript: "typescript", ts: "typescript", tsx: "typescript",
    bash: "bash", sh: "bash", shell: "bash", zsh: "bash", console: "bash",
    json: "json", c: "c", h: "c", cpp: "cpp", "c++": "cpp", cc: "cpp", hpp: "cpp",
    java: "java", go: "go", golang: "go", rust: "rust", rs: "rust", sql: "sql",
    html: "xml", xml: "xml", svg: "xml", yaml: "yaml", yml: "yaml", css: "css",
  };

  let hljs = null;
  let corePromise = null;
  const grammarPromises = {};
  const sources = new Map(); // element -> its markdown source, for re-renders
  const dirty = new Set();
  let frame = 0;

  function grammarLoad(name) {
    if (!corePromise) {
      corePromise = import(vendor + "highlight.js/core.min.js").then((m) => { hljs = m.default; });
    }
    if (!grammarPromises[name]) {
      grammarPromises[name] = corePromise
        .then(() => import(vendor + "highlight.js/languages/" + name + ".min.js"))
        .then((m) => {
          hljs.registerLanguage(name, m.default);
          // Blocks rendered before the grammar arrived are rendered again, now in colour.
          sources.forEach((_, el) => { if (el.querySelector("code.language-" + CSS.escape(name))) dirty.add(el); });
          schedule();
        })
        .catch(() => { /* Offline or missing: the code stays plain, which is fine. */ });
    }
  }

  function highlight(code, lang) {
    const name = GRAMMARS[(lang || "").toLowerCase()];
    if (!name) return "";
    if (hljs && hljs.getLanguage(name)) {
      try {
        return hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
      } catch (e) { return ""; }
    }
    grammarLoad(name);
    return ""; // markdown-it escapes the code itself
  }

  const md = window.markdownit({ html: false, linkify: true, typographer: false, highlight: highlight });
  md.disable("image");
  md.validateLink = (url) => /^(https?:|mailto:|#)/i.test(url.trim());
  const renderToken = (tokens, idx, options, env, self) => self.renderToken(tokens, idx, options);
  md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet("target", "_blank");
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow");
    return renderToken(tokens, idx, options, env, self);
  };
  const fence = md.renderer.rules.fence;
  md.renderer.rules.fence = (tokens, idx, options, env, self) => {
    const lang = tokens[idx].info.trim().split(/\s+/)[0];
    const label = lang ? '<span class="lang">' + md.utils.escapeHtml(lang) + "</span>" : "";
    return '<div class="code">' + label +
      '<button type="button" class="copy" aria-label="Copy code">Copy</button>' +
      fence(tokens, idx, options, env, self) + "</div>";
  };

  function renderNow(el) {
    const text = sources.get(el);
    if (text === undefined) return;
    // Follow the answer as it grows, unless the visitor has scrolled up to read.
    const box = el.closest("[data-conversation]");
    const stick = box && box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    // Safe by construction: html is off, so every tag a model writes arrives escaped.
    el.innerHTML = md.render(text);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    dirty.forEach((el) => {
      if (el.isConnected) renderNow(el); else sources.delete(el);
    });
    dirty.clear();
  }

  async function copy(button) {
    const code = button.parentElement.querySelector("code");
    const text = code ? code.textContent : "";
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (e) {
      // Fallback for pages not in a secure context: select the text and copy it.
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try { ok = document.execCommand("copy"); } catch (e2) { ok = false; }
      area.remove();
      button.focus();
    }
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest("button.copy");
    if (button) copy(button);
  });

  window.ArenaMarkdown = {
    // Set an element's markdown; it is rendered on the next animation frame (or now).
    set(el, text, { now = false } = {}) {
      sources.set(el, text);
      if (now) { dirty.delete(el); renderNow(el); } else { dirty.add(el); schedule(); }
    },
    append(el, text) { this.set(el, (sources.get(el) || "") + text); },
    text(el) { return sources.get(el) || ""; },
    render: (text) => md.render(text),
  };
})();
