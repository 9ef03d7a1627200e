// The OpenID Connect identity provider of license-ledger's end-to-end tests.
//
// Why: the ledger accepts OIDC access tokens (JWT) from configured issuers (issue #15). Its tests
// need tokens a real provider signed, obtained the way a real client obtains them, so this is the
// certified `oidc-provider` library (the exact version is pinned in package.json and
// package-lock.json), not a hand-made JWT. The Rust harness `tests/src/idp.rs` installs it
// (`npm ci`), starts this script and drives the authorization code flow with PKCE over plain HTTP.
//
// What it is:
// - an issuer on `http://127.0.0.1:PORT` (`--port`, 0 = any free port); once listening it prints
//   exactly one line to stdout, `{"issuer":"http://127.0.0.1:PORT"}` (everything else goes to
//   stderr);
// - signing keys generated at start and lost at exit: an ES256 (P-256) and an RS256 (2048-bit) key,
//   both published at `/jwks`; access tokens are signed with ES256 unless the authorization request
//   asks `access_token_alg=RS256`; ID tokens with RS256 (the OIDC default);
// - one public client, `ledger-tests` (no client secret, PKCE S256 required), redirect URI
//   `http://127.0.0.1/callback` (nothing listens there: the client reads `code` from the Location
//   header of the last redirect);
// - JWT access tokens (`typ: at+jwt`) for the resource named by the RFC 8707 `resource` parameter.
//   Resource indicators must be absolute URIs, so an audience that is not one (such as
//   `license-ledger`) is requested as `urn:ledger-tests:audience:<audience>`, and the token's
//   `aud` is `<audience>`; any other absolute URI is its own audience. Without `resource` the
//   audience is `license-ledger`. Access tokens carry `iss`, `sub`, `aud`, `exp`, `iat`, `jti`,
//   `client_id`, `scope` (the scopes granted, `openid email ledger` as the harness asks) and the
//   account's `email` and `email_verified` (oidc-provider sets no `nbf`);
// - any account: the authorization request's `login_hint` names it,
//   `sub=alice;email=alice@example.com;verified=true` (`email` defaults to `<sub>@example.com`,
//   `verified` to true). The interaction page `/interaction/<uid>` needs no human: a GET logs that
//   account in and grants everything requested (scopes `openid email ledger` and the resource),
//   then redirects back to the authorization endpoint, which redirects to the client with `code`;
// - access token lifetime: `--access-token-ttl SECONDS` (default 3600), or per authorization
//   request `access_token_ttl=SECONDS`, for tests that need a token that really expires;
// - `--exit-with-stdin`: exit when stdin closes, so a test process that dies without killing its
//   child (SIGKILL, abort) does not leave a provider running.
//
// Everything is in memory (oidc-provider's development MemoryAdapter): a restart forgets sessions,
// grants, tokens and keys.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// stdout carries the issuer line only: the library prints its notices with console.info/log.
console.info = console.error;
console.log = console.error;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'access-token-ttl': { type: 'string', default: '3600' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});

function positiveInteger(text, what) {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new Error(`${what} must be a positive integer, got ${JSON.stringify(text)}`);
  }
  return n;
}

const port = Number(args.port);
if (!Number.isSafeInteger(port) || port < 0 || port > 65535) {
  throw new Error(`--port must be a port number, got ${JSON.stringify(args.port)}`);
}
const defaultAccessTokenTtl = positiveInteger(args['access-token-ttl'], '--access-token-ttl');

if (args['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

const CLIENT_ID = 'ledger-tests';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const DEFAULT_AUDIENCE = 'license-ledger';
const AUDIENCE_URN = 'urn:ledger-tests:audience:';
// The scope of every resource server here (what a token for it may carry besides OIDC scopes).
const RESOURCE_SCOPE = 'ledger';
const SIGNING_ALGS = new Set(['ES256', 'RS256']);

function audienceOf(resource) {
  return resource.startsWith(AUDIENCE_URN) ? resource.slice(AUDIENCE_URN.length) : resource;
}

// `sub=alice;email=alice@example.com;verified=true` -> the account's claims.
function parseLoginHint(hint) {
  if (typeof hint !== 'string' || hint === '') {
    throw new errors.InvalidRequest('login_hint is required: sub=<id>;email=<address>;verified=<true|false>');
  }
  const fields = {};
  for (const part of hint.split(';')) {
    const at = part.indexOf('=');
    if (at <= 0) {
      throw new errors.InvalidRequest(`login_hint part ${JSON.stringify(part)} is not name=value`);
    }
    fields[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  if (!fields.sub) {
    throw new errors.InvalidRequest('login_hint must name the account: sub=<id>');
  }
  if (fields.verified !== undefined && !['true', 'false'].includes(fields.verified)) {
    throw new errors.InvalidRequest('login_hint verified must be true or false');
  }
  return {
    sub: fields.sub,
    email: fields.email ?? `${fields.sub}@example.com`,
    email_verified: fields.verified !== 'false',
  };
}

// What each grant (one per login) was issued with: the account's claims and the token options of
// its authorization request. Keyed by grant id, so two logins of one subject with different
// claims do not mix; `accounts` keeps each subject's latest claims for lookups without a grant.
const grants = new Map();
const accounts = new Map();

function claimsFor(accountId, grantId) {
  return grants.get(grantId)?.account ?? accounts.get(accountId) ?? {
    sub: accountId,
    email: `${accountId}@example.com`,
    email_verified: true,
  };
}

function privateJwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomUUID()}` };
}

const jwks = {
  keys: [
    privateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
    privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
  ],
};

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_name: 'license-ledger tests',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
    },
  ],
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  extraParams: {
    async access_token_alg(_ctx, value) {
      if (value !== undefined && !SIGNING_ALGS.has(value)) {
        throw new errors.InvalidRequest('access_token_alg must be ES256 or RS256');
      }
    },
    async access_token_ttl(_ctx, value) {
      if (value !== undefined && !/^[1-9][0-9]{0,8}$/.test(value)) {
        throw new errors.InvalidRequest('access_token_ttl must be a positive number of seconds');
      }
    },
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? `${AUDIENCE_URN}${DEFAULT_AUDIENCE}`,
      // The code's resource is the token's, even with `openid` in scope and no `resource` at the
      // token endpoint.
      useGrantedResource: async () => true,
      async getResourceServerInfo(ctx, resource) {
        // At the token endpoint the grant is known: its request's options apply.
        const grantId = ctx.oidc.entities.Grant?.jti;
        const options = grants.get(grantId)?.options ?? {};
        return {
          audience: audienceOf(resource),
          scope: RESOURCE_SCOPE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: options.ttl ?? defaultAccessTokenTtl,
          jwt: { sign: { alg: options.alg ?? 'ES256' } },
        };
      },
    },
  },
  async extraTokenClaims(_ctx, token) {
    if (token.kind !== 'AccessToken') return undefined;
    const { email, email_verified } = claimsFor(token.accountId, token.grantId);
    return { email, email_verified };
  },
  async findAccount(_ctx, accountId, token) {
    return {
      accountId,
      async claims() {
        return claimsFor(accountId, token?.grantId);
      },
    };
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultAccessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error', err));

// The interaction: log in the account of `login_hint` and grant what was requested, no form.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { params } = details;
  const account = parseLoginHint(params.login_hint);

  const grant = new provider.Grant({ accountId: account.sub, clientId: params.client_id });
  const requested = String(params.scope ?? '').split(' ').filter(Boolean);
  grant.addOIDCScope(requested.filter((scope) => scope === 'openid' || scope === 'email').join(' '));
  const resources = [params.resource ?? []].flat();
  for (const resource of resources) {
    grant.addResourceScope(resource, requested.join(' '));
  }
  const grantId = await grant.save();

  grants.set(grantId, {
    account,
    options: {
      alg: params.access_token_alg,
      ttl: params.access_token_ttl === undefined ? undefined : Number(params.access_token_ttl),
    },
  });
  accounts.set(account.sub, account);

  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: account.sub }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const { pathname } = new URL(req.url, issuer);
  if (!/^\/interaction\/[^/]+$/.test(pathname)) {
    callback(req, res);
    return;
  }
  interaction(req, res).catch((err) => {
    console.error('interaction failed', err);
    if (!res.headersSent) {
      res.statusCode = err.statusCode ?? 400;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ error: err.error ?? 'interaction_failed', error_description: err.error_description ?? err.message }));
    }
  });
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
