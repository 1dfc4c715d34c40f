/**
 * Drives an OAuth authorization endpoint without a browser: follows redirects by hand with a
 * cookie jar, fills an HTML login form (user + password, every hidden field kept), submits a
 * consent form if one follows, and stops at the registered redirect_uri (never listened on)
 * to take the `code`. Handles an authorization server that redirects straight back too.
 * Nothing here logs or throws a cookie, password, code or token.
 */
import { type HTMLElement, parse } from "node-html-parser";
import type { Logger } from "pino";
import { CookieJar } from "tough-cookie";
import { safeUrl } from "../url.js";
import {
  AuthError,
  AuthorizationDeniedError,
  AuthUnavailableError,
  LoginFormError,
  LoginRejectedError,
} from "./errors.js";

export interface HeadlessLoginOptions {
  /** The registered redirect_uri; reaching it ends the flow. */
  redirectUri: string;
  user: string;
  password: string;
  /** The `state` we sent; the redirect must carry the same. */
  expectedState?: string;
  fetch?: typeof fetch;
  logger?: Logger;
  /** Most HTTP round trips before giving up (default 15). */
  maxSteps?: number;
  /** Timeout per HTTP request (default 15 s). */
  requestTimeoutMs?: number;
}

interface Step {
  url: URL;
  method: "GET" | "POST";
  body?: URLSearchParams;
}

const APPROVE =
  /\b(allow|approve|accept|authori[sz]e|consent|grant|continue|confirm|yes|ok|login|log in|sign in)\b/i;
const DENY = /\b(deny|reject|decline|cancel|no|abort)\b/i;

/** Runs the authorization flow headlessly; returns the authorization code. */
export async function headlessAuthorize(authorizationUrl: URL, opts: HeadlessLoginOptions): Promise<string> {
  const fetchFn = opts.fetch ?? fetch;
  const jar = new CookieJar(undefined, { allowSecureOnLocal: true });
  const redirect = new URL(opts.redirectUri);
  const maxSteps = opts.maxSteps ?? 15;
  const log = opts.logger;
  let step: Step = { url: authorizationUrl, method: "GET" };
  let postedPassword = false;
  let postedUser = false;

  for (let i = 0; i < maxSteps; i++) {
    if (isRedirectTarget(step.url, redirect)) return takeCode(step.url, opts.expectedState);

    const headers: Record<string, string> = { accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5" };
    const cookie = await jar.getCookieString(step.url.href);
    if (cookie) headers.cookie = cookie;
    if (step.body) headers["content-type"] = "application/x-www-form-urlencoded";
    let res: Response;
    try {
      res = await fetchFn(step.url, {
        method: step.method,
        headers,
        ...(step.body ? { body: step.body.toString() } : {}),
        redirect: "manual",
        signal: AbortSignal.timeout(opts.requestTimeoutMs ?? 15_000),
      });
    } catch (err) {
      // Named like the other OAuth endpoints: the authorize endpoint, then the login pages it leads to.
      throw new AuthNetworkError(
        `could not reach the authorization server's ${i === 0 ? "authorize endpoint" : "login page"} at ${safeUrl(step.url)}`,
        err,
      );
    }
    for (const c of res.headers.getSetCookie()) {
      await jar.setCookie(c, step.url.href, { ignoreError: true });
    }
    log?.debug(
      { url: safeUrl(step.url), method: step.method, status: res.status },
      "authorization page answered; deciding next step",
    );

    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel().catch(() => {});
      const next = new URL(location, step.url);
      // 307/308 repeat the method and body; the others turn into a GET.
      step =
        (res.status === 307 || res.status === 308) && step.method === "POST" && step.body
          ? { url: next, method: "POST", body: step.body }
          : { url: next, method: "GET" };
      continue;
    }

    const type = res.headers.get("content-type") ?? "";
    const text = await res.text().catch(() => "");
    if (res.status >= 500 || res.status === 429) {
      throw new AuthUnavailableError(
        `the authorization server answered HTTP ${res.status} at ${safeUrl(step.url)}; will retry later`,
      );
    }
    if (!/html/i.test(type) && !/<form[\s>]/i.test(text)) {
      const what = res.ok ? "a page without a form" : `HTTP ${res.status}`;
      throw new LoginFormError(
        `the authorization server answered ${what} at ${safeUrl(step.url)}; cannot log in headlessly`,
      );
    }
    const root = parse(text);
    const forms = root.querySelectorAll("form");
    const loginForm = forms.find((f) => f.querySelector('input[type="password" i]') !== null);
    if (loginForm) {
      if (postedPassword) throw new LoginRejectedError();
      step = submit(loginForm, step.url, fillLogin(loginForm, opts.user, opts.password, true));
      postedPassword = true;
      postedUser = true;
      log?.debug({ url: safeUrl(step.url) }, "login form found; submitting credentials");
      continue;
    }
    const userForm = forms.find((f) => textInputs(f).length > 0);
    if (userForm) {
      // Two-step login (user first, password on the next page).
      if (postedUser && !postedPassword) throw new LoginRejectedError();
      step = submit(userForm, step.url, fillLogin(userForm, opts.user, opts.password, false));
      postedUser = true;
      log?.debug({ url: safeUrl(step.url) }, "user name form found; submitting it");
      continue;
    }
    const consent = pickConsentForm(forms);
    if (consent) {
      step = submit(consent.form, step.url, consentFields(consent.form, consent.button));
      log?.debug({ url: safeUrl(step.url) }, "consent form found; approving");
      continue;
    }
    if (!res.ok && postedPassword) throw new LoginRejectedError();
    throw new LoginFormError(
      `the authorization page at ${safeUrl(step.url)} (HTTP ${res.status}) has no login or consent form; cannot log in headlessly`,
    );
  }
  throw new LoginFormError(
    `the authorization flow did not reach the redirect URI within ${maxSteps} steps; cannot log in headlessly`,
  );
}

/** A network failure talking to the authorization server (worth retrying later). */
export class AuthNetworkError extends AuthError {
  constructor(message: string, cause: unknown) {
    super("AUTH_UNAVAILABLE", `${message} (${describe(cause)}); will retry later`);
    this.name = "AuthNetworkError";
  }
}

function describe(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return err instanceof Error ? err.name : "network error";
}

function isRedirectTarget(url: URL, redirect: URL): boolean {
  return url.origin === redirect.origin && url.pathname === redirect.pathname;
}

function takeCode(url: URL, expectedState: string | undefined): string {
  const error = url.searchParams.get("error");
  if (error) {
    if (error === "access_denied" && !url.searchParams.get("error_description")) {
      throw new AuthorizationDeniedError(error);
    }
    throw new AuthorizationDeniedError(error, url.searchParams.get("error_description")?.slice(0, 200));
  }
  if (expectedState !== undefined && url.searchParams.get("state") !== expectedState) {
    throw new AuthError(
      "STATE_MISMATCH",
      "the authorization server redirected back with a different OAuth state; refusing the code (possible CSRF); try `loxmcp relogin`",
    );
  }
  const code = url.searchParams.get("code");
  if (!code) {
    throw new LoginFormError(
      "the authorization server redirected back without a code; cannot finish the login",
    );
  }
  return code;
}

type Field = [name: string, value: string];

/** Every successful control of the form as a browser would send it, without buttons. */
function baseFields(form: HTMLElement): Field[] {
  const out: Field[] = [];
  for (const el of form.querySelectorAll("input, select, textarea")) {
    const name = el.getAttribute("name");
    if (!name || el.hasAttribute("disabled")) continue;
    const tag = el.tagName.toLowerCase();
    if (tag === "select") {
      const opts = el.querySelectorAll("option");
      const chosen = opts.find((o) => o.hasAttribute("selected")) ?? opts[0];
      if (chosen) out.push([name, chosen.getAttribute("value") ?? chosen.text]);
      continue;
    }
    if (tag === "textarea") {
      out.push([name, el.text]);
      continue;
    }
    const type = (el.getAttribute("type") ?? "text").toLowerCase();
    if (type === "submit" || type === "button" || type === "image" || type === "reset" || type === "file")
      continue;
    if ((type === "checkbox" || type === "radio") && !el.hasAttribute("checked")) continue;
    out.push([name, el.getAttribute("value") ?? (type === "checkbox" || type === "radio" ? "on" : "")]);
  }
  return out;
}

function textInputs(form: HTMLElement): HTMLElement[] {
  return form.querySelectorAll("input").filter((el) => {
    const type = (el.getAttribute("type") ?? "text").toLowerCase();
    return (type === "text" || type === "email" || type === "tel") && !!el.getAttribute("name");
  });
}

/** Picks the user field: a name/id/autocomplete that says so, else the first text/email input. */
function userField(form: HTMLElement): string | undefined {
  const inputs = textInputs(form);
  const hint = /user|login|email|mail|account|name|ident/i;
  const best =
    inputs.find((el) => /username|email/i.test(el.getAttribute("autocomplete") ?? "")) ??
    inputs.find((el) => hint.test(el.getAttribute("name") ?? "") || hint.test(el.getAttribute("id") ?? "")) ??
    inputs[0];
  return best?.getAttribute("name");
}

function fillLogin(form: HTMLElement, user: string, password: string, withPassword: boolean): Field[] {
  const fields = baseFields(form);
  const userName = userField(form);
  const pwNames = new Set(
    form
      .querySelectorAll('input[type="password" i]')
      .map((el) => el.getAttribute("name"))
      .filter((n): n is string => !!n),
  );
  const out = fields.map(([n, v]): Field => {
    if (n === userName) return [n, user];
    if (withPassword && pwNames.has(n)) return [n, password];
    return [n, v];
  });
  const button = pickButton(form, false);
  if (button) out.push(button);
  return out;
}

function pickConsentForm(forms: HTMLElement[]): { form: HTMLElement; button: Field | undefined } | undefined {
  for (const form of forms) {
    const button = pickButton(form, true);
    if (button) return { form, button };
  }
  // A single form with no named buttons: submitting it is the approval.
  const only = forms.length === 1 ? forms[0] : undefined;
  if (only && !buttons(only).some((b) => DENY.test(label(b)))) return { form: only, button: undefined };
  return undefined;
}

function buttons(form: HTMLElement): HTMLElement[] {
  return form.querySelectorAll("button, input").filter((el) => {
    const type = (
      el.getAttribute("type") ?? (el.tagName.toLowerCase() === "button" ? "submit" : "text")
    ).toLowerCase();
    return type === "submit" || type === "image";
  });
}

function label(el: HTMLElement): string {
  return [el.getAttribute("name"), el.getAttribute("value"), el.getAttribute("id"), el.text]
    .filter(Boolean)
    .join(" ");
}

/** The approve-like submit button as a name/value pair (undefined when it has no name). */
function pickButton(form: HTMLElement, requireApprove: boolean): Field | undefined {
  const all = buttons(form);
  const approve = all.find((b) => APPROVE.test(label(b)) && !DENY.test(label(b)));
  const chosen = approve ?? (requireApprove ? undefined : all.find((b) => !DENY.test(label(b))));
  if (!chosen) return undefined;
  const name = chosen.getAttribute("name");
  if (!name) return requireApprove && approve ? ["", ""] : undefined;
  return [name, chosen.getAttribute("value") ?? ""];
}

function consentFields(form: HTMLElement, button: Field | undefined): Field[] {
  const out = baseFields(form);
  if (button && button[0] !== "") out.push(button);
  return out;
}

function submit(form: HTMLElement, pageUrl: URL, fields: Field[]): Step {
  const action = form.getAttribute("action");
  const url = action ? new URL(action, pageUrl) : new URL(pageUrl.href);
  const method = (form.getAttribute("method") ?? "GET").toUpperCase() === "POST" ? "POST" : "GET";
  const params = new URLSearchParams();
  for (const [n, v] of fields) params.append(n, v);
  if (method === "GET") {
    url.search = params.toString();
    return { url, method };
  }
  return { url, method, body: params };
}
