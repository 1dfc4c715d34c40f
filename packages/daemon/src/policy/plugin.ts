/**
 * Wires the policy into the daemon controller: replaces the pass-through gate (the gate then
 * owns its part of loxmcp/status), registers the loxmcp/approve, stop-all, resume, audit and
 * structure control methods, and stops with the daemon.
 */
import type { Daemon } from "../daemon.js";
import { createPolicyGate } from "./gate.js";
import { policyConfigFromSection } from "./settings.js";

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
  daemon.onStop(() => gate.stop());
  gate.start();
}
