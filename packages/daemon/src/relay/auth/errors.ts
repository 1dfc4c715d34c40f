/** Errors of the headless OAuth driver. Messages never carry a secret. */

export type AuthErrorCode =
  | "LOGIN_REJECTED"
  | "LOGIN_FORM"
  | "AUTHORIZATION_DENIED"
  | "STATE_MISMATCH"
  | "RESOURCE_MISMATCH"
  | "AUTH_FAILED"
  | "AUTH_UNAVAILABLE"
  | "CREDENTIALS_UNAVAILABLE";

export class AuthError extends Error {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "AuthError";
  }
}

/** The login form came back after we posted the credentials: wrong user or password. */
export class LoginRejectedError extends AuthError {
  constructor() {
    super("LOGIN_REJECTED", "login was rejected: check LOXONE_USER/LOXONE_PASSWORD");
    this.name = "LoginRejectedError";
  }
}

/** The authorization pages could not be driven headlessly (no form, unexpected page, too many steps). */
export class LoginFormError extends AuthError {
  constructor(message: string) {
    super("LOGIN_FORM", message);
    this.name = "LoginFormError";
  }
}

/** The authorization server redirected back with `error=` (e.g. access_denied). */
export class AuthorizationDeniedError extends AuthError {
  constructor(
    readonly oauthError: string,
    description?: string,
  ) {
    super(
      "AUTHORIZATION_DENIED",
      `the authorization server refused the login (${oauthError}${description ? `: ${description}` : ""}); check the account's rights, then run \`loxmcp relogin\``,
    );
    this.name = "AuthorizationDeniedError";
  }
}

/** The advertised OAuth resource (token audience) is not ours: refusing to ask a token for it. */
export class ResourceMismatchError extends AuthError {
  constructor(message: string) {
    super("RESOURCE_MISMATCH", message);
    this.name = "ResourceMismatchError";
  }
}

/** The daemon gave up logging in (auth_failed) until `loxmcp relogin` or a config change. */
export class AuthFailedError extends AuthError {
  constructor(reason: string) {
    super("AUTH_FAILED", `${reason} (login paused: fix the credentials, then run \`loxmcp relogin\`)`);
    this.name = "AuthFailedError";
  }
}

/** Authorization server unreachable or answering errors; worth retrying later. */
export class AuthUnavailableError extends AuthError {
  constructor(message: string) {
    super("AUTH_UNAVAILABLE", message);
    this.name = "AuthUnavailableError";
  }
}

/**
 * The password could not be obtained (LOXONE_PASSWORD_COMMAND failed, …): a configuration problem.
 * Login pauses (auth_failed) until `loxmcp relogin` or a restart with a new configuration; the
 * message names the setting and what went wrong, never the command's output on stdout.
 */
export class CredentialsUnavailableError extends AuthError {
  constructor(message: string) {
    super("CREDENTIALS_UNAVAILABLE", message);
    this.name = "CredentialsUnavailableError";
  }
}

/**
 * The OAuth helper process itself failed (could not start, died, hung, another version): "retry
 * later" like any unavailability, but not a reason to discover the authorization server again.
 */
export class HelperFailedError extends AuthUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = "HelperFailedError";
  }
}
