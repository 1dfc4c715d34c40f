/**
 * Starts the Loxone-like simulator in the test process (from `@loxmcp/simulator`) and builds
 * the environment a daemon needs to talk to it.
 */
import { type Simulator, type SimulatorOptions, startSimulator } from "@loxmcp/simulator";

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
  const sim = await startSimulator({ port: 0, ...opts });
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
