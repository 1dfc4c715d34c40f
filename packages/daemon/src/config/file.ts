/**
 * config.json read for a person: syntax errors with line and column (never the parser's message,
 * which may quote a password), schema problems, and unknown keys with the closest known one.
 */
import { readFileSync } from "node:fs";
import { check, type Rule } from "./rules.js";
import { type ConfigFile, ConfigFileSchema, type ConfigProblem } from "./schema.js";

/**
 * Reads config.json: syntax errors named with line and column (never the parser's own message,
 * which may quote the file and a password in it), then the schema and unknown keys. Parts that are
 * valid are kept so that the other settings can still be checked.
 */
export function readConfigFile(jsonFile: string): {
  file: ConfigFile;
  problems: ConfigProblem[];
  parsed: boolean;
} {
  let text: string;
  try {
    text = readFileSync(jsonFile, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return {
      file: {},
      parsed: false,
      problems: [
        {
          key: "config.json",
          message: `${jsonFile} cannot be read (${code}); fix its owner and mode (chmod 600 ${jsonFile}) or remove it`,
        },
      ],
    };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { file: {}, parsed: false, problems: [jsonSyntaxProblem(jsonFile, text, err)] };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    const what = Array.isArray(raw) ? "an array" : raw === null ? "null" : `a ${typeof raw}`;
    return {
      file: {},
      parsed: false,
      problems: [
        {
          key: "config.json",
          message: `${jsonFile} holds ${what}; it must hold one JSON object ({ "policy": { … }, … }) — fix or remove it`,
        },
      ],
    };
  }
  const problems = unknownKeyProblems(ConfigFileSchema, raw, [], jsonFile);
  const parsed = check(ConfigFileSchema, raw);
  if (parsed.ok) return { file: parsed.value as ConfigFile, problems, parsed: true };
  const bad = new Set<string>();
  for (const issue of parsed.issues) {
    if (issue.code === "unrecognized_keys") {
      // named above, with a suggestion; dropped below like any bad section
      for (const k of issue.path.length === 0 ? issue.keys : [issue.path[0]]) bad.add(String(k));
      continue;
    }
    const where = issue.path.map(String).join(".") || "(top level)";
    bad.add(String(issue.path[0] ?? ""));
    problems.push({
      key: `config.json:${where}`,
      message: `${jsonFile}: ${where} ${oneLine(issue.message)}; fix it in ${jsonFile}`,
    });
  }
  // Keep the valid top-level keys so that the rest of the configuration is still checked.
  const rest = Object.fromEntries(Object.entries(raw).filter(([k]) => !bad.has(k)));
  const again = bad.has("") ? undefined : check(ConfigFileSchema, rest);
  return { file: again?.ok ? (again.value as ConfigFile) : {}, problems, parsed: true };
}

/** A config.json syntax error: what and where (line, column), never a quote of the file. */
function jsonSyntaxProblem(jsonFile: string, text: string, err: unknown): ConfigProblem {
  const msg = err instanceof Error ? err.message : String(err);
  const at = /at position (\d+)/.exec(msg);
  let pos: number | undefined = at ? Number(at[1]) : undefined;
  if (pos === undefined)
    pos = /Unexpected end of JSON input/i.test(msg) ? text.length : locateJsonError(text);
  const what =
    text.trim() === ""
      ? "the file is empty (write {} or remove it)"
      : /Unexpected end|Unterminated/i.test(msg)
        ? 'the file ends too early (a missing }, ] or ")'
        : /property name/i.test(msg)
          ? "expected a key in double quotes (a trailing comma, or a key without quotes?)"
          : /after property value|after array element|Expected ','/i.test(msg)
            ? "expected a comma or a closing bracket (a missing comma?)"
            : /control character/i.test(msg)
              ? "a control character (a raw line break or tab) inside a string"
              : "unexpected text (only double-quoted strings, numbers, true, false, null, {} and [] are allowed; no comments)";
  if (pos === undefined) {
    return {
      key: "config.json",
      message: `${jsonFile} is not valid JSON: ${what} — fix it or remove the file`,
    };
  }
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - before.lastIndexOf("\n");
  return {
    key: "config.json",
    message: `${jsonFile} is not valid JSON at line ${line}, column ${column}: ${what} — fix it or remove the file`,
    line,
    column,
  };
}

/**
 * Where the first JSON syntax error is (an offset), for parser messages that do not say: a
 * plain recursive-descent walk over the JSON grammar. undefined when it finds none.
 */
export function locateJsonError(text: string): number | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const str = () => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail();
      if (text[i] === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "x")) fail();
      }
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (depth: number): void => {
    if (depth > 512) fail();
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ":") fail();
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === '"') {
      str();
      return;
    }
    const lit = /^(true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!lit) fail();
    i += (lit as RegExpExecArray)[0].length;
  };
  try {
    value(0);
    ws();
    return i < text.length ? i : undefined;
  } catch (pos) {
    return typeof pos === "number" ? Math.min(pos, text.length) : undefined;
  }
}

/** The rule under its optional wrapper. */
function unwrapSchema(s: Rule): Rule {
  return s.kind === "optional" ? s.inner : s;
}

/** config.json keys that are environment names: what to write instead. */
const ENV_NAMES_IN_JSON: Record<string, string> = {
  LOXONE_SERIAL: "serial",
  LOXONE_USER: "user",
  LOXONE_PASSWORD: "password",
  LOXONE_PASSWORD_FILE: "passwordFile",
  LOXONE_PASSWORD_COMMAND: "passwordCommand",
  LOXONE_CONNECT_URL: "connectUrl",
  LOXMCP_UPSTREAM_URL: "upstreamUrl",
  LOXMCP_LOG_LEVEL: "logLevel",
  LOXMCP_POLICY: "policy.mode",
  LOXMCP_PING_INTERVAL: "pingIntervalSec",
  LOXMCP_IDLE_CHECK: "idleCheckSec",
  LOXMCP_REQUEST_TIMEOUT: "requestTimeoutSec",
  LOXMCP_SHUTDOWN_GRACE: "shutdownGraceSec",
  LOXMCP_ALLOWED_RESOURCES: "allowedResources",
  LOXMCP_LOG_MAX_MB: "log.maxSizeMB",
  LOXMCP_LOG_FILES: "log.files",
  LOXMCP_PAGE_PORT: "page.port",
};

/** Every key path the schema knows (for "it belongs under …"). */
function knownPaths(schema: Rule, prefix: string[] = [], out: string[][] = []): string[][] {
  const s = unwrapSchema(schema);
  if (s.kind === "object") {
    for (const [k, v] of Object.entries(s.shape)) {
      out.push([...prefix, k]);
      knownPaths(v, [...prefix, k], out);
    }
  }
  return out;
}

/**
 * Keys the schema does not know, anywhere in config.json (top level, policy, rateLimits,
 * temperature, limits, log …): refused, with the closest known key — a misspelt safety setting
 * must not silently keep its default.
 */
function unknownKeyProblems(schema: Rule, value: unknown, path: string[], jsonFile: string): ConfigProblem[] {
  const s = unwrapSchema(schema);
  const out: ConfigProblem[] = [];
  if (s.kind === "object" && typeof value === "object" && value !== null && !Array.isArray(value)) {
    const shape = s.shape;
    const known = Object.keys(shape);
    for (const [k, v] of Object.entries(value)) {
      const child = shape[k];
      if (child && Object.hasOwn(shape, k)) {
        out.push(...unknownKeyProblems(child, v, [...path, k], jsonFile));
        continue;
      }
      const where = [...path, k].join(".");
      let hint = "";
      const close = closest(k, known);
      const envName =
        path.length === 0 && Object.hasOwn(ENV_NAMES_IN_JSON, k) ? ENV_NAMES_IN_JSON[k] : undefined;
      if (close !== undefined) hint = ` (did you mean ${JSON.stringify([...path, close].join("."))}?)`;
      else if (envName !== undefined) hint = ` (in config.json it is called ${JSON.stringify(envName)})`;
      else {
        const elsewhere = knownPaths(ConfigFileSchema).find(
          (p) => p[p.length - 1]?.toLowerCase() === k.toLowerCase() && p.length > 1,
        );
        if (elsewhere) hint = ` (it belongs under ${JSON.stringify(elsewhere.slice(0, -1).join("."))})`;
        else if (known.length <= 16) hint = ` (known keys here: ${known.join(", ")})`;
      }
      out.push({
        key: `config.json:${where}`,
        message: `${jsonFile}: unknown key ${JSON.stringify(where)}${hint} — unknown keys are refused so that a misspelt setting never silently keeps its default`,
      });
    }
  } else if (s.kind === "record" && typeof value === "object" && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value))
      out.push(...unknownKeyProblems(s.of, v, [...path, k], jsonFile));
  } else if (s.kind === "array" && Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push(...unknownKeyProblems(s.of, v, [...path, String(i)], jsonFile));
    });
  }
  return out;
}

/** The closest of `candidates` to `word` (case-insensitive edit distance ≤ 2), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

export function didYouMean(word: string, candidates: readonly string[]): string {
  const c = closest(word, candidates);
  return c === undefined ? "" : ` (did you mean ${JSON.stringify(c)}?)`;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/** A value quoted for an error message: one line, at most 60 characters. */
export function show(v: string): string {
  const cut = v.length > 60 ? `${v.slice(0, 60)}…` : v;
  return JSON.stringify(cut);
}

export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
