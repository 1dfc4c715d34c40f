import { randomBytes } from "node:crypto";
import { House } from "./house.js";
import { sortKeys, stableJson } from "./http.js";
import type { ExecutionRecord, Faults, SimulatorStats, ToolKey } from "./types.js";

export interface ResolvedOptions {
  serial: string;
  user: string;
  password: string;
  accessTtl: number;
  refreshTtl: number;
  relays: number;
  connectRateLimit: number;
  toolNames: Record<ToolKey, string>;
  sessionTtl: number | undefined;
  annotations: boolean;
  /** Unreachable Loxone-style URL advertised as protected-resource `resource` (audience only). */
  resource: string;
}

export interface OAuthClient {
  clientId: string;
  clientSecret: string | undefined;
  redirectUris: string[];
  clientName: string | undefined;
}

export interface AuthRequest {
  id: string;
  clientId: string;
  redirectUri: string;
  state: string | undefined;
  codeChallenge: string;
  scope: string | undefined;
  resource: string | undefined;
}

export interface AuthCode {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string | undefined;
  resource: string | undefined;
  expiresAt: number;
}

export interface TokenRecord {
  clientId: string;
  scope: string | undefined;
  resource: string | undefined;
  expiresAt: number;
}

export interface LoginSession {
  csrf: string;
  authRequestId: string;
}

export function randomId(bytes = 24): string {
  return randomBytes(bytes).toString("base64url");
}

/** Shared Miniserver state behind all relays: house, OAuth tables, counters, faults, execution log. */
export class Miniserver {
  readonly house = new House();
  readonly clients = new Map<string, OAuthClient>();
  readonly authRequests = new Map<string, AuthRequest>();
  readonly loginSessions = new Map<string, LoginSession>();
  readonly codes = new Map<string, AuthCode>();
  readonly accessTokens = new Map<string, TokenRecord>();
  readonly refreshTokens = new Map<string, TokenRecord>();
  faults: Required<Faults> = { latencyMs: 0, dropAfterExecute: 0, httpErrors: 0, httpErrorStatus: 503 };
  counters = freshCounters();
  private executions = new Map<string, ExecutionRecord>();
  readonly startedAt = Date.now();

  constructor(readonly opts: ResolvedOptions) {}

  setFaults(f: Faults): void {
    this.faults = {
      latencyMs: f.latencyMs ?? this.faults.latencyMs,
      dropAfterExecute: f.dropAfterExecute ?? this.faults.dropAfterExecute,
      httpErrors: f.httpErrors ?? this.faults.httpErrors,
      httpErrorStatus: f.httpErrorStatus ?? this.faults.httpErrorStatus,
    };
  }

  recordExecution(tool: string, args: unknown): void {
    const key = `${tool}\u0000${stableJson(args ?? {})}`;
    const rec = this.executions.get(key);
    if (rec) rec.count += 1;
    else this.executions.set(key, { tool, arguments: sortKeys(args ?? {}), count: 1 });
  }

  stats(): SimulatorStats {
    return {
      ...this.counters,
      executions: [...this.executions.values()].map((e) => ({ ...e })),
    };
  }

  resetStats(): void {
    this.counters = freshCounters();
    this.executions = new Map();
  }

  issueTokens(
    clientId: string,
    scope: string | undefined,
    resource: string | undefined,
  ): {
    access_token: string;
    token_type: "Bearer";
    expires_in: number;
    refresh_token: string;
    scope?: string;
  } {
    const now = Date.now();
    const access = `lxa_${randomId()}`;
    const refresh = `lxr_${randomId()}`;
    this.accessTokens.set(access, { clientId, scope, resource, expiresAt: now + this.opts.accessTtl * 1000 });
    this.refreshTokens.set(refresh, {
      clientId,
      scope,
      resource,
      expiresAt: now + this.opts.refreshTtl * 1000,
    });
    return {
      access_token: access,
      token_type: "Bearer",
      expires_in: this.opts.accessTtl,
      refresh_token: refresh,
      ...(scope ? { scope } : {}),
    };
  }

  /** "ok", "expired" or "unknown". */
  checkAccessToken(token: string): "ok" | "expired" | "unknown" {
    const rec = this.accessTokens.get(token);
    if (!rec) return "unknown";
    return rec.expiresAt > Date.now() ? "ok" : "expired";
  }

  revokeTokens(): void {
    this.accessTokens.clear();
    this.refreshTokens.clear();
    this.codes.clear();
  }

  expireAccessTokens(): void {
    const now = Date.now();
    for (const rec of this.accessTokens.values()) rec.expiresAt = Math.min(rec.expiresAt, now - 1);
  }
}

function freshCounters() {
  return {
    connectRequests: 0,
    logins: 0,
    failedLogins: 0,
    refreshes: 0,
    registrations: 0,
    sessions: 0,
    mcpRequests: 0,
  };
}
