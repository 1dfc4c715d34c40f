export { loxoneUuid } from "./house.js";
export { SimulatorOptionsError, startSimulator } from "./simulator.js";
export type * from "./types.js";
