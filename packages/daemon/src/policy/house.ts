/**
 * The house model: what the policy knows of the Miniserver — the trusted tool catalogue (its
 * tools/list as the person accepted it, ToolTrust), the structure snapshot (controls with their
 * room, type and commands) and the states the Miniserver last reported. Loaded from the database,
 * re-read in the background (upstream ready, tool list changed, periodically) and on demand,
 * one read at a time. Writes are checked against it (engine.ts).
 */
import type { Logger } from "pino";
import type { CallToolResult, PolicyUpstreamPort } from "../contracts.js";
import type { SnapshotStore } from "../store/snapshots.js";
import { buildCatalog, type ToolCatalog } from "./classify.js";
import {
  type CallTool,
  extractControls,
  fetchStructure,
  resultPayloads,
  structureHash,
} from "./structure.js";
import { describeChange, type ToolTrust } from "./tooltrust.js";
import { PolicyDenied, type Snapshot, type SnapshotControl } from "./types.js";
import { isUuid, resolveControl } from "./validate.js";

/** An unknown but well-formed uuid re-reads the structure at most this often. */
const ON_DEMAND_REFRESH_MS = 30_000;

export interface HouseModelDeps {
  upstream: PolicyUpstreamPort;
  snapshots: SnapshotStore;
  trust: ToolTrust;
  log: Logger;
  now: () => number;
  /** How often the structure is checked in the background. */
  refreshMs: number;
  /** Writes are refused when the snapshot was last confirmed longer ago than this. */
  maxAgeMs: number;
  /** The signal of the calls the policy makes itself (aborted when it stops). */
  signal: () => AbortSignal;
  /** The policy has stopped: no background reads are started. */
  stopped: () => boolean;
}

/** What status and `loxmcp structure` show of a snapshot. */
export interface SnapshotMeta {
  id: number;
  hash: string;
  controls: number;
  createdAt: number;
  checkedAt: number;
}

export function snapshotMeta(s: Snapshot): SnapshotMeta {
  return {
    id: s.id,
    hash: s.hash,
    controls: s.controls.length,
    createdAt: s.createdAt,
    checkedAt: s.checkedAt,
  };
}

export interface StructureStatus {
  structure: SnapshotMeta | null;
  structureError?: string;
}

export class HouseModel {
  private catalog_: ToolCatalog | undefined;
  /** Names the Miniserver's tools/list offered when the catalogue was built (new tools included). */
  private offered_: string[] = [];
  private snapshot_: Snapshot | undefined;
  private controls = new Map<string, SnapshotControl>();
  private states = new Map<string, Record<string, unknown>>();
  private refreshing: Promise<{ snapshot: Snapshot; changed: boolean }> | undefined;
  private lastOnDemandRefresh = 0;
  /** Digest of the tool changes last logged (so a change is logged once, not on every list). */
  private loggedToolChanges = "";
  private structureError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  private readonly onState = (s: { state: string }) => {
    if (s.state === "ready" && !this.deps.stopped()) this.backgroundRefresh("upstream ready");
  };

  private readonly onToolsChanged = () => {
    this.catalog_ = undefined;
    if (this.deps.stopped() || this.deps.upstream.status().state !== "ready") return;
    // A refresh already running read the old list (single flight would hand back its result):
    // review the new list after it, or a change right after `tools accept` goes unnoticed.
    const running = this.refreshing;
    if (!running) this.backgroundRefresh("tools changed");
    else
      void running
        .catch(() => {})
        .then(() => {
          if (!this.deps.stopped()) this.backgroundRefresh("tools changed");
        });
  };

  constructor(private readonly deps: HouseModelDeps) {
    try {
      const last = deps.snapshots.latest();
      if (last) this.useSnapshot(last);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, "the last structure snapshot could not be read");
    }
  }

  /** Follows the upstream and checks the structure periodically (and now, when it is ready). */
  start(): void {
    const { upstream } = this.deps;
    this.unsubscribe?.();
    this.unsubscribe = upstream.subscribe({ state: this.onState, toolsChanged: this.onToolsChanged });
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (upstream.status().state === "ready") this.backgroundRefresh("periodic", true);
    }, this.deps.refreshMs);
    this.timer.unref();
    if (upstream.status().state === "ready") this.backgroundRefresh("start");
  }

  /** Stops following the upstream; waits for a structure read under way. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.refreshing?.catch(() => {});
  }

  get snapshot(): Snapshot | undefined {
    return this.snapshot_;
  }

  /** The catalogue built from the last tools/list (undefined until one was read). */
  get catalog(): ToolCatalog | undefined {
    return this.catalog_;
  }

  /** The tool names the Miniserver offered when the catalogue was built. */
  get offered(): readonly string[] {
    return this.offered_;
  }

  /** The next `getCatalog` reads the Miniserver's tools/list again. */
  forgetCatalog(): void {
    this.catalog_ = undefined;
  }

  /** The trusted catalogue (tools changed since the person accepted the list are held back). */
  async getCatalog(): Promise<ToolCatalog> {
    if (this.catalog_) return this.catalog_;
    const { trust, log } = this.deps;
    const list = await this.deps.upstream.listTools();
    const review = trust.review(list.tools);
    if (review.recordedFirst) {
      log.info({ tools: list.tools.length }, "first tool catalogue recorded as trusted");
    }
    const digest = review.changes.length > 0 ? trust.digest() : "";
    if (digest !== this.loggedToolChanges) {
      this.loggedToolChanges = digest;
      if (digest)
        log.warn(
          { changes: review.changes.map(describeChange) },
          "the Miniserver's tool catalogue changed: new or changed tools are held until the person reviews them (`loxmcp tools diff`, then `loxmcp tools accept`)",
        );
    }
    this.offered_ = list.tools
      .map((t) => t.name)
      .filter((n): n is string => typeof n === "string" && n !== "");
    this.catalog_ = buildCatalog(review.effective);
    return this.catalog_;
  }

  private readonly read: CallTool = (name, args) =>
    this.deps.upstream.read(
      { name, arguments: args },
      { retryable: this.catalog_?.tools.get(name)?.readOnlyHint === true, signal: this.deps.signal() },
    );

  backgroundRefresh(why: string, quick = false): void {
    this.refreshStructure({ quick }).then(
      ({ snapshot, changed }) =>
        this.deps.log.info({ why, controls: snapshot.controls.length, changed }, "house structure checked"),
      (err) => this.deps.log.warn({ why, err: (err as Error).message }, "house structure refresh failed"),
    );
  }

  /**
   * Re-reads the structure (single flight). `quick` (the periodic check) describes only controls
   * that are new or changed type; start, reconnects, tools/list changes and `loxmcp structure
   * refresh` describe everything.
   */
  refreshStructure(opts: { quick?: boolean } = {}): Promise<{ snapshot: Snapshot; changed: boolean }> {
    if (this.refreshing) return this.refreshing;
    const run = async () => {
      try {
        this.catalog_ = undefined;
        const catalog = await this.getCatalog();
        const fetched = await fetchStructure(catalog, this.read, 4, opts.quick ? this.controls : undefined);
        const { snapshot, changed } = this.deps.snapshots.save(
          structureHash(fetched.controls),
          fetched.controls,
          this.deps.now(),
        );
        this.useSnapshot(snapshot);
        for (const [k, v] of fetched.states) this.states.set(k, v);
        this.structureError = undefined;
        return { snapshot, changed };
      } catch (err) {
        this.structureError = (err as Error).message;
        throw err;
      }
    };
    this.refreshing = run().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The snapshot writes are checked against; refreshed once if missing or too old. */
  async currentSnapshot(): Promise<Snapshot> {
    const fresh = (s: Snapshot | undefined) =>
      s !== undefined && this.deps.now() - s.checkedAt <= this.deps.maxAgeMs;
    if (!fresh(this.snapshot_)) {
      try {
        await this.refreshStructure();
      } catch (err) {
        throw new PolicyDenied(
          "NO_STRUCTURE",
          `the house structure is not known (${(err as Error).message}), so no command is sent; try again once \`loxmcp status\` is ready`,
        );
      }
    }
    const s = this.snapshot_;
    if (!s || !fresh(s)) {
      throw new PolicyDenied(
        "NO_STRUCTURE",
        "the house structure is not known or out of date, so no command is sent",
      );
    }
    return s;
  }

  /**
   * Looks the uuid up in the snapshot. A well-formed uuid that is not there may be a control
   * added since the last refresh: re-read the structure once (at most every 30 s) and look again.
   */
  async resolveTarget(uuid: string): Promise<SnapshotControl> {
    try {
      return resolveControl(uuid, this.controls).control;
    } catch (err) {
      const now = this.deps.now();
      if (
        !(err instanceof PolicyDenied) ||
        !isUuid(uuid) ||
        now - this.lastOnDemandRefresh < ON_DEMAND_REFRESH_MS
      )
        throw err;
      this.lastOnDemandRefresh = now;
      try {
        await this.refreshStructure();
      } catch {
        throw err;
      }
      return resolveControl(uuid, this.controls).control;
    }
  }

  /** Keeps the last state the Miniserver reported for a control (volume jumps are judged against it). */
  rememberStates(res: CallToolResult, uuid: string): void {
    const mine = resultPayloads(res)
      .flatMap((p) => extractControls(p))
      .find((c) => c.uuid.toLowerCase() === uuid.toLowerCase() && c.states);
    if (mine?.states) {
      this.states.set(uuid.toLowerCase(), mine.states);
      return;
    }
    for (const p of resultPayloads(res)) {
      if (p && typeof p === "object" && !Array.isArray(p)) {
        const st = (p as Record<string, unknown>).states;
        if (st && typeof st === "object" && !Array.isArray(st))
          this.states.set(uuid.toLowerCase(), st as Record<string, unknown>);
      }
    }
  }

  /** The states the Miniserver last reported for a control. */
  statesOf(control: SnapshotControl): Record<string, unknown> | undefined {
    return this.states.get(control.uuid.toLowerCase());
  }

  currentVolume(control: SnapshotControl): number | undefined {
    const v = this.statesOf(control)?.volume;
    return typeof v === "number" ? v : undefined;
  }

  /** For loxmcp/status. */
  status(): StructureStatus {
    const out: StructureStatus = { structure: this.snapshot_ ? snapshotMeta(this.snapshot_) : null };
    if (this.structureError) out.structureError = this.structureError;
    return out;
  }

  private useSnapshot(s: Snapshot): void {
    this.snapshot_ = s;
    this.controls = new Map(s.controls.map((c) => [c.uuid.toLowerCase(), c]));
  }
}
