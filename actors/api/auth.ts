/**
 * Bearer tokens of the write routes: a JWT signed with the configured HS256 secret or a key of the
 * configured JWKS, whose issuer, audience and expiry are checked. Scopes come from the `scope`
 * claim (space-separated, as in OAuth 2) or a `scopes` array.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { Config } from "../../config/mod.ts";

export type AuthOutcome =
  | { ok: true; subject: string | null; scopes: string[] }
  | { ok: false; status: 401 | 403; error: string; message: string };

export type Authenticator = (authorization: string | undefined, scope: string) => Promise<AuthOutcome>;

const scopesOf = (payload: JWTPayload): string[] => {
  const out: string[] = [];
  if (typeof payload["scope"] === "string") out.push(...payload["scope"].split(" ").filter((s) => s !== ""));
  if (Array.isArray(payload["scopes"])) out.push(...payload["scopes"].filter((s) => typeof s === "string"));
  return out;
};

export function createAuthenticator(config: Config): Authenticator {
  const { jwtSecret, jwksUrl, jwtIssuer, jwtAudience } = config.api;
  const key: Uint8Array | JWTVerifyGetKey | null = jwksUrl
    ? createRemoteJWKSet(new URL(jwksUrl))
    : jwtSecret
      ? new TextEncoder().encode(jwtSecret)
      : null;
  const unauthorized = (message: string): AuthOutcome => ({ ok: false, status: 401, error: "unauthorized", message });
  return async (authorization, scope) => {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
    if (!match?.[1]) return unauthorized("a bearer token is required");
    if (!key) return unauthorized("no token verification key is configured (api.jwtSecret or api.jwksUrl)");
    let payload: JWTPayload;
    try {
      const opts = { issuer: jwtIssuer, audience: jwtAudience, requiredClaims: ["exp"] };
      // Two calls so each overload of jwtVerify sees one key type.
      payload =
        key instanceof Uint8Array
          ? (await jwtVerify(match[1], key, { ...opts, algorithms: ["HS256"] })).payload
          : (await jwtVerify(match[1], key, opts)).payload;
    } catch (err) {
      if (err instanceof errors.JWTExpired) return unauthorized("the token has expired");
      if (err instanceof errors.JWTClaimValidationFailed)
        return unauthorized(`the token's ${err.claim} is not accepted`);
      return unauthorized("the token is not valid");
    }
    const scopes = scopesOf(payload);
    if (!scopes.includes(scope))
      return { ok: false, status: 403, error: "forbidden", message: `the token lacks the '${scope}' scope` };
    return { ok: true, subject: payload.sub ?? null, scopes };
  };
}
