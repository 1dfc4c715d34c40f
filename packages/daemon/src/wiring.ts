/**
 * Builds the real upstream (relay/) for the controller. Kept apart from main.ts so tests and
 * bench can build a Daemon with the same wiring in-process.
 */
import type { Upstream } from "./contracts.js";
import type { UpstreamFactoryContext } from "./daemon.js";

export function createUpstreamSession(_ctx: UpstreamFactoryContext): Upstream {
  // Replaced by the relay's UpstreamSession as soon as relay/upstream.ts lands.
  throw new Error("relay/upstream.ts is not wired yet");
}
