/**
 * The default ToolGate: forwards every call unchanged. A call is retryable (may be resent after
 * the upstream recovers) only when the upstream marks the tool `annotations.readOnlyHint: true`;
 * everything else counts as a write and is never resent once it may have reached the server.
 * The policy engine replaces this gate with one that decides.
 */
import type { CallContext, CallToolParams, CallToolResult, ForwardCall, ToolGate } from "./contracts.js";

export type ToolLookup = (name: string) => Promise<Record<string, unknown> | undefined>;

export class PassThroughGate implements ToolGate {
  constructor(private readonly lookupTool: ToolLookup) {}

  extraTools(): Array<Record<string, unknown>> {
    return [];
  }

  async callTool(call: CallToolParams, _ctx: CallContext, forward: ForwardCall): Promise<CallToolResult> {
    const tool = await this.lookupTool(call.name);
    return forward(call, { retryable: isReadOnlyTool(tool) });
  }
}

/** True only when the tool declares `annotations.readOnlyHint === true`. */
export function isReadOnlyTool(tool: Record<string, unknown> | undefined): boolean {
  const ann = tool?.annotations;
  return typeof ann === "object" && ann !== null && (ann as Record<string, unknown>).readOnlyHint === true;
}
