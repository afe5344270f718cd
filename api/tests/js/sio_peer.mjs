// A Socket.IO peer for the Rust tests (api/tests/socketio.rs): the real socket.io-client v4,
// used exactly as the Space7 app uses it (src/sockets/SocketInstance.ts, src/screens/space/Space.tsx):
//
//   const socket = io(SERVER, { autoConnect: false, transports: ["websocket"] });
//   socket.auth = { token };
//   socket.connect();
//   socket.emit("join_space", spaceId);   // before the handshake completes
//
// Usage: node sio_peer.mjs '<config JSON>'
//   config: { url, token?, join?, transports? (default ["websocket"]), query?, count? (default 1),
//             reconnection? (default true, as the app) }
//   With count > 1, that many independent connections (each its own Manager), numbered `i`.
//
// Output, one JSON object per line on stdout:
//   {"i", "kind": "emitted", "event", "connected"}     an emit, and whether the socket was connected then
//   {"i", "kind": "connect", "id"}
//   {"i", "kind": "connect_error", "message"}
//   {"i", "kind": "disconnect", "reason"}
//   {"i", "kind": "reconnect_attempt", "attempt"}
//   {"i", "kind": "event", "event", "data"}            every server event (its first argument)
//   {"kind": "ready"}                                   after the connections were started
// Input, one JSON command per line on stdin (for every connection, or only connection `i`):
//   {"cmd": "emit", "event", "data", "i"?}   {"cmd": "disconnect", "i"?}   {"cmd": "exit"}
// The process exits when stdin closes.

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const config = JSON.parse(process.argv[2] ?? "{}");
const count = config.count ?? 1;

function out(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const sockets = [];
for (let i = 0; i < count; i++) {
  const socket = io(config.url, {
    autoConnect: false,
    transports: config.transports ?? ["websocket"],
    reconnection: config.reconnection ?? true,
    query: config.query,
    forceNew: count > 1,
  });
  if (config.token !== undefined) {
    socket.auth = { token: config.token };
  }
  socket.on("connect", () => out({ i, kind: "connect", id: socket.id }));
  socket.on("connect_error", (err) => out({ i, kind: "connect_error", message: err.message }));
  socket.on("disconnect", (reason) => out({ i, kind: "disconnect", reason }));
  socket.io.on("reconnect_attempt", (attempt) => out({ i, kind: "reconnect_attempt", attempt }));
  socket.onAny((event, ...args) => out({ i, kind: "event", event, data: args[0] ?? null }));
  sockets.push(socket);
}

function emit(i, event, data) {
  const socket = sockets[i];
  out({ i, kind: "emitted", event, connected: socket.connected });
  socket.emit(event, data);
}

for (let i = 0; i < count; i++) {
  sockets[i].connect();
  if (config.join !== undefined) {
    emit(i, "join_space", config.join);
  }
}
out({ kind: "ready" });

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  const targets = cmd.i === undefined ? sockets.map((_, i) => i) : [cmd.i];
  switch (cmd.cmd) {
    case "emit":
      for (const i of targets) emit(i, cmd.event, cmd.data);
      break;
    case "disconnect":
      for (const i of targets) sockets[i].disconnect();
      break;
    case "exit":
      process.exit(0);
      break;
    default:
      out({ kind: "bad_command", line });
  }
});
rl.on("close", () => process.exit(0));
