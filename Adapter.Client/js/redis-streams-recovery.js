// Client side of the SignalR Redis Streams backplane's connection-state recovery, for @microsoft/signalr in a browser.
//
//   const recovery = RedisStreamsRecovery.create();
//   const builder = new signalR.HubConnectionBuilder().withUrl("/hubs/chat").withAutomaticReconnect();
//   recovery.configure(builder);            // after choosing the protocol, before build()
//   const connection = builder.build();
//   recovery.attach(connection);            // before registering handlers and before start()
//   recovery.onStatus(s => ...);            // { status: "new" | "recovered" | "not-recovered", replayed, reason }
//   connection.on("message", m => ...);     // handlers as usual
//
// What it does: the server puts each delivered message's stream position in a message header ("rs-position"); the
// wrapped protocol hands it to the wrapped handler, which records it once the handler has run. The session token and
// the last position go in the hub URL's query string ("rs-session", "rs-position") of every (re)connect, so a client
// that lands on another server after its own died gets the messages it missed, once and in order. The server answers
// each connect with a "RedisStreams.Session" message: new, recovered (and how many messages were replayed), or not
// recovered (and why: the client then starts afresh and should, e.g., rejoin its rooms).
(function (global) {
  "use strict";

  const CONTROL_METHOD = "RedisStreams.Session";
  const POSITION_HEADER = "rs-position";
  const INVOCATION = 1;
  const MARK = Symbol("rs-position");

  function create() {
    let token = null;          // the session's secret, once the server gave one
    let position = null;       // highest position received (fixed-width text: compares as a string)
    let sinceStart = null;     // highest position received on the current connection
    const listeners = [];

    function advance(p) {
      if (typeof p !== "string") return;
      if (position === null || p > position) position = p;
      if (sinceStart === null || p > sinceStart) sinceStart = p;
    }

    function urlWithSession(base) {
      const url = new URL(base, global.location ? global.location.href : undefined);
      url.searchParams.set("rs-session", token || "new");
      if (token && position) url.searchParams.set("rs-position", position);
      else url.searchParams.delete("rs-position");
      sinceStart = null;
      return url.toString();
    }

    function wrapProtocol(inner) {
      return {
        name: inner.name,
        version: inner.version,
        transferFormat: inner.transferFormat,
        writeMessage: (message) => inner.writeMessage(message),
        parseMessages(input, logger) {
          const messages = inner.parseMessages(input, logger);
          for (const message of messages) {
            if (message.type === INVOCATION && message.headers && typeof message.headers[POSITION_HEADER] === "string") {
              message.arguments = (message.arguments || []).concat([{ [MARK]: message.headers[POSITION_HEADER] }]);
            }
          }
          return messages;
        },
      };
    }

    return {
      get sessionId() { return token; },
      get position() { return position; },

      /** Wraps the builder's protocol (JSON unless one was chosen). */
      configure(builder) {
        builder.withHubProtocol(wrapProtocol(builder.protocol || new global.signalR.JsonHubProtocol()));
        return builder;
      },

      /** Wraps the connection: its handlers, its URL at every (re)connect, and the server's session messages. */
      attach(connection) {
        const originalBase = connection.baseUrl;
        const on = connection.on.bind(connection);
        const wrapped = new Map();
        connection.on = (name, handler) => {
          const inner = (...args) => {
            const last = args[args.length - 1];
            const p = last && typeof last === "object" && MARK in last ? args.pop()[MARK] : null;
            const result = handler(...args);
            advance(p);
            return result;
          };
          wrapped.set(handler, inner);
          on(name, inner);
        };
        const off = connection.off.bind(connection);
        connection.off = (name, handler) => handler ? off(name, wrapped.get(handler) || handler) : off(name);

        const start = connection.start.bind(connection);
        connection.start = () => {
          connection.baseUrl = urlWithSession(originalBase);
          return start();
        };
        connection.onreconnecting(() => { connection.baseUrl = urlWithSession(originalBase); });

        on(CONTROL_METHOD, (status, newToken, startPosition, replayed, reason) => {
          token = newToken;
          if (status === "recovered") {
            if (position === null || startPosition > position) position = startPosition;
          } else {
            // The old position belonged to a session that is gone: only what this connection got counts.
            position = sinceStart !== null && sinceStart > startPosition ? sinceStart : startPosition;
          }
          const outcome = { status, replayed, reason };
          for (const listener of listeners) listener(outcome);
        });
        return connection;
      },

      /** Called with { status, replayed, reason } each time a connection starts. */
      onStatus(listener) { listeners.push(listener); },
    };
  }

  global.RedisStreamsRecovery = { create };
})(typeof window !== "undefined" ? window : globalThis);
