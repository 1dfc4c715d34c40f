/** The fetch wrapper that carries the login: `Authorization: Bearer <token>` on every request. */
import type { Middleware } from "@modelcontextprotocol/sdk/client/middleware.js";

/**
 * Sets the Bearer token `token(url)` gives (refreshing it first when it is due), or removes the
 * header when there is none.
 */
export function withBearer(token: (url: string) => Promise<string | undefined>): Middleware {
  return (next) => async (input, init) => {
    const headers = new Headers(init?.headers);
    const t = await token(String(input));
    if (t) headers.set("authorization", `Bearer ${t}`);
    else headers.delete("authorization");
    return next(input, { ...init, headers });
  };
}
