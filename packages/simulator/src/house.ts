import { createHash } from "node:crypto";
import type { HouseControl, HouseSnapshot } from "./types.js";

/** One accepted command pattern; `{n}` takes a number within [min, max]. */
interface CommandSpec {
  pattern: string;
  min?: number;
  max?: number;
}

type StateValue = number | string | boolean;
type States = Record<string, StateValue>;

interface TypeSpec {
  commands: CommandSpec[];
  initial: () => States;
  apply: (states: States, verb: string, n: number | undefined) => void;
}

const pct = (min = 0, max = 100) => ({ min, max });

/** Control types modelled after the Loxone structure file (subset of states, real command names). */
const TYPES: Record<string, TypeSpec> = {
  LightControllerV2: {
    commands: [{ pattern: "changeTo/{n}", ...pct(0, 778) }, { pattern: "on" }, { pattern: "off" }],
    initial: () => ({ activeMoodId: 778, on: false }),
    apply: (s, verb, n) => {
      if (verb === "on") Object.assign(s, { activeMoodId: 99, on: true });
      else if (verb === "off") Object.assign(s, { activeMoodId: 778, on: false });
      else if (verb === "changeTo") Object.assign(s, { activeMoodId: n ?? 778, on: n !== 778 });
    },
  },
  Switch: {
    commands: [{ pattern: "on" }, { pattern: "off" }, { pattern: "pulse" }],
    initial: () => ({ active: false }),
    apply: (s, verb) => {
      if (verb === "on") s.active = true;
      else if (verb === "off") s.active = false;
      else if (verb === "pulse") s.active = !s.active;
    },
  },
  Dimmer: {
    commands: [{ pattern: "on" }, { pattern: "off" }, { pattern: "value/{n}", ...pct() }],
    initial: () => ({ value: 0, on: false }),
    apply: (s, verb, n) => {
      if (verb === "on") Object.assign(s, { value: 100, on: true });
      else if (verb === "off") Object.assign(s, { value: 0, on: false });
      else if (verb === "value") Object.assign(s, { value: n ?? 0, on: (n ?? 0) > 0 });
    },
  },
  Jalousie: {
    commands: [
      { pattern: "FullUp" },
      { pattern: "FullDown" },
      { pattern: "shade" },
      { pattern: "auto" },
      { pattern: "stop" },
      { pattern: "manualPosition/{n}", ...pct() },
    ],
    initial: () => ({ position: 0, shadePosition: 0, autoActive: false, up: false, down: false }),
    apply: (s, verb, n) => {
      const move = (target: number) => Object.assign(s, { position: target, up: false, down: false });
      if (verb === "FullUp") move(0);
      else if (verb === "FullDown") move(100);
      else if (verb === "shade") Object.assign(s, { position: 80, shadePosition: 50 });
      else if (verb === "auto") s.autoActive = true;
      else if (verb === "stop") Object.assign(s, { up: false, down: false, autoActive: false });
      else if (verb === "manualPosition") move(n ?? 0);
    },
  },
  Gate: {
    commands: [{ pattern: "open" }, { pattern: "close" }, { pattern: "stop" }],
    initial: () => ({ position: 0, active: 0 }),
    apply: (s, verb) => {
      if (verb === "open") Object.assign(s, { position: 100, active: 0 });
      else if (verb === "close") Object.assign(s, { position: 0, active: 0 });
      else if (verb === "stop") s.active = 0;
    },
  },
  Alarm: {
    commands: [
      { pattern: "on" },
      { pattern: "on/{n}", ...pct(0, 1) },
      { pattern: "delayedon" },
      { pattern: "off" },
      { pattern: "quit" },
    ],
    initial: () => ({ armed: false, armedDelay: 0, disabledMove: false, level: 0 }),
    apply: (s, verb, n) => {
      if (verb === "on") Object.assign(s, { armed: true, disabledMove: n === 0 });
      else if (verb === "delayedon") Object.assign(s, { armed: true, armedDelay: 30 });
      else if (verb === "off") Object.assign(s, { armed: false, armedDelay: 0, level: 0 });
      else if (verb === "quit") s.level = 0;
    },
  },
  Intercom: {
    commands: [{ pattern: "open" }],
    initial: () => ({ bell: false, lastOpened: "" }),
    apply: (s, verb) => {
      if (verb === "open") s.lastOpened = new Date().toISOString();
    },
  },
  Pushbutton: {
    commands: [{ pattern: "pulse" }],
    initial: () => ({ active: false, pulses: 0 }),
    apply: (s, verb) => {
      if (verb === "pulse") s.pulses = Number(s.pulses) + 1;
    },
  },
  NfcCodeTouch: {
    commands: [{ pattern: "output/{n}", ...pct(1, 6) }],
    initial: () => ({ lastOutput: 0, codeDate: "" }),
    apply: (s, verb, n) => {
      if (verb === "output") Object.assign(s, { lastOutput: n ?? 0, codeDate: new Date().toISOString() });
    },
  },
  IRoomControllerV2: {
    commands: [
      { pattern: "setComfortTemperature/{n}", ...pct(5, 40) },
      { pattern: "setManualTemperature/{n}", ...pct(5, 40) },
      { pattern: "setOperatingMode/{n}", ...pct(0, 2) },
    ],
    initial: () => ({ tempActual: 21.3, tempTarget: 21.5, comfortTemperature: 21.5, operatingMode: 0 }),
    apply: (s, verb, n) => {
      if (verb === "setComfortTemperature")
        Object.assign(s, { comfortTemperature: n ?? 21, tempTarget: n ?? 21 });
      else if (verb === "setManualTemperature") s.tempTarget = n ?? 21;
      else if (verb === "setOperatingMode") s.operatingMode = n ?? 0;
    },
  },
  AudioZoneV2: {
    commands: [{ pattern: "play" }, { pattern: "pause" }, { pattern: "volume/{n}", ...pct() }],
    initial: () => ({ playState: "stopped", volume: 25 }),
    apply: (s, verb, n) => {
      if (verb === "play") s.playState = "playing";
      else if (verb === "pause") s.playState = "paused";
      else if (verb === "volume") s.volume = n ?? 0;
    },
  },
  LightScene: {
    commands: [{ pattern: "activate" }, { pattern: "deactivate" }],
    initial: () => ({ active: false }),
    apply: (s, verb) => {
      s.active = verb === "activate";
    },
  },
  InfoOnlyAnalog: {
    commands: [],
    initial: () => ({ value: 0 }),
    apply: () => {},
  },
};

/** [name, type, room, category, initial overrides] */
type Seed = [string, string, string, string, States?];

const SEEDS: Seed[] = [
  ["Living Room Lights", "LightControllerV2", "Living Room", "Lighting"],
  ["Living Room Blinds", "Jalousie", "Living Room", "Shading"],
  ["Living Room Climate", "IRoomControllerV2", "Living Room", "Climate"],
  ["Living Room Audio", "AudioZoneV2", "Living Room", "Audio"],
  ["Movie Scene", "LightScene", "Living Room", "Scenes"],
  ["Kitchen Lights", "LightControllerV2", "Kitchen", "Lighting"],
  ["Kitchen Blinds", "Jalousie", "Kitchen", "Shading"],
  ["Coffee Machine", "Switch", "Kitchen", "Power"],
  ["Kitchen Audio", "AudioZoneV2", "Kitchen", "Audio"],
  ["Dining Lights", "Dimmer", "Dining Room", "Lighting"],
  ["Dining Blinds", "Jalousie", "Dining Room", "Shading"],
  ["Dinner Scene", "LightScene", "Dining Room", "Scenes"],
  ["Bedroom Lights", "LightControllerV2", "Bedroom", "Lighting"],
  ["Bedroom Blinds", "Jalousie", "Bedroom", "Shading"],
  ["Bedroom Climate", "IRoomControllerV2", "Bedroom", "Climate", { tempActual: 19.8, tempTarget: 20 }],
  ["Kids Room Lights", "LightControllerV2", "Kids Room", "Lighting"],
  ["Kids Room Climate", "IRoomControllerV2", "Kids Room", "Climate", { tempActual: 20.6 }],
  ["Bathroom Lights", "Dimmer", "Bathroom", "Lighting"],
  ["Towel Heater", "Switch", "Bathroom", "Power"],
  ["Bathroom Climate", "IRoomControllerV2", "Bathroom", "Climate", { tempActual: 22.9, tempTarget: 23 }],
  ["Office Lights", "LightControllerV2", "Office", "Lighting"],
  ["Office Blinds", "Jalousie", "Office", "Shading"],
  ["Office Socket", "Switch", "Office", "Power"],
  ["Hallway Lights", "LightControllerV2", "Hallway", "Lighting"],
  ["Burglar Alarm", "Alarm", "Hallway", "Security"],
  ["Front Door Intercom", "Intercom", "Hallway", "Access"],
  ["Front Door Opener", "Pushbutton", "Hallway", "Access"],
  ["Code Touch Front Door", "NfcCodeTouch", "Hallway", "Access"],
  ["Garage Door", "Gate", "Garage", "Access"],
  ["Garage Lights", "Switch", "Garage", "Lighting"],
  ["Garden Lights", "Switch", "Garden", "Lighting"],
  ["Garden Gate", "Gate", "Garden", "Access"],
  ["Outdoor Temperature", "InfoOnlyAnalog", "Garden", "Sensors", { value: 8.4 }],
  ["Garden Sprinkler", "Switch", "Garden", "Power"],
];

/** Deterministic Loxone-style UUID (8-4-4-16 hex, the last group starting with ffff). */
export function loxoneUuid(key: string): string {
  const h = createHash("sha1").update(`loxmcp-sim:${key}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-ffff${h.slice(16, 28)}`;
}

export type CommandCheck = { ok: true; verb: string; n: number | undefined } | { ok: false; message: string };

interface ControlEntry extends HouseControl {
  spec: TypeSpec | undefined;
}

/** The Miniserver's house: controls with state that commands change. */
export class House {
  private readonly controls = new Map<string, ControlEntry>();
  private added = 0;

  constructor() {
    for (const [name, type, room, category, overrides] of SEEDS) {
      this.insert(loxoneUuid(name), { name, type, room, category }, overrides);
    }
  }

  private insert(
    uuid: string,
    c: { name: string; type: string; room: string; category: string },
    overrides?: States,
  ): void {
    const spec = TYPES[c.type];
    this.controls.set(uuid, {
      uuid,
      ...c,
      states: { ...(spec?.initial() ?? {}), ...(overrides ?? {}) },
      commands: spec?.commands.map((x) => x.pattern) ?? [],
      spec,
    });
  }

  get(uuid: string): HouseControl | undefined {
    const c = this.controls.get(uuid.toLowerCase());
    return c ? strip(c) : undefined;
  }

  list(): HouseControl[] {
    return [...this.controls.values()].map(strip);
  }

  snapshot(): HouseSnapshot {
    const controls = this.list();
    return {
      controls,
      rooms: [...new Set(controls.map((c) => c.room))],
      categories: [...new Set(controls.map((c) => c.category))],
    };
  }

  rename(uuid: string, name: string): boolean {
    const c = this.controls.get(uuid.toLowerCase());
    if (!c) return false;
    c.name = name;
    return true;
  }

  add(c: { name: string; type: string; room: string; category: string }): string {
    this.added += 1;
    const uuid = loxoneUuid(`added:${this.added}:${c.name}`);
    this.insert(uuid, c);
    return uuid;
  }

  /** Checks a command against the control's allowed patterns without executing it. */
  check(uuid: string, command: string): CommandCheck {
    const c = this.controls.get(uuid.toLowerCase());
    if (!c) return { ok: false, message: `Control ${uuid} not found. Use control_find to list controls.` };
    const allowed = c.spec?.commands ?? [];
    for (const cmd of allowed) {
      if (!cmd.pattern.includes("{n}")) {
        if (cmd.pattern === command) return { ok: true, verb: command, n: undefined };
        continue;
      }
      const prefix = cmd.pattern.slice(0, cmd.pattern.indexOf("{n}"));
      if (!command.startsWith(prefix)) continue;
      const rest = command.slice(prefix.length);
      if (!/^-?\d+(\.\d+)?$/.test(rest)) continue;
      const n = Number(rest);
      if ((cmd.min !== undefined && n < cmd.min) || (cmd.max !== undefined && n > cmd.max)) {
        return {
          ok: false,
          message: `Value ${n} out of range for "${cmd.pattern}" on ${c.name} (allowed ${cmd.min}..${cmd.max}).`,
        };
      }
      return { ok: true, verb: prefix.replace(/\/$/, ""), n };
    }
    const list = allowed.length > 0 ? allowed.map((x) => x.pattern).join(", ") : "none (read-only control)";
    return {
      ok: false,
      message: `Command "${command}" is not valid for ${c.name} (${c.type}). Allowed: ${list}.`,
    };
  }

  /** Executes a checked command and returns the new state. */
  execute(uuid: string, verb: string, n: number | undefined): HouseControl {
    const c = this.controls.get(uuid.toLowerCase());
    if (!c) throw new Error(`unknown control ${uuid}`);
    c.spec?.apply(c.states, verb, n);
    return strip(c);
  }
}

function strip(c: ControlEntry): HouseControl {
  return {
    uuid: c.uuid,
    name: c.name,
    type: c.type,
    room: c.room,
    category: c.category,
    states: { ...c.states },
    commands: [...c.commands],
  };
}
