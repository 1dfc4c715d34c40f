/** Entry point of `loxmcp` (bin/loxmcp.js imports the built file). */
import { run } from "./cli.js";

// A closed stdout (e.g. `loxmcp logs | head`) is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

process.exitCode = await run(process.argv);
