/**
 * Starts the Loxone-like simulator in the test process (from `@loxmcp/simulator`) and builds
 * the environment a daemon needs to talk to it.
 */

import * as simulatorPackage from "@loxmcp/simulator";
import type { Simulator, SimulatorOptions } from "../packages/simulator/src/types.js";

type StartSimulator = (opts?: SimulatorOptions) => Promise<Simulator>;

function startFn(): StartSimulator {
  const fn = (simulatorPackage as unknown as { startSimulator?: StartSimulator }).startSimulator;
  if (typeof fn !== "function") {
    throw new Error("@loxmcp/simulator does not export startSimulator yet: build it with `pnpm exec tsc -b`");
  }
  return fn;
}

export interface SimHandle {
  sim: Simulator;
  /**
   * Environment for a daemon using this simulator: LOXONE_SERIAL, LOXONE_USER,
   * LOXONE_PASSWORD, LOXONE_CONNECT_URL, LOXMCP_HOME (+ `extra`, which wins).
   */
  env(home: string, extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

/** Starts a simulator on free ports. Always `stop()` it in afterEach/afterAll. */
export async function withSimulator(opts: SimulatorOptions = {}): Promise<SimHandle> {
  const sim = await startFn()({ port: 0, ...opts });
  return {
    sim,
    env: (home, extra = {}) => simulatorEnv(sim, home, extra),
    stop: () => sim.stop(),
  };
}

export function simulatorEnv(
  sim: Pick<Simulator, "serial" | "user" | "password" | "connectUrl">,
  home: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    LOXONE_SERIAL: sim.serial,
    LOXONE_USER: sim.user,
    LOXONE_PASSWORD: sim.password,
    LOXONE_CONNECT_URL: sim.connectUrl,
    LOXMCP_HOME: home,
    ...extra,
  };
}
