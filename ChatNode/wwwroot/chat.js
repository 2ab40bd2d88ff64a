// The chat page: a sign-in (an auth cookie valid on every node), then one SignalR connection to /hubs/chat through the
// balancer (cookie affinity keeps it on one node; if that node dies, the client reconnects through the balancer to
// another). No external fetches: the SignalR client is served from lib/.
"use strict";

const $ = (id) => document.getElementById(id);
const rooms = new Set();
let connection = null;
let user = "";
let lastTypingSent = 0;
const typingTimers = new Map();
let onlineTimer = 0;

// Reconnect quickly while a node fails over (the balancer's health checks take a dead node out within seconds), then
// more slowly; give up after 5 minutes (the page then offers a new connection).
const retryDelaysMs = (context) => {
  if (context.elapsedMilliseconds < 60_000) return context.previousRetryCount === 0 ? 0 : 1_000;
  if (context.elapsedMilliseconds < 300_000) return 5_000;
  return null;
};

// ---- connection state -------------------------------------------------------------------------------------------
// One place shows it: #state, whose data-state is one of
//   signed-out | connecting | connected | reconnecting | recovered | not-recovered | disconnected
// and whose text says it in words. Tests read both.

// Every state the page went through, with its text and time (for tests and for a look from the dev tools).
const stateHistory = [];

function setState(state, text) {
  stateHistory.push({ state, text, at: new Date().toISOString() });
  const el = $("state");
  el.dataset.state = state;
  el.textContent = text;
}

function showConnected(node) {
  setState("connected", "Connected on " + node);
}

function showReconnecting(error) {
  setState("reconnecting", "Reconnecting…" + (error && error.message ? " (" + error.message + ")" : ""));
}

function showDisconnected(error) {
  setState("disconnected", "Disconnected" + (error && error.message ? ": " + error.message : ""));
}

// Connection-state recovery (after a reconnect, the messages missed meanwhile are replayed) calls one of these two
// once it knows the outcome, instead of showConnected: "recovered (N missed messages replayed)" or "not recovered
// (why)". They are on window.chatPage, so the recovery code and tests can call them.
function showRecovered(node, missedCount) {
  setState("recovered", "Recovered on " + node + " (" + missedCount + " missed message" + (missedCount === 1 ? "" : "s") + " replayed)");
}

function showNotRecovered(node, reason) {
  setState("not-recovered", "Connected on " + node + ", not recovered (" + reason + ")");
}

// Called after every automatic reconnect with the node the connection is on now. Without recovery: connected again.
// Recovery replaces this hook (window.chatPage.afterReconnect = async (node) => { ...; showRecovered(node, n); }).
async function afterReconnectDefault(node) {
  showConnected(node);
}

window.chatPage = {
  showConnected, showReconnecting, showDisconnected, showRecovered, showNotRecovered,
  afterReconnect: afterReconnectDefault,
  stateHistory,
  addMessage: (m) => addMessage(m),
  get connection() { return connection; },
};

// ---- rendering --------------------------------------------------------------------------------------------------

function timeOf(iso) {
  const d = iso ? new Date(iso) : new Date();
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function addLine(text, meta, cssClass, time) {
  const li = document.createElement("li");
  const when = document.createElement("time");
  when.className = "time";
  when.textContent = timeOf(time);
  if (time) when.dateTime = time;
  li.appendChild(when);
  li.appendChild(document.createTextNode(text));
  if (meta) {
    const span = document.createElement("span");
    span.className = "meta";
    span.textContent = meta;
    li.appendChild(span);
  }
  if (cssClass) li.classList.add(cssClass);
  $("messages").prepend(li);
  return li;
}

function addMessage(m) {
  const where = m.room ? " in #" + m.room : m.to ? " to you" : "";
  const li = addLine(m.from + where + ": " + m.text, "via " + m.node, "message", m.sent);
  li.dataset.from = m.from;
  li.dataset.node = m.node;
  if (m.room) li.dataset.room = m.room;
}

function showRooms() {
  $("rooms").textContent = rooms.size ? "in: " + [...rooms].join(", ") : "";
}

function showTyping() {
  $("typing").textContent = typingTimers.size ? [...typingTimers.keys()].join(", ") + " typing…" : "";
}

function showOnline(list) {
  const ul = $("online");
  ul.replaceChildren(...list.map((u) => {
    const li = document.createElement("li");
    li.textContent = u.user;
    li.dataset.user = u.user;
    const nodes = document.createElement("span");
    nodes.className = "nodes";
    nodes.textContent = u.nodes.join(", ");
    li.appendChild(nodes);
    return li;
  }));
  $("online-count").textContent = "(" + list.length + ")";
}

async function refreshOnline() {
  if (!connection || connection.state !== signalR.HubConnectionState.Connected) return;
  try { showOnline(await connection.invoke("Online")); } catch { /* shown again at the next tick */ }
}

function report(err) {
  addLine("Error: " + (err && err.message ? err.message : err), null, "system");
}

// ---- sign-in ----------------------------------------------------------------------------------------------------

async function signIn(name) {
  const response = await fetch("auth/signin", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try { detail = (await response.json()).detail || detail; } catch { /* keep the status */ }
    throw new Error(detail);
  }
  return (await response.json()).name;
}

async function currentUser() {
  const response = await fetch("auth/me");
  return response.ok ? (await response.json()).name : null;
}

function showSignedIn(name) {
  user = name;
  $("user-name").textContent = name;
  $("whoami").hidden = false;
  $("signin").hidden = true;
  $("chat").hidden = false;
}

// ---- the hub connection -----------------------------------------------------------------------------------------

// Connection-state recovery (the backplane's sessions in Redis, lib/redis-streams-recovery.js): at every (re)connect
// the server says "new", "recovered" (N missed messages replayed) or "not-recovered" (why). With recovery off on the
// server nothing is said, and the page behaves as without it.
const recovery = window.RedisStreamsRecovery ? window.RedisStreamsRecovery.create() : null;
const statuses = [];
let statusWaiter = null;
if (recovery) {
  recovery.onStatus((s) => {
    if (statusWaiter) { const w = statusWaiter; statusWaiter = null; w(s); } else statuses.push(s);
  });
}

// The server's word on the connection that just started, or null if it says nothing within 3 s (recovery off).
function nextStatus() {
  if (statuses.length) return Promise.resolve(statuses.shift());
  if (!recovery) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { statusWaiter = null; resolve(null); }, 3000);
    statusWaiter = (s) => { clearTimeout(timer); resolve(s); };
  });
}

async function afterReconnectWithRecovery(node) {
  const status = await nextStatus();
  if (status && status.status === "recovered") {
    // Rooms came back with the session; the messages missed meanwhile have just been shown, in order.
    showRecovered(node, status.replayed);
    addLine("Recovered on " + node + ": " + status.replayed + " missed message" + (status.replayed === 1 ? "" : "s") + " replayed", null, "system");
    return;
  }
  for (const room of rooms) await connection.invoke("JoinRoom", room);
  if (status && status.status === "not-recovered") {
    showNotRecovered(node, status.reason);
    addLine("Not recovered (" + status.reason + "): messages sent while you were away are lost", null, "system");
  } else {
    showConnected(node);
  }
}

async function connect() {
  const builder = new signalR.HubConnectionBuilder()
    // timeout: an HTTP request (the negotiate) unanswered for 5 s fails, and the next attempt goes elsewhere. After its node
    // died, the first reconnect's negotiate can still reach the dead node (until the balancer's health check notices)
    // and hang there; SignalR's default would wait 100 s.
    .withUrl("hubs/chat", { timeout: 5000 })
    .withAutomaticReconnect({ nextRetryDelayInMilliseconds: retryDelaysMs });
  if (recovery) recovery.configure(builder);
  connection = builder.build();
  if (recovery) {
    recovery.attach(connection);
    window.chatPage.afterReconnect = afterReconnectWithRecovery;
  }

  connection.on("message", addMessage);
  connection.on("typing", (who, room) => {
    const key = who + " in #" + room;
    clearTimeout(typingTimers.get(key));
    typingTimers.set(key, setTimeout(() => { typingTimers.delete(key); showTyping(); }, 3000));
    showTyping();
  });
  // A client result: any node's hub can ask this client for its status (ChatHub.AskStatus).
  connection.on("status", () => user + " is online in " + (rooms.size ? [...rooms].join(", ") : "no room"));

  const afterConnect = async () => {
    const node = await connection.invoke("GetNode");
    $("connection-id").textContent = "· connection id " + connection.connectionId;
    if (!recovery) for (const room of rooms) await connection.invoke("JoinRoom", room);
    refreshOnline();
    return node;
  };
  connection.onreconnecting((error) => showReconnecting(error));
  connection.onreconnected(async () => {
    try { await window.chatPage.afterReconnect(await afterConnect()); } catch (err) { report(err); }
  });
  connection.onclose((error) => showDisconnected(error));

  setState("connecting", "Connecting…");
  await connection.start();
  const node = await afterConnect();
  await nextStatus(); // the new session's
  showConnected(node);
  clearInterval(onlineTimer);
  onlineTimer = setInterval(refreshOnline, 5000);
  addLine("Connected as " + user, null, "system");
}

async function start() {
  fetch("whoami").then((r) => r.json()).then((w) => { $("page-node").textContent = w.node; }).catch(() => {});
  const name = await currentUser();
  if (name) {
    showSignedIn(name);
    await connect();
  } else {
    setState("signed-out", "Not signed in");
  }
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  $("signin-error").hidden = true;
  signIn($("user").value)
    .then((name) => { showSignedIn(name); return connect(); })
    .catch((err) => { $("signin-error").textContent = "Sign-in failed: " + (err.message || err); $("signin-error").hidden = false; });
});

$("signout").addEventListener("click", async () => {
  clearInterval(onlineTimer);
  if (connection) await connection.stop().catch(() => {});
  await fetch("auth/signout", { method: "POST" }).catch(() => {});
  location.reload();
});

$("room-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = $("room").value.trim();
  if (!room) return;
  connection.invoke("JoinRoom", room).then(() => { rooms.add(room); showRooms(); }).catch(report);
});

$("leave").addEventListener("click", () => {
  const room = $("room").value.trim();
  connection.invoke("LeaveRoom", room).then(() => { rooms.delete(room); showRooms(); }).catch(report);
});

$("target").addEventListener("change", () => { $("to-user").hidden = $("target").value !== "user"; });

$("text").addEventListener("input", () => {
  const room = $("room").value.trim();
  const now = Date.now();
  if (!rooms.has(room) || now - lastTypingSent < 1000) return;
  lastTypingSent = now;
  connection.invoke("Typing", room).catch(() => {});
});

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  const target = $("target").value;
  let sent;
  if (target === "room") sent = connection.invoke("SendToRoom", $("room").value.trim(), text);
  else if (target === "user") {
    const to = $("to-user").value.trim();
    sent = connection.invoke("SendToUser", to, text).then(() => addLine("you to " + to + ": " + text, null, "system"));
  } else sent = connection.invoke("Send", text);
  sent.then(() => { $("text").value = ""; }).catch(report);
});

$("status-form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("status-answer").textContent = "asking…";
  connection.invoke("AskStatus", $("status-of").value.trim())
    .then((answer) => { $("status-answer").textContent = answer; })
    .catch((err) => { $("status-answer").textContent = err.message || String(err); });
});

start().catch(report);
