#!/usr/bin/env node
// REFERENCE FLOOR for the overhead benchmark, not product code: the cheapest possible separate
// process between an MCP client and the daemon — it sends the socket hello, then pipes stdin to
// the socket and the socket to stdout byte for byte (no parsing, no checks, no reconnect).
// SDK Client → this → daemon is the least ANY shim process can add on this machine. CommonJS,
// like the bundled shim, so that neither pays for Node's ES module loader.
const { connect } = require("node:net");

const sock = connect(process.env.LOXMCP_SOCKET);
sock.once("connect", () => {
  const hello = { kind: "shim", name: "floor-pipe", pid: process.pid, ppid: process.ppid, version: "0.1.0" };
  sock.write(`${JSON.stringify({ jsonrpc: "2.0", method: "loxmcp/hello", params: hello })}\n`);
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
});
sock.on("error", (e) => {
  process.stderr.write(`floor-pipe: ${e.message}\n`);
  process.exit(1);
});
process.stdin.on("end", () => process.exit(0));
