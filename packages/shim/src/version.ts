/** The shim's version, sent in `loxmcp/hello` (kept equal to package.json; a test checks it). */
export const VERSION = "0.1.0";
