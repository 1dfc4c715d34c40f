#!/usr/bin/env node
// REFERENCE FLOOR for the start benchmark, not product code: the cheapest possible stdio MCP
// server in Node — no imports beyond the runtime, answers `initialize` and `tools/list` from
// memory. Its start time is what ANY Node-based shim costs at least on this machine (process
// spawn + Node bootstrap + one stdio round trip), so `(b)/(0)` is the best ratio a shim could reach.
// CommonJS, like the bundled shim: the cheapest way to start a Node program.
let buf = "";
const TOOLS = [{ name: "floor_tool", description: "reference", inputSchema: { type: "object" } }];
process.stdin.on("data", (chunk) => {
  buf += chunk;
  for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (line.trim() === "") continue;
    const msg = JSON.parse(line);
    if (msg.id === undefined) continue;
    let result = {};
    if (msg.method === "initialize") {
      result = {
        protocolVersion: msg.params.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: "floor", version: "0" },
      };
    } else if (msg.method === "tools/list") {
      result = { tools: TOOLS };
    }
    process.stdout.write(`${JSON.stringify({ jsonrpc: "2.0", id: msg.id, result })}\n`);
  }
});
process.stdin.on("end", () => process.exit(0));
