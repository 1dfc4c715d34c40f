/**
 * `service install|uninstall --system`, carried out as root: creating (or removing) the user and
 * group, the directories and files with their owners and modes, --migrate's moves, and the
 * service manager's commands.
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";
import type { SystemPlatform } from "@loxmcp/common";
import { CliError } from "../../command.js";
import { octal } from "../../format.js";
import { mustRun, runTool } from "../index.js";
import { groupExists, groupGid, leaveArgv, memberArgv, passwdEntry, useraddArgv } from "./accounts.js";
import type { Step } from "./plan.js";
import { scriptOf } from "./script.js";

/** Carries out `steps`; returns what was done, one line each. */
export function runSteps(
  steps: Step[],
  platform: SystemPlatform,
  step: (what: string) => void = () => {},
): string[] {
  const done: string[] = [];
  const ids = (owner: string, group: string) => {
    const uid = owner === "root" ? 0 : passwdEntry(owner)?.uid;
    const gid = group === "root" || group === "wheel" ? 0 : (groupGid(group) ?? passwdEntry(group)?.gid);
    if (uid === undefined || gid === undefined)
      throw new CliError("NO_SUCH_USER", `cannot find user ${owner} or group ${group}`);
    return { uid, gid };
  };
  for (const s of steps) {
    switch (s.kind) {
      case "group":
        if (groupExists(s.name)) break;
        step(`creating group ${s.name}`);
        shOrRun(platform, s);
        done.push(`created the system group ${s.name}`);
        break;
      case "user":
        if (passwdEntry(s.name)) {
          done.push(`the user ${s.name} exists`);
          break;
        }
        step(`creating user ${s.name}`);
        shOrRun(platform, s);
        done.push(`created the system user ${s.name} (no login, home ${s.home})`);
        break;
      case "member":
        step(`adding ${s.user} to group ${s.group}`);
        mustRun(
          memberArgv(platform, s.user, s.group)[0] as string,
          memberArgv(platform, s.user, s.group).slice(1),
          `add ${s.user} to the group ${s.group} by hand`,
        );
        done.push(
          `added ${s.user} to group ${s.group}: ${s.user} must log in again before the socket can be reached`,
        );
        break;
      case "leave":
        runTool(
          leaveArgv(platform, s.user, s.group)[0] as string,
          leaveArgv(platform, s.user, s.group).slice(1),
        );
        done.push(`removed ${s.user} from group ${s.group}`);
        break;
      case "deluser":
        if (!passwdEntry(s.name)) break;
        if (platform === "darwin") mustRun("dscl", [".", "-delete", `/Users/${s.name}`], "remove it by hand");
        else mustRun("userdel", [s.name], "remove it by hand (`userdel`)");
        done.push(`removed the user ${s.name}`);
        break;
      case "delgroup":
        if (!groupExists(s.name)) break;
        if (platform === "darwin") runTool("dscl", [".", "-delete", `/Groups/${s.name}`]);
        else runTool("groupdel", [s.name]);
        done.push(`removed the group ${s.name}`);
        break;
      case "dir": {
        const { uid, gid } = ids(s.owner, s.group);
        // parents as `install -d` makes them (0755): /var/lib must stay traversable
        mkdirSync(dirname(s.path), { recursive: true, mode: 0o755 });
        mkdirSync(s.path, { recursive: true, mode: s.mode });
        const st = lstatSync(s.path);
        if (st.isSymbolicLink() || !st.isDirectory())
          throw new CliError("NOT_A_DIRECTORY", `${s.path} is not a directory: remove it and run this again`);
        chownSync(s.path, uid, gid);
        chmodSync(s.path, s.mode);
        done.push(`${s.path} (${octal(s.mode)} ${s.owner}:${s.group})`);
        break;
      }
      case "file": {
        if (s.ifMissing && existsSync(s.path)) {
          done.push(`kept ${s.path}`);
          break;
        }
        const { uid, gid } = ids(s.owner, s.group);
        mkdirSync(dirname(s.path), { recursive: true });
        const tmp = `${s.path}.tmp-${process.pid}`;
        writeFileSync(tmp, s.content, { mode: 0o600 });
        chownSync(tmp, uid, gid);
        chmodSync(tmp, s.mode);
        renameSync(tmp, s.path);
        done.push(`wrote ${s.path} (${octal(s.mode)} ${s.owner}:${s.group})`);
        break;
      }
      case "move": {
        const { uid, gid } = ids(s.owner, s.group);
        mkdirOwned(dirname(s.to), uid, gid);
        copyFileSync(s.from, s.to);
        chownSync(s.to, uid, gid);
        chmodSync(s.to, s.mode);
        rmSync(s.from, { force: true });
        done.push(`moved ${s.from} to ${s.to}`);
        break;
      }
      case "remove":
        if (!existsSync(s.path)) break;
        rmSync(s.path, { recursive: true, force: true });
        done.push(`removed ${s.path}`);
        break;
      case "run": {
        step(s.argv.join(" "));
        const [cmd, ...args] = s.argv as [string, ...string[]];
        if (s.mayFail) runTool(cmd, args);
        else
          mustRun(
            cmd,
            args,
            `see \`${platform === "darwin" ? "launchctl print system/com.loxmcp.daemon" : "systemctl status loxmcpd"}\``,
          );
        if (!s.mayFail) done.push(`ran ${s.argv.join(" ")}`);
        break;
      }
    }
  }
  return done;
}

/** A user or group step: the command itself (Linux) or its dscl script (macOS). */
function shOrRun(platform: SystemPlatform, s: Extract<Step, { kind: "group" } | { kind: "user" }>): void {
  if (platform === "darwin") {
    const [line] = scriptOf(platform, s);
    mustRun("sh", ["-c", line ?? "false"], "create it by hand (see `--print`)");
    return;
  }
  if (s.kind === "group")
    mustRun("groupadd", ["--system", s.name], "create the group by hand (see `--print`)");
  else {
    const [cmd, ...args] = useraddArgv(platform, s) as [string, ...string[]];
    mustRun(cmd, args, "create the user by hand (see `--print`)");
  }
}

/** Creates `dir` and its missing parents 0700, each one it creates owned by uid:gid (the person's, on the way back). */
function mkdirOwned(dir: string, uid: number, gid: number): void {
  if (existsSync(dir)) return;
  mkdirOwned(dirname(dir), uid, gid);
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, uid, gid);
}
