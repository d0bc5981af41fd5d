/**
 * Bearer tokens of the write routes: a JWT signed with the configured HS256 secret or a key of the
 * configured JWKS, whose issuer, audience and expiry are checked. Scopes come from the `scope`
 * claim (space-separated, as in OAuth 2) or a `scopes` array. A valid token also names the client
 * for rate limiting (`client_id`, else `sub`).
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { Config } from "../../config/mod.ts";

/** What a verified token says about its bearer, beyond its scopes. */
export type TokenClaims = {
  /** The feed source the bearer publishes as (`source` claim); the request body cannot choose it. */
  source: string | null;
  /** Regions the bearer may route its submissions to (`regions` claim). */
  regions: string[];
};

export type AuthOutcome =
  | { ok: true; subject: string | null; scopes: string[]; claims: TokenClaims }
  | { ok: false; status: 401 | 403; error: string; message: string };

export type Authenticator = (authorization: string | undefined, scope: string) => Promise<AuthOutcome>;

const scopesOf = (payload: JWTPayload): string[] => {
  const out: string[] = [];
  if (typeof payload["scope"] === "string") out.push(...payload["scope"].split(" ").filter((s) => s !== ""));
  if (Array.isArray(payload["scopes"])) out.push(...payload["scopes"].filter((s) => typeof s === "string"));
  return out;
};

const claimsOf = (payload: JWTPayload): TokenClaims => ({
  source: typeof payload["source"] === "string" ? payload["source"] : null,
  regions: Array.isArray(payload["regions"]) ? payload["regions"].filter((r) => typeof r === "string") : [],
});

/** The client a verified token names: its `client_id` claim, else its subject. */
const clientOf = (payload: JWTPayload): string | null =>
  typeof payload["client_id"] === "string" && payload["client_id"] !== ""
    ? payload["client_id"]
    : (payload.sub ?? null);

/** Who sent a request, by its bearer token: the client of a valid token, else null (no token, or not valid). */
export type ClientIdentifier = (authorization: string | undefined) => Promise<string | null>;

type Verified = { ok: true; payload: JWTPayload } | { ok: false; status: 401; error: string; message: string };

function createVerifier(config: Config): (authorization: string | undefined) => Promise<Verified> {
  const { jwtSecret, jwksUrl, jwtIssuer, jwtAudience } = config.api;
  const key: Uint8Array | JWTVerifyGetKey | null = jwksUrl
    ? createRemoteJWKSet(new URL(jwksUrl))
    : jwtSecret
      ? new TextEncoder().encode(jwtSecret)
      : null;
  const unauthorized = (message: string): Verified => ({ ok: false, status: 401, error: "unauthorized", message });
  return async (authorization) => {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
    if (!match?.[1]) return unauthorized("a bearer token is required");
    if (!key) return unauthorized("no token verification key is configured (api.jwtSecret or api.jwksUrl)");
    try {
      const opts = { issuer: jwtIssuer, audience: jwtAudience, requiredClaims: ["exp"] };
      // Two calls so each overload of jwtVerify sees one key type.
      const payload =
        key instanceof Uint8Array
          ? (await jwtVerify(match[1], key, { ...opts, algorithms: ["HS256"] })).payload
          : (await jwtVerify(match[1], key, opts)).payload;
      const lifetime = lifetimeProblem(payload, config.api.maxTokenLifetimeS, Date.now() / 1000);
      return lifetime ? unauthorized(lifetime) : { ok: true, payload };
    } catch (err) {
      if (err instanceof errors.JWTExpired) return unauthorized("the token has expired");
      if (err instanceof errors.JWTClaimValidationFailed)
        return unauthorized(`the token's ${err.claim} is not accepted`);
      return unauthorized("the token is not valid");
    }
  };
}

/** Clocks of token issuers and API processes may differ by this much. */
const CLOCK_TOLERANCE_S = 60;

/**
 * jose checks that `exp` has not passed, but not that `iat` is not in the future nor that the
 * token ends within a sane time: a token issued "tomorrow", or expiring in the year 5000, is a
 * leaked signing key's forgery or an issuer's bug, never a client to serve.
 */
function lifetimeProblem(payload: JWTPayload, maxLifetimeS: number, nowS: number): string | null {
  if (payload.iat !== undefined && payload.iat > nowS + CLOCK_TOLERANCE_S) return "the token's iat is in the future";
  const exp = payload.exp ?? Number.POSITIVE_INFINITY;
  const from = payload.iat ?? nowS;
  if (exp - from > maxLifetimeS + CLOCK_TOLERANCE_S)
    return `the token lives longer than the ${maxLifetimeS} s allowed (api.maxTokenLifetimeS)`;
  return null;
}

export function createAuthenticator(config: Config): Authenticator {
  const verify = createVerifier(config);
  return async (authorization, scope) => {
    const v = await verify(authorization);
    if (!v.ok) return v;
    const scopes = scopesOf(v.payload);
    if (!scopes.includes(scope))
      return { ok: false, status: 403, error: "forbidden", message: `the token lacks the '${scope}' scope` };
    return { ok: true, subject: v.payload.sub ?? null, scopes, claims: claimsOf(v.payload) };
  };
}

/**
 * The client behind a request for rate limiting: only a token that verifies names a client (a
 * forged one cannot pick another client's budget, nor escape its address's); no scope is needed.
 */
export function createClientIdentifier(config: Config): ClientIdentifier {
  const verify = createVerifier(config);
  return async (authorization) => {
    if (authorization === undefined) return null;
    const v = await verify(authorization);
    return v.ok ? clientOf(v.payload) : null;
  };
}
