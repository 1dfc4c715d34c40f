#!/usr/bin/env node
// Packs loxmcp as ONE installable npm package, `dist/loxmcp-<version>.tgz` (repo root):
// `npm install -g dist/loxmcp-<version>.tgz` puts `loxmcp`, `loxmcpd` and `loxmcp-shim` on PATH.
//
// The workspace packages are private and linked with `workspace:*`, so they cannot be installed
// as they are. The package holds instead:
//   dist/loxmcp.js, dist/loxmcpd.js   the CLI and the daemon bundled by esbuild (ES modules; their
//                                     shared code and the daemon's lazily loaded modules — SDK,
//                                     relay, probe — are split into dist/chunk-*.js, so a config
//                                     error or `--version` still exits before the SDK is parsed)
//   dist/loxmcp-shim.cjs              the shim bundle exactly as `pnpm build` makes it (one
//                                     CommonJS file, what the workspace tests and bench measure)
//   bin/                              tiny launchers, the package's `bin` entries
//   systemd/, launchd/                the service templates (`loxmcp service install` renders them)
//   assets/page/                      the person's local page (HTML, CSS, JS), which the daemon serves
// Every runtime dependency is inlined except better-sqlite3: a native addon cannot be bundled, so it
// is the one real dependency, pinned to the version the workspace's lockfile installed (the one the
// tests ran against). The installed CLI, shim and daemon find each other and the templates by this
// layout (packages/cli/src/locate.ts, packages/common/src/daemon-command.ts).
//
// Usage: node scripts/pack.mjs [--out-dir DIR]   (after `pnpm build`; `pnpm run pack` does both)
// Writes DIR/loxmcp-<version>.tgz (default DIR: <repo>/dist) and removes any other loxmcp-*.tgz
// there, so DIR holds exactly one. Prints the tarball's path on stdout. The package is assembled
// in a temp directory (kept for a look when LOXMCP_PACK_KEEP_STAGE is set).
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// esbuild is the shim's devDependency (it bundles the shim too): take that one.
const { build } = await import(
  pathToFileURL(createRequire(join(ROOT, "packages", "shim", "package.json")).resolve("esbuild")).href
);
const PACKAGE_NAME = "loxmcp";

class PackError extends Error {}
function fail(message) {
  throw new PackError(message);
}

function parseArgs(argv) {
  let outDir = join(ROOT, "dist");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out-dir" && argv[i + 1]) outDir = resolve(argv[++i]);
    else fail(`unknown argument ${a}; usage: node scripts/pack.mjs [--out-dir DIR]`);
  }
  return { outDir };
}

const readJson = (file) => JSON.parse(readFileSync(file, "utf8"));

/** One version for the whole product: the packages must agree (the CLI compares it with the daemon's). */
function productVersion() {
  const versions = Object.fromEntries(
    ["cli", "common", "daemon", "shim"].map((p) => [
      p,
      readJson(join(ROOT, "packages", p, "package.json")).version,
    ]),
  );
  const distinct = [...new Set(Object.values(versions))];
  if (distinct.length !== 1) {
    fail(`the packages disagree on the version (${JSON.stringify(versions)}); make them equal first`);
  }
  return distinct[0];
}

/** The better-sqlite3 the daemon runs with in the workspace (the lockfile's exact version). */
function sqliteVersion() {
  const req = createRequire(join(ROOT, "packages", "daemon", "package.json"));
  return readJson(req.resolve("better-sqlite3/package.json")).version;
}

function requireBuilt(...files) {
  for (const f of files) {
    if (!existsSync(f)) fail(`${f} is missing: run \`pnpm build\` first (\`pnpm run pack\` does)`);
  }
}

/**
 * A bundled module that reads __dirname/__filename fails at run time in an ES module. The only
 * known uses are pino's worker-thread transports (their file paths), which loxmcp never starts
 * (the daemon logs through pino.multistream to its own file); anything else stops the pack.
 */
function checkNoDirname(dir) {
  const known = [
    /bundlerOverrides\["(?:thread-stream|pino)-worker"\] \|\| join\d*\(__dirname, /,
    /^\s*return join\d*\(__dirname, "\.\.", "file\.js"\);$/,
  ];
  for (const f of readdirSync(dir)) {
    readFileSync(join(dir, f), "utf8")
      .split("\n")
      .forEach((line, i) => {
        if (/^\s*(\*|\/\/)/.test(line) || !/\b__(dirname|filename)\b/.test(line)) return;
        if (known.some((re) => re.test(line))) return;
        fail(`dist/${f}:${i + 1} uses __dirname/__filename, undefined in an ES module: ${line.trim()}`);
      });
  }
}

async function pack(outDir) {
  const version = productVersion();
  const cliMain = join(ROOT, "packages", "cli", "dist", "main.js");
  const daemonMain = join(ROOT, "packages", "daemon", "dist", "main.js");
  const shimBundle = join(ROOT, "packages", "shim", "dist", "loxmcp-shim.cjs");
  requireBuilt(cliMain, daemonMain, shimBundle);

  const stageRoot = mkdtempSync(join(tmpdir(), "loxmcp-pack-"));
  const stage = join(stageRoot, "package");
  try {
    mkdirSync(join(stage, "bin"), { recursive: true });

    const result = await build({
      entryPoints: { loxmcp: cliMain, loxmcpd: daemonMain },
      outdir: join(stage, "dist"),
      entryNames: "[name]",
      // In dist/ next to the entries: the daemon reads its version from `../package.json` relative
      // to its module, which is this package's package.json from any file in dist/.
      chunkNames: "chunk-[hash]",
      bundle: true,
      splitting: true,
      platform: "node",
      format: "esm",
      target: "node20",
      external: ["better-sqlite3"],
      // Bundled CommonJS dependencies (pino, commander …) call require() for Node's built-ins.
      banner: {
        js: 'import { createRequire as __loxmcpCreateRequire } from "node:module";\nconst require = __loxmcpCreateRequire(import.meta.url);',
      },
      legalComments: "eof",
      logLevel: "warning",
    });
    if (result.errors.length > 0 || result.warnings.length > 0) {
      fail(`esbuild: ${result.errors.length} errors, ${result.warnings.length} warnings; see above`);
    }
    checkNoDirname(join(stage, "dist"));
    copyFileSync(shimBundle, join(stage, "dist", "loxmcp-shim.cjs"));

    const launchers = {
      "loxmcp.js": 'import "../dist/loxmcp.js";\n',
      "loxmcpd.js": 'import "../dist/loxmcpd.js";\n',
      // CommonJS on purpose (like packages/shim/bin): no ES module loader on every client start.
      "loxmcp-shim.cjs": 'require("../dist/loxmcp-shim.cjs");\n',
    };
    for (const [name, body] of Object.entries(launchers)) {
      const file = join(stage, "bin", name);
      writeFileSync(file, `#!/usr/bin/env node\n${body}`);
      chmodSync(file, 0o755);
    }

    cpSync(join(ROOT, "systemd"), join(stage, "systemd"), { recursive: true });
    cpSync(join(ROOT, "launchd"), join(stage, "launchd"), { recursive: true });
    cpSync(join(ROOT, "packages", "daemon", "assets"), join(stage, "assets"), { recursive: true });
    copyFileSync(join(ROOT, "README.md"), join(stage, "README.md"));

    const rootPkg = readJson(join(ROOT, "package.json"));
    const pkg = {
      name: PACKAGE_NAME,
      version,
      description: rootPkg.description,
      type: "module",
      engines: { node: rootPkg.engines?.node ?? ">=20" },
      // A Unix socket daemon with systemd/launchd services: Linux and macOS only.
      os: ["linux", "darwin"],
      bin: {
        loxmcp: "bin/loxmcp.js",
        loxmcpd: "bin/loxmcpd.js",
        "loxmcp-shim": "bin/loxmcp-shim.cjs",
      },
      files: ["bin", "dist", "systemd", "launchd", "assets", "README.md"],
      dependencies: { "better-sqlite3": sqliteVersion() },
    };
    writeFileSync(join(stage, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);

    // The installed daemon must report the package's version (it reads ../package.json).
    const daemonVersion = execFileSync(process.execPath, [join(stage, "bin", "loxmcpd.js"), "--version"], {
      encoding: "utf8",
    }).trim();
    if (daemonVersion !== version) {
      fail(`the bundled daemon says version ${daemonVersion}, expected ${version}`);
    }

    mkdirSync(outDir, { recursive: true });
    for (const f of readdirSync(outDir)) {
      if (f.startsWith(`${PACKAGE_NAME}-`) && f.endsWith(".tgz")) rmSync(join(outDir, f));
    }
    const [packed] = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", outDir], {
        cwd: stage,
        // Packing needs no registry settings; leaving out those pnpm exports for its own scripts
        // spares npm's "Unknown env config" warnings.
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^p?npm_config_/i.test(k))),
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
    const kib = (n) => `${Math.round(n / 1024)} KiB`;
    console.error(
      `pack: ${PACKAGE_NAME}@${version}: ${packed.entryCount} files, ${kib(packed.size)} packed, ${kib(packed.unpackedSize)} unpacked; depends on better-sqlite3@${pkg.dependencies["better-sqlite3"]}`,
    );
    return join(outDir, packed.filename);
  } finally {
    if (process.env.LOXMCP_PACK_KEEP_STAGE) console.error(`pack: stage kept at ${stage}`);
    else rmSync(stageRoot, { recursive: true, force: true });
  }
}

try {
  const { outDir } = parseArgs(process.argv.slice(2));
  console.log(await pack(outDir));
} catch (err) {
  if (!(err instanceof PackError)) throw err;
  console.error(`pack: ${err.message}`);
  process.exitCode = 1;
}
