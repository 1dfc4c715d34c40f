import * as util from "node:util";

/**
 * Parses `.env` text (KEY=value, quotes, comments, `export ` prefixes) the one way the daemon and
 * the CLI both read it: Node's `util.parseEnv` (what `process.loadEnvFile` uses), with `export `
 * stripped first because older Node 20 parsers do not know it. On a Node without `parseEnv` (before
 * 20.12) a small compatible parser is used instead.
 */
export function parseDotenv(text: string): Record<string, string> {
  const cleaned = text
    .split(/\r?\n/)
    .map((l) => l.replace(/^\s*export\s+/, ""))
    .join("\n");
  const nodeParse = (util as unknown as { parseEnv?: (s: string) => Record<string, string> }).parseEnv;
  if (typeof nodeParse === "function") return { ...nodeParse(cleaned) };
  const out: Record<string, string> = {};
  for (const raw of cleaned.split("\n")) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(raw);
    if (!m?.[1]) continue;
    let v = (m[2] ?? "").trim();
    const q = v[0];
    if ((q === "'" || q === '"' || q === "`") && v.lastIndexOf(q) > 0) {
      v = v.slice(1, v.lastIndexOf(q));
      if (q === '"') v = v.replace(/\\n/g, "\n");
    } else {
      v = v.replace(/\s+#.*$/, "").trim();
    }
    out[m[1]] = v;
  }
  return out;
}
