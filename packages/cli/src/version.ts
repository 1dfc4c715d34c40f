/** The CLI's version (`loxmcp --version`, and its `loxmcp/hello`); kept equal to package.json. */
export const VERSION = "0.1.0";
