/**
 * Reading and writing the `.env` in the config dir (KEY=value lines, dotenv syntax as Node's
 * `util.parseEnv` / `process.loadEnvFile` understand it), parsed exactly as the daemon parses it
 * (`parseDotenv` from @loxmcp/common).
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  fchownSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, parseDotenv } from "@loxmcp/common";
import { CliError } from "./command.js";

export function envFilePath(configDir: string): string {
  return join(configDir, ".env");
}

/** One value in dotenv syntax that round-trips through Node's parser exactly. */
export function quoteDotenv(key: string, value: string): string {
  if (/[\r\n]/.test(value)) {
    throw new CliError("BAD_VALUE", `${key} must be a single line`);
  }
  if (/^[A-Za-z0-9_@%+=:,./~^-]*$/.test(value)) return value;
  if (!value.includes("'")) return `'${value}'`;
  if (!value.includes('"') && !value.includes("\\")) return `"${value}"`;
  if (!value.includes("`")) return `\`${value}\``;
  throw new CliError(
    "BAD_VALUE",
    `${key} contains ', " and \` together, which a .env file cannot hold; use --password-command instead`,
  );
}

export function readDotenv(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  return parseDotenv(readFileSync(file, "utf8"));
}

/**
 * Sets/removes keys in the .env, keeping every other line (comments, other keys) as it was.
 * Written atomically with mode 0600 in a 0700 directory. With `owner` (hardened mode, as root:
 * /etc/loxmcp/.env belongs to the system daemon's user): the directory is left as it is and the
 * file is given to that user before it takes the old one's place.
 */
export function updateDotenv(
  file: string,
  dir: string,
  set: Record<string, string>,
  remove: string[] = [],
  owner?: { uid: number; gid: number },
): void {
  if (!owner) ensurePrivateDir(dir);
  const old = existsSync(file) ? readFileSync(file, "utf8").split(/\r?\n/) : [];
  const pending = new Map(Object.entries(set));
  const lines: string[] = [];
  for (const line of old) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=/.exec(line);
    const key = m?.[1];
    if (key && remove.includes(key)) continue;
    if (key && pending.has(key)) {
      lines.push(`${key}=${quoteDotenv(key, pending.get(key) ?? "")}`);
      pending.delete(key);
      continue;
    }
    lines.push(line);
  }
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  if (old.length === 0) lines.push("# loxmcp settings (written by `loxmcp init`; keep this file mode 0600)");
  for (const [k, v] of pending) lines.push(`${k}=${quoteDotenv(k, v)}`);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, `${lines.join("\n")}\n`);
    fsyncSync(fd);
    if (owner) fchownSync(fd, owner.uid, owner.gid);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  chmodSync(file, 0o600);
}
