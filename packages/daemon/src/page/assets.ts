/**
 * The page's files (hand-written HTML, CSS and JavaScript, no CDN, no build step), read once at
 * start from `packages/daemon/assets/page/` in a checkout, or `assets/page/` of the installed
 * package (scripts/pack.mjs copies them there).
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface Asset {
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Served as they are, to anyone who passes the Host check (they hold no secret). */
export const STATIC_FILES = ["app.css", "app.js", "login.js", "icon.svg"] as const;
/** Pages: index.html only with a session (it carries the CSRF token), login.html to anyone. */
const PAGES = ["index.html", "login.html"] as const;

function assetDir(): string {
  const candidates = [
    // dist/page/assets.js (or src/page/assets.ts) in a checkout → packages/daemon/assets/page
    new URL("../../assets/page/", import.meta.url),
    // dist/<bundle>.js of the installed package → <package>/assets/page
    new URL("../assets/page/", import.meta.url),
  ];
  for (const u of candidates) {
    const dir = fileURLToPath(u);
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error(
    `the page's files are missing (looked in ${candidates.map((u) => fileURLToPath(u)).join(" and ")}); reinstall loxmcp`,
  );
}

export class PageAssets {
  private readonly files = new Map<string, Asset>();

  /** Reads every file now; throws when one is missing. */
  constructor(dir = assetDir()) {
    for (const name of [...STATIC_FILES, ...PAGES]) {
      const ext = name.slice(name.lastIndexOf("."));
      this.files.set(name, {
        type: TYPES[ext] ?? "application/octet-stream",
        body: readFileSync(dir + name),
      });
    }
  }

  get(name: string): Asset | undefined {
    return this.files.get(name);
  }

  /** The application page for one session: its CSRF token in a meta tag (read by app.js). */
  app(csrf: string): Asset {
    const html = (this.files.get("index.html") as Asset).body.toString("utf8");
    return { type: TYPES[".html"] as string, body: Buffer.from(html.replace("{{csrf}}", csrf)) };
  }
}
