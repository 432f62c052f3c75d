"use strict";
// The dify-gateway web chat (docs/web.md). Plain script, no dependencies: the page must work
// offline and under a strict Content-Security-Policy.
(function () {
  const cfg = JSON.parse(document.getElementById("chat-config").textContent);
  const W = cfg.words;
  const $ = (id) => document.getElementById(id);
  const log = $("log"), input = $("input"), sendButton = $("send"), stateLine = $("state");
  const fileInput = $("file-input"), filesBox = $("files");

  // --- who is talking ----------------------------------------------------------------------
  // auth: token: the embedding site passes a token in the fragment (#token=…, never sent to
  // any server), the query, or later by postMessage; it is kept for this tab only.
  // auth: none: a random id per browser, kept in localStorage.
  function readToken() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    const fromQuery = new URLSearchParams(location.search).get("token");
    const token = fromHash || fromQuery;
    if (token) {
      sessionStorage.setItem("dify-chat:token:" + cfg.bot, token);
      history.replaceState(null, "", location.pathname); // keep it out of bookmarks
      return token;
    }
    return sessionStorage.getItem("dify-chat:token:" + cfg.bot) || "";
  }
  function randomId(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  let token = cfg.auth === "token" ? readToken() : "";
  let userId = "";
  if (cfg.auth === "none") {
    userId = localStorage.getItem("dify-chat:user") || "u" + randomId(12);
    localStorage.setItem("dify-chat:user", userId);
  }
  function tokenSubject() {
    try {
      const part = atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"));
      const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(part, (c) => c.charCodeAt(0))));
      return String(claims.sub || "");
    } catch (e) {
      return "";
    }
  }
  const historyKey = () => "dify-chat:history:" + cfg.bot + ":" + (userId || tokenSubject());

  // --- Markdown, safely: everything is escaped first; only our own tags come back ----------
  const escapeHtml = (s) =>
    s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  function safeUrl(url) {
    const u = url.trim();
    return /^(https?:\/\/|mailto:|\/(?!\/))/i.test(u) ? u : "";
  }
  function inline(text) {
    const codes = [];
    let s = escapeHtml(text).replace(/`([^`\n]+)`/g, (_, c) => {
      codes.push(c);
      return "\u0000" + (codes.length - 1) + "\u0000";
    });
    s = s.replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, (m, alt, url) => {
      const href = safeUrl(url.replace(/&amp;/g, "&"));
      return href ? '<img alt="' + alt + '" src="' + escapeHtml(href) + '">' : m;
    });
    s = s.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (m, label, url) => {
      const href = safeUrl(url.replace(/&amp;/g, "&"));
      return href
        ? '<a href="' + escapeHtml(href) + '" target="_blank" rel="noopener noreferrer">' + label + "</a>"
        : m;
    });
    s = s
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/__([^_\n]+)__/g, "<strong>$1</strong>")
      .replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>")
      .replace(/(^|[^_\w])_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>");
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => "<code>" + codes[Number(i)] + "</code>");
  }
  function markdown(source) {
    const out = [];
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    const isList = (l) => /^\s*([-*+]|\d+[.)])\s+/.test(l);
    const special = (l) => /^(```|#{1,4}\s|>\s?|\s*([-*_])(\s*\2){2,}\s*$)/.test(l) || isList(l);
    while (i < lines.length) {
      const line = lines[i];
      if (/^```/.test(line)) {
        const body = [];
        for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        i++; // the closing fence (or the end of a fence still being written)
        out.push("<pre><code>" + escapeHtml(body.join("\n")) + "</code></pre>");
      } else if (/^#{1,4}\s/.test(line)) {
        const level = Math.min(4, line.match(/^#+/)[0].length);
        out.push("<h" + level + ">" + inline(line.replace(/^#+\s*/, "")) + "</h" + level + ">");
        i++;
      } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
        out.push("<hr>");
        i++;
      } else if (/^>\s?/.test(line)) {
        const quote = [];
        for (; i < lines.length && /^>\s?/.test(lines[i]); i++) quote.push(lines[i].replace(/^>\s?/, ""));
        out.push("<blockquote>" + markdown(quote.join("\n")) + "</blockquote>");
      } else if (isList(line)) {
        const ordered = /^\s*\d/.test(line);
        const items = [];
        for (; i < lines.length && (isList(lines[i]) || (/^\s{2,}\S/.test(lines[i]) && items.length)); i++) {
          if (isList(lines[i])) items.push(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""));
          else items[items.length - 1] += "\n" + lines[i].trim();
        }
        const tag = ordered ? "ol" : "ul";
        out.push("<" + tag + ">" + items.map((t) => "<li>" + inline(t).replace(/\n/g, "<br>") + "</li>").join("") + "</" + tag + ">");
      } else if (!line.trim()) {
        i++;
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !special(lines[i]); i++) para.push(lines[i]);
        out.push("<p>" + para.map(inline).join("<br>") + "</p>");
      }
    }
    return out.join("");
  }

  // --- the conversation on screen ------------------------------------------------------------
  const bubbles = new Map(); // reply_to -> {el, body, status}
  let history = [];
  try {
    history = JSON.parse(localStorage.getItem(historyKey()) || "[]");
  } catch (e) {
    history = [];
  }
  function remember(entry) {
    const index = history.findIndex((h) => h.role === entry.role && h.id === entry.id);
    if (index >= 0) history[index] = entry;
    else history.push(entry);
    history = history.slice(-100);
    try {
      localStorage.setItem(historyKey(), JSON.stringify(history));
    } catch (e) {
      /* full or blocked: the page still works, it just forgets */
    }
  }
  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  function scrollDown(force) {
    if (force || nearBottom()) requestAnimationFrame(() => (log.scrollTop = log.scrollHeight));
  }
  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text) el.textContent = text;
    return el;
  }
  function showEmpty() {
    $("empty").hidden = log.querySelector(".msg") !== null;
  }
  function addUser(id, text, files) {
    const el = element("div", "msg user");
    if (files && files.length) {
      const box = element("div", "attachments");
      files.forEach((name) => box.appendChild(element("span", "chip", "\u{1F4CE} " + name)));
      el.appendChild(box);
    }
    if (text) el.appendChild(element("div", "bubble", text));
    const meta = element("div", "meta");
    el.appendChild(meta);
    log.appendChild(el);
    showEmpty();
    scrollDown(true);
    return meta;
  }
  function botBubble(id) {
    let b = bubbles.get(id);
    if (!b) {
      const el = element("div", "msg bot");
      const body = element("div", "bubble md");
      const status = element("div", "status");
      const controls = element("div", "controls");
      el.append(body, status, controls);
      log.appendChild(el);
      b = { el, body, status, controls, done: false };
      bubbles.set(id, b);
      showEmpty();
    }
    return b;
  }
  function showThinking(b) {
    b.body.textContent = "";
    const typing = element("span", "typing");
    const dots = element("span", "dots");
    dots.append(element("i"), element("i"), element("i"));
    typing.append(dots, element("span", "", W.thinking));
    b.body.appendChild(typing);
  }
  function render(id, text, { status = "", done = false, error = false } = {}) {
    const b = botBubble(id);
    b.el.classList.toggle("error", error);
    if (!text && !done) showThinking(b);
    else {
      b.body.innerHTML = markdown(text);
      if (!done) {
        // The cursor goes at the end of the last line written, inside its paragraph.
        let last = b.body.lastElementChild;
        while (last && /^(UL|OL|BLOCKQUOTE)$/.test(last.tagName) && last.lastElementChild) {
          last = last.lastElementChild;
        }
        (last || b.body).appendChild(element("span", "cursor"));
      }
    }
    b.status.textContent = done ? "" : status;
    b.done = done;
    if (!done) showStop(id, b);
    else if (b.stopButton) {
      b.stopButton.remove();
      b.stopButton = null;
    }
    scrollDown(false);
  }

  // --- buttons under an answer (docs/interactive.md) -----------------------------------------
  function button(className, text, label, onClick) {
    const el = element("button", className, text);
    el.type = "button";
    if (label) el.setAttribute("aria-label", label);
    el.addEventListener("click", onClick);
    return el;
  }
  function click(kind, replyTo, extra) {
    const id = Date.now().toString(36) + "-" + randomId(6);
    const frame = JSON.stringify(Object.assign({ type: kind, id, reply_to: replyTo }, extra));
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
    return { id, frame };
  }
  function showStop(id, b) {
    if (b.stopButton) return;
    b.stopButton = button("stop", W.stop, "", () => {
      click("stop", id, {});
      b.stopButton.disabled = true;
    });
    b.controls.appendChild(b.stopButton);
  }
  function showControls(id, offered) {
    const b = botBubble(id);
    b.controls.textContent = "";
    b.stopButton = null;
    if (offered.feedback) {
      for (const [rating, face, label] of [["like", "\u{1F44D}", W.helpful], ["dislike", "\u{1F44E}", W.not_helpful]]) {
        const chosen = offered.rating === rating;
        const el = button("rate" + (chosen ? " chosen" : ""), face, label, () => {
          click("feedback", id, { rating: chosen ? null : rating });
          showControls(id, Object.assign({}, offered, { rating: chosen ? null : rating }));
        });
        el.setAttribute("aria-pressed", String(chosen));
        b.controls.appendChild(el);
      }
    }
    (Array.isArray(offered.suggestions) ? offered.suggestions : []).forEach((question, index) => {
      b.controls.appendChild(
        button("suggestion", String(question), "", () => {
          const sent = click("suggestion", id, { index });
          const meta = addUser(sent.id, String(question), []);
          remember({ role: "user", id: sent.id, text: String(question) });
          pending.set(sent.id, { frame: sent.frame, meta });
        })
      );
    });
    const entry = history.find((h) => h.role === "bot" && h.id === id);
    if (entry) remember(Object.assign({}, entry, { offered }));
  }
  function restore() {
    for (const h of history) {
      if (h.role === "user") addUser(h.id, h.text, h.files);
      else {
        render(h.id, h.text, { done: true, error: h.error });
        if (h.offered) showControls(h.id, h.offered);
      }
    }
    scrollDown(true);
  }

  // --- the socket ----------------------------------------------------------------------------
  const pending = new Map(); // message id -> {frame, meta}: sent, no answer frame yet
  let socket = null, attempts = 0, lastSent = "", stopped = false;

  function setState(kind, text) {
    stateLine.className = "state " + kind;
    $("state-text").textContent = text;
  }
  function socketUrl() {
    const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + cfg.socket;
    return base + (cfg.auth === "none" ? "?user=" + encodeURIComponent(userId) : "?token=" + encodeURIComponent(token));
  }
  function connect() {
    if (stopped) return;
    if (!attempts) setState("", W.connecting);
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (e) {
      return retry();
    }
    socket = ws;
    ws.onopen = () => {
      attempts = 0;
      setState("online", W.online);
      for (const p of pending.values()) ws.send(p.frame); // the gateway answers each once
      pending.forEach((p) => (p.meta.textContent = ""));
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onFrame(frame);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 1009 && pending.has(lastSent)) {
        const p = pending.get(lastSent);
        pending.delete(lastSent);
        p.meta.textContent = W.too_large;
      }
      retry(event.code === 1013 ? W.cut_off : W.reconnecting);
    };
  }
  async function retry(why) {
    attempts += 1;
    if (attempts >= 2 && cfg.auth === "token" && (await tokenRefused())) {
      stopped = true;
      setState("failed", W.session_expired);
      return;
    }
    setState("trouble", why || W.reconnecting);
    const delay = Math.min(15000, 400 * 2 ** Math.min(attempts, 6)) * (0.6 + Math.random() * 0.4);
    setTimeout(connect, delay);
  }
  async function tokenRefused() {
    // A browser does not say why a WebSocket failed; a plain GET of the socket URL does
    // (401: the token is no good; anything else: the network or the gateway).
    try {
      const url = socketUrl().replace(/^ws/, "http");
      return (await fetch(url, { cache: "no-store" })).status === 401;
    } catch (e) {
      return false;
    }
  }
  function onFrame(frame) {
    const id = frame.reply_to;
    if (typeof id !== "string" && frame.type !== "error") return;
    if (pending.has(id)) pending.delete(id);
    if (frame.type === "update") {
      render(id, String(frame.text || ""), { status: String(frame.status || "") });
    } else if (frame.type === "final") {
      render(id, String(frame.text || ""), { done: true });
      remember({ role: "bot", id, text: String(frame.text || "") });
      if (frame.feedback || (frame.suggestions && frame.suggestions.length)) showControls(id, frame);
    } else if (frame.type === "controls") {
      if (bubbles.has(id)) showControls(id, frame);
    } else if (frame.type === "error") {
      const key = typeof id === "string" ? id : "error-" + randomId(4);
      render(key, String(frame.message || ""), { done: true, error: true });
      remember({ role: "bot", id: key, text: String(frame.message || ""), error: true });
    }
  }
  window.addEventListener("message", (event) => {
    // The embedding page may hand over a fresh token: {type: "dify-chat-token", token}.
    const data = event.data;
    if (event.source !== window.parent || !data || data.type !== "dify-chat-token") return;
    token = String(data.token || "");
    sessionStorage.setItem("dify-chat:token:" + cfg.bot, token);
    stopped = false;
    attempts = 0;
    if (socket) socket.close();
    else connect();
  });

  // --- sending ---------------------------------------------------------------------------------
  let picked = [];
  function send(text, files, { show = true } = {}) {
    const id = Date.now().toString(36) + "-" + randomId(6);
    const frame = JSON.stringify(Object.assign({ type: "message", id, text }, files.length ? { files } : {}));
    const names = files.map((f) => f.name);
    const meta = show ? addUser(id, text, names) : element("div");
    if (show) remember({ role: "user", id, text, files: names });
    if (new Blob([frame]).size > cfg.maxFrameBytes) {
      meta.textContent = W.too_large;
      return;
    }
    pending.set(id, { frame, meta });
    lastSent = id;
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
    else meta.textContent = W.waiting_to_send;
  }
  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve({ name: file.name, type: file.type, data: String(reader.result).split(",")[1] || "" });
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }
  function showPicked() {
    filesBox.textContent = "";
    picked.forEach((file, index) => {
      const chip = element("span", "chip");
      const remove = element("button", "", "\u00d7");
      remove.type = "button";
      remove.setAttribute("aria-label", W.remove_file);
      remove.onclick = () => {
        picked.splice(index, 1);
        showPicked();
      };
      chip.append(element("span", "", file.name), remove);
      filesBox.appendChild(chip);
    });
    updateButton();
  }
  function updateButton() {
    sendButton.disabled = !input.value.trim() && !picked.length;
  }
  function grow() {
    input.style.height = "auto";
    input.style.height = input.scrollHeight + "px";
    input.style.overflowY = input.scrollHeight > input.clientHeight + 1 ? "auto" : "hidden";
  }
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text && !picked.length) return;
    const files = await Promise.all(picked.map(readFile));
    picked = [];
    showPicked();
    input.value = "";
    grow();
    updateButton();
    send(text, files);
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition does neither.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    grow();
    updateButton();
  });
  $("attach").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    picked = picked.concat(Array.from(fileInput.files || [])).slice(0, 5);
    fileInput.value = "";
    showPicked();
  });
  $("new-chat").addEventListener("click", () => {
    history = [];
    try {
      localStorage.removeItem(historyKey());
    } catch (e) {
      /* nothing kept */
    }
    bubbles.clear();
    log.querySelectorAll(".msg").forEach((el) => el.remove());
    showEmpty();
    send("/reset", [], { show: false });
    input.focus();
  });

  // --- start -----------------------------------------------------------------------------------
  document.title = W.title + " \u00b7 " + cfg.bot;
  $("title").textContent = cfg.bot;
  $("empty").textContent = W.empty_state;
  $("new-chat").textContent = W.new_chat;
  $("attach").setAttribute("aria-label", W.attach);
  $("attach").title = W.attach;
  $("send").setAttribute("aria-label", W.send);
  $("send").title = W.send;
  input.placeholder = W.placeholder;
  updateButton();
  restore();
  showEmpty();
  if (cfg.auth === "token" && !token) setState("failed", W.session_expired);
  else connect();
  input.focus();
})();
