/**
 * The controller: wires config → logger → store → upstream → gate → mux, and starts/stops
 * them in order. Used by main.ts (the real process) and usable in-process by tests/bench.
 * The daemon's own control methods are in core-controls.ts, the policy's port onto the upstream
 * in policy-port.ts, what it asks of the OS (lock, TLS switch, systemd) in daemon-os.ts.
 *
 * Extension points for other components (policy):
 * - `plugins`: called after the store and upstream exist, before the socket opens;
 * - `setGate(gate)` (the gate also owns its part of status), `controls.register(...)`,
 *   `addStatusSection(fn)`.
 */
import { ensurePrivateDir, withTimeout } from "@loxmcp/common";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import type { ConfigCheck, DaemonConfig } from "./config.js";
import { type PolicyUpstreamPort, type ToolGate, type Upstream, UpstreamError } from "./contracts.js";
import { registerCoreControls } from "./core-controls.js";
import { insecureLoopbackFetch, notifySystemd, removeOwnBrokenLock } from "./daemon-os.js";
import { PassThroughGate } from "./gate.js";
import { acquireInstance } from "./instance.js";
import type { SecretRegistry } from "./log.js";
import { buildStatus, Controls, type StatusSection } from "./mux/control.js";
import { MuxServer } from "./mux/server.js";
import { type MuxCounters, newMuxCounters } from "./mux/session.js";
import { PageServer } from "./page/server.js";
import { policyUpstreamPort } from "./policy-port.js";
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
  /** Fly OAuth in a child process: the daemon's entry script and database file (DaemonOptions.oauthHelperEntry). */
  oauthChild?: { entry: string; dbPath: string };
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
  /**
   * The daemon's entry script, which runs one OAuth flight when started with `--oauth-helper`
   * (main.ts). Set: logins and refreshes run in a short-lived child process, not in the daemon.
   */
  oauthHelperEntry?: string;
  /** Called when a client asks for `loxmcp/shutdown` (main.ts exits after stop()). */
  onShutdownRequested?: () => void;
  /**
   * Checks the configuration again from its files (main.ts: `checkConfig()` over the environment
   * the daemon started with, .env, config.json). `loxmcp/relogin` uses it to pick up changed
   * credentials before logging in; without it, relogin uses the credentials read at start.
   */
  reloadConfig?: () => ConfigCheck;
}

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
    else if (this.opts.oauthHelperEntry)
      ctx.oauthChild = { entry: this.opts.oauthHelperEntry, dbPath: paths.db };
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
    registerCoreControls(this.controls, {
      config,
      logger,
      secrets: this.secrets,
      upstream,
      status: () => this.status(),
      addStatusSection: (section) => this.addStatusSection(section),
      reloadConfig: this.opts.reloadConfig,
      shutdown: () => {
        if (this.opts.onShutdownRequested) this.opts.onShutdownRequested();
        else void this.stop();
      },
    });

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
        await withTimeout(this.upstream_.stop(), 5_000, () => {
          throw new Error("timed out after 5000 ms");
        });
      } catch (err) {
        log.warn({ err }, "upstream did not stop cleanly");
      }
    }
    for (const hook of this.stopHooks) {
      try {
        await withTimeout(Promise.resolve(hook()), 5_000, () => {
          throw new Error("timed out after 5000 ms");
        });
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
