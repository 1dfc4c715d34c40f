/** A caller asked for something the simulator cannot do (bad option, unknown relay, bad tool change); admin routes answer 400. */
export class SimulatorOptionsError extends Error {
  readonly code = "SIM_BAD_OPTIONS";
}
