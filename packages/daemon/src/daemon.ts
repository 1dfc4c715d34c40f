/**
 * The controller: wires config → logger → store → upstream → gate → mux, and starts/stops
 * them in order. Used by main.ts (the real process) and usable in-process by tests/bench.
 *
 * Extension points for other components (policy):
 * - `plugins`: called after the store and upstream exist, before the socket opens;
 * - `setGate(gate)` (the gate also owns its part of status), `controls.register(...)`,
 *   `addStatusSection(fn)`.
 */
import { execFile } from "node:child_process";
import { readFileSync, unlinkSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { ErrorCodes, ensurePrivateDir, isLoopbackHost, systemStopHint } from "@loxmcp/common";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import type { ConfigCheck, DaemonConfig } from "./config.js";
import {
  type CallToolResult,
  ControlError,
  type ForwardCall,
  type PolicyUpstreamPort,
  type ToolGate,
  type Upstream,
  UpstreamError,
} from "./contracts.js";
import { PassThroughGate } from "./gate.js";
import { acquireInstance } from "./instance.js";
import type { SecretRegistry } from "./log.js";
import { type LogCursor, readLogSince, readLogTail } from "./log-read.js";
import { buildStatus, Controls, type StatusSection } from "./mux/control.js";
import { MuxServer } from "./mux/server.js";
import { type MuxCounters, newMuxCounters } from "./mux/session.js";
import { PageServer } from "./page/server.js";
import type { Database } from "./store/db.js";
import { Storage } from "./store/storage.js";
import { VERSION } from "./version.js";

export { VERSION };

export interface UpstreamFactoryContext {
  config: DaemonConfig;
  db: Database;
  logger: Logger;
  /** The password (string or async getter); getter results are registered as secrets. */
  password: string | (() => Promise<string>);
  /** The process's secrets registry: what the relay stores (tokens, client secret) goes in too. */
  secrets: SecretRegistry;
  /** A fetch to use (set only with --insecure-tls). */
  fetch?: typeof fetch;
  /** Pre-registered OAuth client (skips dynamic registration); set by the probe / conformance adapter. */
  clientInformation?: OAuthClientInformationMixed;
}

export type UpstreamFactory = (ctx: UpstreamFactoryContext) => Upstream;
export type DaemonPlugin = (daemon: Daemon) => void | Promise<void>;

export interface DaemonOptions {
  config: DaemonConfig;
  logger: Logger;
  createUpstream: UpstreamFactory;
  plugins?: DaemonPlugin[];
  /** The process's one secrets registry (the logger's): scrubbed from logs and client errors. */
  secrets: SecretRegistry;
  /** How long in-flight requests may take to finish on shutdown (default: config.shutdownGraceMs). */
  drainMs?: number;
  /** Called when a client asks for `loxmcp/shutdown` (main.ts exits after stop()). */
  onShutdownRequested?: () => void;
  /**
   * Checks the configuration again from its files (main.ts: `checkConfig()` over the environment
   * the daemon started with, .env, config.json). `loxmcp/relogin` uses it to pick up changed
   * credentials before logging in; without it, relogin uses the credentials read at start.
   */
  reloadConfig?: () => ConfigCheck;
}

/** Minimum time between two `loxmcp relogin` (unless --force). */
const RELOGIN_MIN_INTERVAL_MS = 30_000;

export type StartResult = { kind: "started" } | { kind: "already-running"; pid?: number };

export class Daemon {
  readonly config: DaemonConfig;
  readonly logger: Logger;
  readonly controls = new Controls();
  readonly counters: MuxCounters = newMuxCounters();
  readonly startedAt = Date.now();
  private db_: Database | undefined;
  private storage_: Storage | undefined;
  private upstream_: Upstream | undefined;
  private mux: MuxServer | undefined;
  private gate: ToolGate | undefined;
  private page: PageServer | undefined;
  private releaseLock: (() => void) | undefined;
  private readonly statusSections: StatusSection[] = [];
  private readonly stopHooks: Array<() => Promise<void> | void> = [];
  private stopping: Promise<void> | undefined;
  private lastRelogin = 0;
  private readonly secrets: SecretRegistry;

  constructor(private readonly opts: DaemonOptions) {
    this.config = opts.config;
    this.logger = opts.logger;
    this.secrets = opts.secrets;
  }

  get db(): Database {
    if (!this.db_) throw new Error("the daemon is not started");
    return this.db_;
  }

  /** The database with its health (disk full, corrupt file set aside, …). */
  get storage(): Storage {
    if (!this.storage_) throw new Error("the daemon is not started");
    return this.storage_;
  }

  get upstream(): Upstream {
    if (!this.upstream_) throw new Error("the daemon is not started");
    return this.upstream_;
  }

  /**
   * The policy's view of the upstream: it never gets the `Upstream` itself. Its own writes take
   * the mux's forward, the path of every client's tools/call.
   */
  get policyUpstream(): PolicyUpstreamPort {
    return policyUpstreamPort(this.upstream, (holder, signal) => (call, opts) => {
      if (!this.mux)
        return Promise.reject(
          new UpstreamError("UNAVAILABLE", "the daemon is not serving yet: nothing was sent"),
        );
      return this.mux.forwarder(holder, signal)(call, opts);
    });
  }

  setGate(gate: ToolGate): void {
    this.gate = gate;
  }

  /** Adds a component's own fields to `loxmcp/status` (fields no other part writes). */
  addStatusSection(section: StatusSection): void {
    this.statusSections.push(section);
  }

  /** Runs on stop after the socket and the upstream session are closed, before the DB closes (plugins: policy). */
  onStop(hook: () => Promise<void> | void): void {
    this.stopHooks.push(hook);
  }

  /** The `loxmcp/status` object. */
  status(): Record<string, unknown> {
    const up = this.upstream_;
    return buildStatus({
      version: VERSION,
      startedAt: this.startedAt,
      socket: this.config.paths.socket,
      home: this.config.home ?? this.config.paths.state,
      upstream: () =>
        up?.status() ?? {
          state: "starting",
          counters: { logins: 0, refreshes: 0, resolves: 0, reconnects: 0, requests: 0, errors: 0 },
        },
      clients: () => this.mux?.clients() ?? [],
      counters: () => {
        const q = this.mux?.upstreamQueue();
        return { ...this.counters, upstreamInUse: q?.inUse ?? 0, upstreamWaiting: q?.waiting ?? 0 };
      },
      gate: () => {
        try {
          const section = this.gate?.statusSection?.();
          if (section) return section;
        } catch {
          // a failing gate section must not break status: the configured mode is shown
        }
        return { policy: { mode: this.config.policy.mode }, pendingApprovals: [] };
      },
      sections: () => this.statusSections,
    });
  }

  async start(): Promise<StartResult> {
    const { config } = this;
    const paths = config.paths;
    ensurePrivateDir(paths.state);
    // hardened mode: the socket dir is 0750 so that the daemon's group (the person) reaches it
    ensurePrivateDir(paths.runtime, paths.system ? 0o750 : 0o700);

    let inst: Awaited<ReturnType<typeof acquireInstance>>;
    try {
      inst = await acquireInstance(paths);
    } catch (err) {
      removeOwnBrokenLock(paths.state, err);
      throw err;
    }
    if (inst.kind === "running") {
      return inst.pid === undefined
        ? { kind: "already-running" }
        : { kind: "already-running", pid: inst.pid };
    }
    this.releaseLock = inst.release;
    try {
      await this.startComponents();
    } catch (err) {
      await this.stop();
      throw err;
    }
    return { kind: "started" };
  }

  private async startComponents(): Promise<void> {
    const { config, logger } = this;
    const paths = config.paths;

    // A damaged file is set aside as loxmcp.db.corrupt-<time> and a fresh one created (logged).
    const storage = Storage.open(paths.db, { logger: logger.child({ component: "store" }) });
    this.storage_ = storage;
    this.db_ = storage.db;
    logger.info({ db: paths.db }, "database open");
    this.addStatusSection(() => ({ storage: storage.status() }));

    const ctx: UpstreamFactoryContext = {
      config,
      db: this.db_,
      logger: logger.child({ component: "relay" }),
      password: this.passwordSource(),
      secrets: this.secrets,
    };
    if (config.insecureTls) ctx.fetch = insecureLoopbackFetch(logger);
    const upstream = this.opts.createUpstream(ctx);
    this.upstream_ = upstream;
    upstream.on("state", (s) => {
      const fields = { state: s.state, reason: s.reason, entry: s.entry };
      if (s.state === "auth_failed" || s.state === "degraded") logger.warn(fields, `upstream ${s.state}`);
      else logger.debug(fields, `upstream ${s.state}`);
    });

    this.gate = new PassThroughGate(async (name) => {
      const list = await upstream.listTools();
      return list.tools.find((t) => t.name === name);
    });
    this.registerCoreControls();

    for (const plugin of this.opts.plugins ?? []) await plugin(this);

    // The person's local page (docs/page.md); its connections count against the socket's limits.
    const page = new PageServer({
      config: config.page,
      logger: logger.child({ component: "page" }),
      controls: this.controls,
      status: () => this.status(),
      admit: () => this.mux?.admitPageConnection(),
      connections: () => this.mux?.pageConnections ?? 0,
    });
    this.page = page;
    page.register(this.controls);
    this.addStatusSection(() => ({ page: page.status() }));

    this.mux = new MuxServer({
      socketPath: paths.socket,
      runtimeDir: paths.runtime,
      ...(paths.system
        ? { runtimeDirMode: 0o750, socketMode: 0o660, adminSocketPath: paths.system.adminSocket }
        : {}),
      logger,
      deps: {
        upstream,
        gate: () => this.gate!,
        control: this.controls,
        logger: logger.child({ component: "mux" }),
        counters: this.counters,
        scrub: (t) => this.secrets.scrub(t),
        initTimeoutMs: Math.min(config.requestTimeoutMs, 30_000),
        onRefused: (client, what, reason) => this.gate?.recordRefusal?.(client, what, reason),
      },
      limits: config.limits,
    });
    await this.mux.listen();
    await page.start();
    upstream.start();
    logger.info({ pid: process.pid, version: VERSION, socket: paths.socket }, "loxmcpd started");
    notifySystemd(logger);
  }

  private registerCoreControls(): void {
    this.controls.register("loxmcp/status", () => this.status());
    // Which daemon this is: hardened mode (the system daemon, its own user) or per-user.
    this.addStatusSection(() =>
      this.config.paths.system
        ? { mode: "system", systemUser: userName(), adminSocket: this.config.paths.system.adminSocket }
        : { mode: "user" },
    );
    // The log through the daemon: in hardened mode the person cannot read the file itself.
    this.controls.register("loxmcp/logs", (params) => {
      const c = params.cursor as Partial<LogCursor> | undefined;
      if (c && typeof c.ino === "number" && typeof c.pos === "number" && c.pos >= 0) {
        return readLogSince(this.config.paths.logFile, { ino: c.ino, pos: c.pos });
      }
      const n = typeof params.lines === "number" && params.lines >= 0 ? params.lines : 50;
      const min = typeof params.minLevel === "number" ? params.minLevel : 0;
      return readLogTail(this.config.paths.logFile, n, min);
    });
    this.controls.register("loxmcp/relogin", async (params, ctx) => {
      // The person fixed the password (`loxmcp init`, the password file or command, config.json)
      // and runs relogin, as every hint says: read the credentials again first. An invalid
      // configuration is refused here with every problem named: nothing changes.
      const fresh = this.rereadCredentials();
      // A full OAuth login costs the Miniserver and connect's rate budget: at most one per 30 s.
      const since = Date.now() - this.lastRelogin;
      if (since < RELOGIN_MIN_INTERVAL_MS && params.force !== true) {
        const wait = Math.ceil((RELOGIN_MIN_INTERVAL_MS - since) / 1000);
        throw new ControlError(
          ErrorCodes.InvalidRequest,
          `a relogin ran ${Math.round(since / 1000)} s ago; wait ${wait} s or use \`loxmcp relogin --force\``,
          { retryAfterSec: wait },
        );
      }
      this.lastRelogin = Date.now();
      const restartNeeded = fresh ? this.applyCredentials(fresh) : [];
      this.logger.info({ by: ctx.client.name, force: params.force === true }, "relogin requested");
      await this.upstream.relogin();
      const st = this.status();
      if (fresh) st.credentials = { reread: true, passwordSource: this.config.passwordSource };
      if (restartNeeded.length > 0) st.restartNeeded = restartNeeded;
      return st;
    });
    this.controls.register("loxmcp/shutdown", (_params, ctx) => {
      // The system daemon is stopped by its service manager (root), not by whoever can reach the
      // socket: in hardened mode that includes every agent running as the person.
      const system = this.config.paths.system;
      if (system && ctx.client.admin !== true) {
        throw new ControlError(
          ErrorCodes.InvalidRequest,
          `the system daemon (hardened mode) is stopped by root: ${systemStopHint(system.platform)}`,
          { reason: "root-required" },
        );
      }
      this.logger.info({ by: ctx.client.name }, "shutdown requested over the socket");
      setImmediate(() => {
        if (this.opts.onShutdownRequested) this.opts.onShutdownRequested();
        else void this.stop();
      });
      return { ok: true, pid: process.pid };
    });
  }

  /**
   * The password as the upstream asks for it at each login: whatever `this.config.password` is
   * THEN (relogin may have re-read it), a string or the password command.
   */
  private passwordSource(): () => Promise<string> {
    if (typeof this.config.password === "string") this.secrets.add(this.config.password);
    return async () => {
      const pw = this.config.password;
      const v = typeof pw === "string" ? pw : await pw();
      this.secrets.add(v);
      return v;
    };
  }

  /** The configuration read again (undefined without `reloadConfig`); throws when it is invalid. */
  private rereadCredentials(): DaemonConfig | undefined {
    const reload = this.opts.reloadConfig;
    if (!reload) return undefined;
    const r = reload();
    if (r.config) return r.config;
    const [first, ...rest] = r.problems;
    const more = rest.length > 0 ? ` (and ${rest.length} more: ${rest.map((p) => p.key).join(", ")})` : "";
    this.logger.warn({ problems: r.problems }, "relogin refused: the configuration is invalid");
    throw new ControlError(
      ErrorCodes.InvalidParams,
      `the configuration is invalid, nothing was changed and no login was tried: ${this.secrets.scrub(first?.message ?? "invalid")}${more}; fix it (\`loxmcp doctor\` lists every problem), then run \`loxmcp relogin\` again`,
      { problems: r.problems.map((p) => ({ ...p, message: this.secrets.scrub(p.message) })) },
    );
  }

  /**
   * Takes the credential part of a re-read configuration (user, password and where it comes
   * from); returns the settings that changed but need a restart (which Miniserver, which relay).
   */
  private applyCredentials(fresh: DaemonConfig): string[] {
    const cfg = this.config;
    const changed =
      cfg.user !== fresh.user ||
      cfg.passwordSource !== fresh.passwordSource ||
      cfg.password !== fresh.password;
    cfg.user = fresh.user;
    cfg.password = fresh.password;
    cfg.passwordSource = fresh.passwordSource;
    if (typeof fresh.password === "string") this.secrets.add(fresh.password);
    const restart: string[] = [];
    if (fresh.serial !== cfg.serial) restart.push("LOXONE_SERIAL");
    if (fresh.connectUrl !== cfg.connectUrl) restart.push("LOXONE_CONNECT_URL");
    if (fresh.upstreamUrl !== cfg.upstreamUrl) restart.push("LOXMCP_UPSTREAM_URL");
    this.logger.info(
      { passwordSource: fresh.passwordSource, changed, restartNeeded: restart },
      changed ? "relogin: credentials re-read; they changed" : "relogin: credentials re-read; unchanged",
    );
    for (const w of fresh.warnings) this.logger.warn(w);
    return restart;
  }

  /**
   * Graceful stop: stop accepting, let in-flight requests finish (deadline), answer the rest
   * with an error, close the upstream session and the DB, remove socket and lock. Idempotent.
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const log = this.logger;
    log.info("stopping");
    await this.page?.stop();
    if (this.mux) {
      this.mux.stopAccepting();
      const left = await this.mux.drain(this.opts.drainMs ?? this.config.shutdownGraceMs);
      if (left > 0)
        log.warn({ inFlight: left }, "shutdown deadline passed: answering the rest with an error");
      await this.mux.close();
    }
    if (this.upstream_) {
      try {
        await withTimeout(this.upstream_.stop(), 5_000);
      } catch (err) {
        log.warn({ err }, "upstream did not stop cleanly");
      }
    }
    for (const hook of this.stopHooks) {
      try {
        await withTimeout(Promise.resolve(hook()), 5_000);
      } catch (err) {
        log.warn({ err }, "a component did not stop cleanly");
      }
    }
    if (this.storage_) {
      try {
        this.storage_.close();
      } catch (err) {
        log.warn({ err }, "database close failed");
      }
    }
    this.releaseLock?.();
    log.info("stopped");
  }

  /**
   * For a process that must exit NOW (uncaught exception): removes the single-instance lock so
   * that the next start does not have to find it stale. Synchronous; safe to call twice.
   */
  releaseNow(): void {
    try {
      this.releaseLock?.();
    } catch {
      // exiting anyway
    }
  }
}

/**
 * The policy's port onto an upstream (contracts.ts): the tool list, the state and its events,
 * reads; its own writes go through `forward` (the daemon's: MuxServer.forwarder).
 */
export function policyUpstreamPort(
  upstream: Upstream,
  forward: (holder: string, signal: AbortSignal) => ForwardCall,
): PolicyUpstreamPort {
  return {
    listTools: () => upstream.listTools(),
    status: () => {
      const { state, reason } = upstream.status();
      return reason === undefined ? { state } : { state, reason };
    },
    subscribe: ({ state, toolsChanged }) => {
      upstream.on("state", state);
      upstream.on("toolsChanged", toolsChanged);
      return () => {
        upstream.off("state", state);
        upstream.off("toolsChanged", toolsChanged);
      };
    },
    read: async (call, opts) =>
      (await upstream.request(
        "tools/call",
        { name: call.name, arguments: call.arguments ?? {} },
        { retryable: opts.retryable, signal: opts.signal },
      )) as CallToolResult,
    forward,
  };
}

/**
 * The lock file is created empty (O_EXCL) and then gets our pid: when that write fails (disk
 * full, I/O error) the start fails, and the empty file is ours. Remove it, so that an exit for
 * want of space leaves no lock behind.
 */
function removeOwnBrokenLock(stateDir: string, err: unknown): void {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== "ENOSPC" && code !== "EDQUOT" && code !== "EIO") return;
  const lock = join(stateDir, "daemon.lock");
  try {
    const content = readFileSync(lock, "utf8").trim();
    if (content === "" || content === String(process.pid)) unlinkSync(lock);
  } catch {
    // not there
  }
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "?");
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * --insecure-tls: certificate checks are off for this process, so every request is first
 * checked to go to a loopback host (the local simulator), and anything else is refused.
 */
function insecureLoopbackFetch(logger: Logger): typeof fetch {
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  logger.warn(
    "--insecure-tls: TLS certificate verification is OFF (loopback simulator only); never use this with a real Miniserver",
  );
  const f: typeof fetch = (input, init) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    if (!isLoopbackHost(url.hostname)) {
      return Promise.reject(new Error(`--insecure-tls refuses to talk to non-loopback host ${url.hostname}`));
    }
    return fetch(input, init);
  };
  return f;
}

/** Tells systemd we are ready when NOTIFY_SOCKET is set (needs NotifyAccess=all: it runs systemd-notify). */
function notifySystemd(logger: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile("systemd-notify", ["--ready", `--pid=${process.pid}`], (err) => {
    if (err) logger.debug({ err: err.message }, "systemd-notify failed (readiness not signalled)");
  });
}
