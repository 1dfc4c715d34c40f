/**
 * The tool catalogue the person trusts: one row per upstream tool with its fingerprint (name,
 * input schema, annotations) and the definition as accepted. The first catalogue the daemon sees
 * is recorded as trusted; later changes wait for `loxmcp tools accept`.
 */
import type Database from "better-sqlite3";
import { guardRead, guardWrite } from "./health.js";

export const TOOLS_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS trusted_tools (
  name        TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  tool_json   TEXT NOT NULL,
  accepted_at INTEGER NOT NULL
);
`;

export interface TrustedTool {
  name: string;
  fingerprint: string;
  tool: Record<string, unknown>;
  acceptedAt: number;
}

interface Row {
  name: string;
  fingerprint: string;
  tool_json: string;
  accepted_at: number;
}

export class TrustedToolStore {
  constructor(private readonly db: Database.Database) {}

  all(): Map<string, TrustedTool> {
    const rows = guardRead(
      this.db,
      "trusted tools",
      () =>
        this.db.prepare("SELECT name, fingerprint, tool_json, accepted_at FROM trusted_tools").all() as Row[],
    );
    return new Map(
      rows.map((r) => [
        r.name,
        {
          name: r.name,
          fingerprint: r.fingerprint,
          tool: JSON.parse(r.tool_json) as Record<string, unknown>,
          acceptedAt: r.accepted_at,
        },
      ]),
    );
  }

  /** Replaces the whole trusted catalogue in one transaction. */
  replace(
    tools: Array<{ name: string; fingerprint: string; tool: Record<string, unknown> }>,
    now: number,
  ): void {
    guardWrite(this.db, "trusted tools", () => {
      const del = this.db.prepare("DELETE FROM trusted_tools");
      const ins = this.db.prepare(
        "INSERT INTO trusted_tools (name, fingerprint, tool_json, accepted_at) VALUES (?, ?, ?, ?)",
      );
      this.db.transaction(() => {
        del.run();
        for (const t of tools) ins.run(t.name, t.fingerprint, JSON.stringify(t.tool), now);
      })();
    });
  }
}
