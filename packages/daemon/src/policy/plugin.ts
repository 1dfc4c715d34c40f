/**
 * Wires the policy into the daemon controller: replaces the pass-through gate, registers the
 * loxmcp/approve, stop-all, resume, audit and structure control methods, adds the policy's
 * fields to loxmcp/status, and stops with the daemon.
 */
import type { Daemon } from "../daemon.js";
import { createPolicyGate } from "./gate.js";
import { policyConfigFromSection } from "./settings.js";
import { describeChange } from "./tooltrust.js";

export function policyPlugin(daemon: Daemon): void {
  const gate = createPolicyGate({
    upstream: daemon.policyUpstream,
    db: daemon.db,
    logger: daemon.logger,
    config: policyConfigFromSection(daemon.config.policy),
    hardened: daemon.config.paths.system !== undefined,
  });
  daemon.setGate(gate);
  gate.register(daemon.controls);
  daemon.addStatusExtension(() => {
    const s = gate.status();
    const policy: Record<string, unknown> = { mode: s.mode };
    if (Object.keys(s.clients).length > 0) policy.clients = s.clients;
    if (s.emergencyStop) policy.emergencyStop = s.emergencyStop;
    if (s.structure) policy.structure = s.structure;
    if (s.structureError) policy.structureError = s.structureError;
    policy.pin = s.pin;
    if (s.toolChanges.length > 0) policy.toolChanges = s.toolChanges.map(describeChange);
    return {
      policy,
      // Codes are not shown here (status is for anyone at the socket): `loxmcp approve --list`.
      pendingApprovals: s.pendingApprovals.map((p) => ({
        client: p.client,
        tool: p.tool,
        summary: p.summary,
        approved: p.approved,
        expiresInSec: Math.max(0, Math.round((p.expiresAt - Date.now()) / 1000)),
      })),
    };
  });
  daemon.onStop(() => gate.stop());
  gate.start();
}
