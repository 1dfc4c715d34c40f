import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { parseEnv } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CliSandbox, SHIM_BIN } from "./helpers.js";

const SENTINEL = `S3ntinel'pw"$x\\y`;

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

describe("loxmcp init (non-interactive)", () => {
  it("writes .env 0600 in a 0700 dir from --password-stdin and never echoes the password", async () => {
    const r = await sb.run(["init", "--serial", "504f94a00001", "--user", "ai", "--password-stdin"], {
      input: `${SENTINEL}\n`,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const file = join(sb.loxmcpHome, "config", ".env");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
    const parsed = parseEnv(readFileSync(file, "utf8"));
    expect(parsed).toMatchObject({
      LOXONE_SERIAL: "504F94A00001",
      LOXONE_USER: "ai",
      LOXONE_PASSWORD: SENTINEL,
    });
    expect(r.stdout + r.stderr).not.toContain("S3ntinel");
    expect(r.stdout).toContain("loxmcp login-check");
  });

  it("stores a password command instead, replacing a stored password and keeping other keys", async () => {
    const file = join(sb.loxmcpHome, "config", ".env");
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, "# mine\nLOXMCP_POLICY=full\nLOXONE_PASSWORD=old-secret\n", { mode: 0o600 });
    const r = await sb.run([
      "init",
      "--serial",
      "504F94A00001",
      "--user",
      "ai",
      "--password-command",
      "pass show loxone/ai",
    ]);
    expect(r.code).toBe(0);
    const text = readFileSync(file, "utf8");
    const parsed = parseEnv(text);
    expect(parsed.LOXONE_PASSWORD_COMMAND).toBe("pass show loxone/ai");
    expect(parsed.LOXONE_PASSWORD).toBeUndefined();
    expect(parsed.LOXMCP_POLICY).toBe("full");
    expect(text).toContain("# mine");
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("refuses to run without the values when stdin is not a terminal, and rejects a bad serial", async () => {
    const missing = await sb.run(["init", "--serial", "504F94A00001"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--user is required");
    const bad = await sb.run(["init", "--serial", "nope", "--user", "u", "--password-stdin"], {
      input: "pw",
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("12 hex characters");
    expect(existsSync(join(sb.loxmcpHome, "config", ".env"))).toBe(false);
  });

  it("takes a MAC-style serial (normalised) and names the bad character of a typo'd one", async () => {
    const typo = await sb.run(["init", "--serial", "504F94A0C0DX", "--user", "u", "--password-stdin"], {
      input: "pw",
    });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain(
      '"504F94A0C0DX" is not a Miniserver serial: the character "X" at position 12',
    );
    expect(existsSync(join(sb.loxmcpHome, "config", ".env"))).toBe(false);

    const mac = await sb.run(["init", "--serial", "50:4f:94:a0:c0:de", "--user", "u", "--password-stdin"], {
      input: "pw",
    });
    expect(mac.code, mac.stderr).toBe(0);
    const env = parseEnv(readFileSync(join(sb.loxmcpHome, "config", ".env"), "utf8"));
    expect(env.LOXONE_SERIAL).toBe("504F94A0C0DE");
  });

  it("a full connect URL (…/<serial>/mcp) gives the serial and stores the base; a different --serial is the conflict", async () => {
    const full = "https://connect.loxonecloud.com/504F94A0C0DE/mcp";
    const conflict = await sb.run(
      ["init", "--serial", "504F94A00001", "--connect-url", full, "--user", "u", "--password-stdin"],
      { input: "pw" },
    );
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toContain(
      "--connect-url names Miniserver 504F94A0C0DE but --serial is 504F94A00001",
    );
    expect(existsSync(join(sb.loxmcpHome, "config", ".env"))).toBe(false);

    const r = await sb.run(["init", "--connect-url", full, "--user", "u", "--password-stdin"], {
      input: "pw",
    });
    expect(r.code, r.stderr).toBe(0);
    const env = parseEnv(readFileSync(join(sb.loxmcpHome, "config", ".env"), "utf8"));
    expect(env.LOXONE_SERIAL).toBe("504F94A0C0DE");
    expect(env.LOXONE_CONNECT_URL).toBe("https://connect.loxonecloud.com");
  });
});

describe("loxmcp client-config", () => {
  it("prints a Claude Desktop snippet with absolute node and shim paths", async () => {
    const r = await sb.run(["client-config", "claude"]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      mcpServers: { loxone: { command: string; args: string[]; env: object } };
    };
    const e = doc.mcpServers.loxone;
    expect(e.command).toBe(process.execPath);
    expect(isAbsolute(e.command)).toBe(true);
    expect(e.args[0]).toBe(SHIM_BIN);
    expect(existsSync(e.args[0] ?? "")).toBe(true);
    expect(e.args.slice(1)).toEqual(["--name", "claude-desktop"]);
    expect(e.env).toEqual({ LOXMCP_HOME: sb.loxmcpHome });
  });

  it("prints a `claude mcp add` Claude Code accepts (name before -e) and writes nothing with --write", async () => {
    const r = await sb.run(
      ["client-config", "claude-code", "--name", "cc", "--write"],
      {},
      {
        LOXMCP_SOCKET: "/tmp/lx sock/d.sock",
      },
    );
    expect(r.code).toBe(0);
    // `-e` takes several values in Claude Code: a server name after it would be read as one more.
    expect(r.stdout.trim()).toBe(
      `claude mcp add --scope user loxone -e LOXMCP_HOME=${sb.loxmcpHome} -e 'LOXMCP_SOCKET=/tmp/lx sock/d.sock' -- ${process.execPath} ${SHIM_BIN} --name cc`,
    );
    expect(r.stderr).toContain("run the command above; nothing was written");
    expect(existsSync(sb.home)).toBe(false);

    // An existing user-scope entry of that name: `claude mcp add` would refuse, so say what to remove.
    mkdirSync(sb.home, { recursive: true });
    writeFileSync(
      join(sb.home, ".claude.json"),
      JSON.stringify({ mcpServers: { loxone: { command: "node", args: ["/old/loxmcp-shim.js"] } } }),
    );
    const again = await sb.run(["client-config", "claude-code"]);
    expect(again.stdout).toContain("claude mcp add --scope user loxone -e");
    expect(again.stdout).toContain("--name claude-code");
    expect(again.stderr).toContain("claude mcp remove --scope user loxone");
  });

  it("accepts claude-desktop (its default name) and the old alias claude; every client's entry names the client", async () => {
    const desk = await sb.run(["client-config", "claude-desktop"]);
    expect(desk.code, desk.stderr).toBe(0);
    const alias = await sb.run(["client-config", "claude"]);
    expect(alias.stdout).toBe(desk.stdout);
    const expected: Array<[string, string]> = [
      ["claude-desktop", "mcpServers"],
      ["cursor", "mcpServers"],
      ["vscode", "servers"],
      ["windsurf", "mcpServers"],
    ];
    for (const [client, key] of expected) {
      const r = await sb.run(["client-config", client, "--server-name", "home"]);
      expect(r.code, `${client}: ${r.stderr}`).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(Object.keys(doc)).toEqual([key]);
      expect(doc[key].home.args).toEqual([SHIM_BIN, "--name", client]);
      expect(doc[key].home.command).toBe(process.execPath);
      expect(doc[key].home.env).toEqual({ LOXMCP_HOME: sb.loxmcpHome });
    }
    const bad = await sb.run(["client-config", "emacs"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/claude-desktop.*vscode.*windsurf/s);
  });

  it("vscode --write merges a typed stdio entry under top-level `servers` of the user mcp.json", async () => {
    const file =
      process.platform === "darwin"
        ? join(sb.home, "Library", "Application Support", "Code", "User", "mcp.json")
        : join(sb.home, ".config", "Code", "User", "mcp.json");
    mkdirSync(dirname(file), { recursive: true });
    const original = {
      inputs: [{ id: "token", type: "promptString" }],
      servers: { github: { type: "http", url: "https://api.example.com/mcp" } },
    };
    writeFileSync(file, JSON.stringify(original));
    const r = await sb.run(["client-config", "vscode", "--write"]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(file, "utf8"));
    expect(doc.inputs).toEqual(original.inputs);
    expect(doc.servers.github).toEqual(original.servers.github);
    expect(doc.servers.loxone).toEqual({
      type: "stdio",
      command: process.execPath,
      args: [SHIM_BIN, "--name", "vscode"],
      env: { LOXMCP_HOME: sb.loxmcpHome },
    });
    expect(doc.mcpServers).toBeUndefined();
    const backups = readdirSync(dirname(file)).filter((f) => f.startsWith("mcp.json.bak-"));
    expect(backups).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(dirname(file), backups[0] ?? ""), "utf8"))).toEqual(original);
    expect(r.stdout).toContain("restart VS Code");
  });

  it("windsurf --write creates ~/.codeium/windsurf/mcp_config.json, then merges with a backup", async () => {
    const file = join(sb.home, ".codeium", "windsurf", "mcp_config.json");
    const first = await sb.run(["client-config", "windsurf", "--write"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).not.toContain("backup:");
    expect(JSON.parse(readFileSync(file, "utf8")).mcpServers.loxone.args).toEqual([
      SHIM_BIN,
      "--name",
      "windsurf",
    ]);
    const renamed = await sb.run(["client-config", "windsurf", "--write", "--name", "windsurf-lab"]);
    expect(renamed.stdout).toContain("backup:");
    const doc = JSON.parse(readFileSync(file, "utf8"));
    expect(doc.mcpServers.loxone.args).toEqual([SHIM_BIN, "--name", "windsurf-lab"]);
    expect(readdirSync(dirname(file)).filter((f) => f.startsWith("mcp_config.json.bak-"))).toHaveLength(1);
  });

  it("doctor names a client config whose shim would reach another daemon (LOXMCP_HOME / LOXMCP_SOCKET), with the fix", async () => {
    // Written from another shell, for another LOXMCP_HOME.
    const other = "/tmp/lx-other-home";
    const w = await sb.run(["client-config", "windsurf", "--write"], {}, { LOXMCP_HOME: other });
    expect(w.code).toBe(0);
    const cc = join(sb.home, ".claude.json");
    writeFileSync(
      cc,
      JSON.stringify({
        projects: {
          "/src/house": {
            mcpServers: {
              lx: {
                command: process.execPath,
                args: [SHIM_BIN],
                env: { LOXMCP_HOME: sb.loxmcpHome, LOXMCP_SOCKET: "/run/x.sock" },
              },
            },
          },
        },
      }),
    );
    const doc = JSON.parse((await sb.run(["doctor", "--json"])).stdout) as {
      checks: Array<{ id: string; level: string; message: string; fix?: string }>;
    };
    const ws = doc.checks.find((c) => c.id === "client.env.windsurf");
    expect(ws?.level).toBe("warn");
    expect(ws?.message).toContain(`LOXMCP_HOME=${other}, but this shell has LOXMCP_HOME=${sb.loxmcpHome}`);
    expect(ws?.fix).toContain("`loxmcp client-config windsurf --write`");
    const code = doc.checks.find((c) => c.id === "client.env.claude-code");
    expect(code?.message).toContain('projects["/src/house"].mcpServers.lx');
    expect(code?.message).toContain("LOXMCP_SOCKET=/run/x.sock, but this shell has LOXMCP_SOCKET=(unset)");
    expect(code?.message).not.toContain("LOXMCP_HOME=");
    expect(code?.fix).toContain("claude mcp remove --scope local lx");

    // Rewritten from this shell: nothing left to say about windsurf.
    expect((await sb.run(["client-config", "windsurf", "--write"])).code).toBe(0);
    const fixed = JSON.parse((await sb.run(["doctor", "--json"])).stdout) as typeof doc;
    expect(fixed.checks.some((c) => c.id === "client.env.windsurf")).toBe(false);
    expect(fixed.checks.some((c) => c.id === "client.env.claude-code")).toBe(true);
  });

  it("--write merges into an existing Cursor config with a backup, keeping other entries", async () => {
    const file = join(sb.home, ".cursor", "mcp.json");
    mkdirSync(dirname(file), { recursive: true });
    const original = { theme: "dark", mcpServers: { other: { command: "x", args: ["y"] } } };
    writeFileSync(file, JSON.stringify(original));
    const r = await sb.run(["client-config", "cursor", "--write"]);
    expect(r.code).toBe(0);
    const merged = JSON.parse(readFileSync(file, "utf8"));
    expect(merged.theme).toBe("dark");
    expect(merged.mcpServers.other).toEqual({ command: "x", args: ["y"] });
    expect(merged.mcpServers.loxone.command).toBe(process.execPath);
    expect(merged.mcpServers.loxone.args).toEqual([SHIM_BIN, "--name", "cursor"]);
    const backups = readdirSync(dirname(file)).filter((f) => f.startsWith("mcp.json.bak-"));
    expect(backups).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(dirname(file), backups[0] ?? ""), "utf8"))).toEqual(original);
    expect(r.stdout).toContain("backup:");

    const again = await sb.run(["client-config", "cursor", "--write"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("nothing changed");
  });

  it("--write creates the Claude Desktop config (Linux location under $HOME) when there is none", async () => {
    const r = await sb.run(["client-config", "claude", "--write", "--name", "desk"]);
    expect(r.code).toBe(0);
    const file =
      process.platform === "darwin"
        ? join(sb.home, "Library", "Application Support", "Claude", "claude_desktop_config.json")
        : join(sb.home, ".config", "Claude", "claude_desktop_config.json");
    const doc = JSON.parse(readFileSync(file, "utf8"));
    expect(doc.mcpServers.loxone.args).toEqual([SHIM_BIN, "--name", "desk"]);
  });

  it("refuses to overwrite a config file that is not valid JSON", async () => {
    const file = join(sb.home, ".cursor", "mcp.json");
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, "{ broken json,, ");
    const r = await sb.run(["client-config", "cursor", "--write"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not valid JSON");
    expect(readFileSync(file, "utf8")).toBe("{ broken json,, ");
    expect(readdirSync(dirname(file))).toEqual(["mcp.json"]);
  });
});
