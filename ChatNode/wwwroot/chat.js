// The chat page: one SignalR connection to /hubs/chat through the balancer (cookie affinity keeps it on one node).
"use strict";

const $ = (id) => document.getElementById(id);
const rooms = new Set();
let connection = null;
let user = "";
let lastTypingSent = 0;
const typingTimers = new Map();

fetch("whoami").then((r) => r.json()).then((w) => { $("page-node").textContent = w.node; }).catch(() => {});

function addLine(text, meta, cssClass) {
  const li = document.createElement("li");
  li.textContent = text;
  if (meta) {
    const span = document.createElement("span");
    span.className = "meta";
    span.textContent = meta;
    li.appendChild(span);
  }
  if (cssClass) li.className = cssClass;
  $("messages").prepend(li);
}

function showRooms() {
  $("rooms").textContent = rooms.size ? "in: " + [...rooms].join(", ") : "";
}

function showTyping() {
  $("typing").textContent = typingTimers.size ? [...typingTimers.keys()].join(", ") + " typing…" : "";
}

async function connect(name) {
  user = name;
  connection = new signalR.HubConnectionBuilder()
    .withUrl("hubs/chat?user=" + encodeURIComponent(name))
    .withAutomaticReconnect()
    .build();

  connection.on("message", (m) => {
    const where = m.room ? "#" + m.room : "";
    addLine(m.from + (where ? " in " + where : "") + ": " + m.text, "via " + m.node);
  });
  connection.on("typing", (who, room) => {
    const key = who + " in #" + room;
    clearTimeout(typingTimers.get(key));
    typingTimers.set(key, setTimeout(() => { typingTimers.delete(key); showTyping(); }, 3000));
    showTyping();
  });
  // A client result: any node's hub can ask this client for its status (ChatHub.AskStatus).
  connection.on("status", () => user + " is online in " + (rooms.size ? [...rooms].join(", ") : "no room"));

  const afterConnect = async () => {
    $("hub-node").textContent = await connection.invoke("GetNode");
    $("connection-id").textContent = "(connection id " + connection.connectionId + ")";
    for (const room of rooms) await connection.invoke("JoinRoom", room);
  };
  connection.onreconnecting(() => { $("hub-node").textContent = "(reconnecting…)"; });
  connection.onreconnected(() => afterConnect().catch(report));
  connection.onclose(() => { $("hub-node").textContent = "(disconnected)"; });

  await connection.start();
  await afterConnect();
  $("login").hidden = true;
  $("chat").hidden = false;
  addLine("Connected as " + name, null, "system");
}

function report(err) {
  addLine("Error: " + (err && err.message ? err.message : err), null, "system");
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  connect($("user").value.trim()).catch(report);
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
