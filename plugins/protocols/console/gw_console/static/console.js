// gw console: live approvals (server-sent events) and the terminal player.  Pages work without it.
"use strict";

function liveApprovals() {
  const table = document.getElementById("pending");
  if (!table || !window.EventSource) return;
  const body = table.querySelector("tbody");
  const badge = document.getElementById("live");
  const source = new EventSource(table.dataset.live);
  source.addEventListener("open", () => { if (badge) badge.hidden = false; });
  source.addEventListener("error", () => { if (badge) badge.hidden = true; });
  source.addEventListener("logout", () => { source.close(); window.location = "/login"; });
  source.addEventListener("approvals", async () => {
    // Do not replace rows while someone is typing a reason in one of them.
    if (document.activeElement && body.contains(document.activeElement)) return;
    const reply = await fetch(table.dataset.rows, { credentials: "same-origin" });
    if (reply.ok) body.innerHTML = await reply.text();  // server-rendered, escaped HTML
  });
}

// A small asciicast v2 player: output events appended as text (escape sequences dropped), in time.
function stripEscapes(text) {
  return text
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "")        // OSC
    .replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, m => /\x1b\[[0-9;]*[HJ]$/.test(m) && /2J$/.test(m) ? "\f" : "")
    .replace(/\x1b[()][0-9A-Za-z]/g, "")
    .replace(/\x1b[=>78cDEHM]/g, "")
    .replace(/\r\n/g, "\n");
}

function player(root) {
  const screen = root.querySelector(".screen");
  const position = root.querySelector(".position");
  let events = [], index = 0, timer = null, speed = 2, text = "";
  function show(data) {
    for (const piece of stripEscapes(data).split(/(\f|\x08|\r)/)) {
      if (piece === "\f") text = "";
      else if (piece === "\x08") text = text.slice(0, -1);
      else if (piece === "\r") { const nl = text.lastIndexOf("\n"); text = text.slice(0, nl + 1); }
      else text += piece;
    }
    screen.textContent = text;
    screen.scrollTop = screen.scrollHeight;
  }
  function step() {
    timer = null;
    if (index >= events.length) { position.textContent = "end"; return; }
    const [t, kind, data] = events[index++];
    if (kind === "o") show(data);
    position.textContent = t.toFixed(1) + " s";
    if (index < events.length) {
      const wait = Math.min(2, Math.max(0, events[index][0] - t)) / speed;
      timer = setTimeout(step, wait * 1000);
    } else position.textContent = "end";
  }
  function pause() { if (timer) clearTimeout(timer); timer = null; }
  root.addEventListener("click", e => {
    const action = e.target.dataset && e.target.dataset.action;
    if (action === "play" && !timer) { if (index >= events.length) { index = 0; text = ""; } step(); }
    if (action === "pause") pause();
    if (action === "end") { pause(); while (index < events.length) { const ev = events[index++]; if (ev[1] === "o") show(ev[2]); } position.textContent = "end"; }
  });
  root.querySelector("[data-action=speed]").addEventListener("change", e => { speed = Number(e.target.value) || 1; });
  fetch(root.dataset.cast, { credentials: "same-origin" }).then(r => r.text()).then(body => {
    const lines = body.split("\n").filter(l => l.trim());
    events = lines.slice(1).map(l => JSON.parse(l));
    root.dataset.loaded = String(events.length);
    step();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveApprovals();
  document.querySelectorAll(".player[data-cast]").forEach(player);
});
