/**
 * The safety policy: decides every tools/call (gate.ts, engine.ts) against the house model (house.ts),
 * with the emergency stop (estop.ts), the audit (audit-log.ts), confirmation by a person
 * (confirm.ts, person.ts) and the person's control methods (controls.ts). It sees the upstream
 * only through `PolicyUpstreamPort` (contracts.ts). This module only re-exports.
 */
export { parseSince } from "./controls.js";
export { EMERGENCY_STOP_TOOL, type EmergencyStopState, type StopReport } from "./estop.js";
export { createPolicyGate, type PolicyGate, type PolicyGateDeps, type PolicyStatus } from "./gate.js";
export { resultText } from "./results.js";
export { type PolicyConfigInput, resolvePolicyConfig } from "./settings.js";
export { DEFAULT_POLICY_CONFIG, POLICY_MODES, type PolicyConfig, type PolicyMode } from "./types.js";
