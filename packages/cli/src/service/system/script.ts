/**
 * `service install|uninstall --system --print`: the steps as the shell script they amount to,
 * every file, mode and command (and, on macOS, the dscl script a user or group step runs).
 */
import { dirname } from "node:path";
import type { SystemLayout, SystemPlatform } from "@loxmcp/common";
import { octal, shellQuote as shq } from "../../format.js";
import { leaveArgv, memberArgv, useraddArgv } from "./accounts.js";
import { isPrefixed, runnableProblem, type Step, type SystemServiceOptions } from "./plan.js";

/** The steps as the shell script they amount to (`--print`): every file, mode and command. */
export function renderScript(
  steps: Step[],
  action: "install" | "uninstall",
  o: SystemServiceOptions,
  layout: SystemLayout,
): string {
  const u = o.daemonUser;
  const lines = [
    "#!/bin/sh",
    `# loxmcp hardened mode: what \`sudo loxmcp service ${action} --system\` does, as the shell commands it`,
    `# amounts to. Nothing was changed (--print).${isPrefixed(layout) ? ` Everything is under --root ${layout.root}.` : ""}`,
    action === "install"
      ? `# The daemon runs as user ${u}; ${o.person ?? "the person (--user NAME, or sudo's SUDO_USER)"} joins group ${u} to reach its socket.`
      : "# The daemon's service and socket go away; MCP clients then start a per-user daemon again.",
    "set -e",
  ];
  for (const s of steps) lines.push(...scriptOf(o.platform, s));
  if (action === "install") {
    lines.push(
      `# then the daemon creates ${layout.socket} (0660 ${u}:${u}) and ${layout.adminSocket} (0600 ${u}:${u})`,
    );
    if (!o.person)
      lines.push(`# usermod -a -G ${u} <person>   (pass --user NAME: nobody else may reach the socket)`);
    const hidden = runnableProblem(o);
    if (hidden) lines.push(`# WARNING: ${hidden}`);
  }
  return lines.join("\n");
}

/** One step as shell lines. */
export function scriptOf(platform: SystemPlatform, s: Step): string[] {
  const darwin = platform === "darwin";
  switch (s.kind) {
    case "group":
      return darwin
        ? [
            `dscl . -read /Groups/${shq(s.name)} >/dev/null 2>&1 || { gid=$(dscl . -list /Groups PrimaryGroupID | awk '$2>=300&&$2<400{u[$2]=1} END{for(i=300;i<400;i++) if(!(i in u)){print i; exit}}'); dscl . -create /Groups/${shq(s.name)} PrimaryGroupID "$gid"; }`,
          ]
        : [`getent group ${shq(s.name)} >/dev/null || groupadd --system ${shq(s.name)}`];
    case "user":
      return darwin
        ? [
            `id -u ${shq(s.name)} >/dev/null 2>&1 || { uid=$(dscl . -list /Users UniqueID | awk '$2>=300&&$2<400{u[$2]=1} END{for(i=300;i<400;i++) if(!(i in u)){print i; exit}}'); dscl . -create /Users/${shq(s.name)} UniqueID "$uid"; dscl . -create /Users/${shq(s.name)} PrimaryGroupID "$(dscl . -read /Groups/${shq(s.group)} PrimaryGroupID | awk '{print $2}')"; dscl . -create /Users/${shq(s.name)} UserShell /usr/bin/false; dscl . -create /Users/${shq(s.name)} NFSHomeDirectory ${shq(s.home)}; dscl . -create /Users/${shq(s.name)} IsHidden 1; }`,
          ]
        : [`id -u ${shq(s.name)} >/dev/null 2>&1 || ${useraddArgv(platform, s).map(shq).join(" ")}`];
    case "member":
      return [
        `${memberArgv(platform, s.user, s.group).map(shq).join(" ")}   # ${s.user} may reach the socket (after logging in again)`,
      ];
    case "leave":
      return [`${leaveArgv(platform, s.user, s.group).map(shq).join(" ")} || true`];
    case "deluser":
      return darwin ? [`dscl . -delete /Users/${shq(s.name)}`] : [`userdel ${shq(s.name)}`];
    case "delgroup":
      return darwin
        ? [`dscl . -delete /Groups/${shq(s.name)} 2>/dev/null || true`]
        : [`getent group ${shq(s.name)} >/dev/null && groupdel ${shq(s.name)} || true`];
    case "dir":
      return [
        `install -d -m ${octal(s.mode)} -o ${shq(s.owner)} -g ${shq(s.group)} ${shq(s.path)}   # ${s.why}`,
      ];
    case "file": {
      const body = [
        `cat > ${shq(s.path)} <<'LOXMCP_EOF'`,
        ...s.content.replace(/\n$/, "").split("\n"),
        "LOXMCP_EOF",
        `chown ${shq(s.owner)}:${shq(s.group)} ${shq(s.path)} && chmod ${octal(s.mode)} ${shq(s.path)}   # ${s.why}`,
      ];
      if (!s.ifMissing) return [`mkdir -p ${shq(dirname(s.path))}`, ...body];
      return [`if [ ! -e ${shq(s.path)} ]; then`, ...body, "fi"];
    }
    case "move":
      return [
        `install -m ${octal(s.mode)} -o ${shq(s.owner)} -g ${shq(s.group)} ${shq(s.from)} ${shq(s.to)} && rm -f ${shq(s.from)}   # --migrate`,
      ];
    case "remove":
      return [`rm -rf ${shq(s.path)}   # ${s.why}`];
    case "run":
      return [`${s.argv.map(shq).join(" ")}${s.mayFail ? " || true" : ""}${s.why ? `   # ${s.why}` : ""}`];
  }
}
