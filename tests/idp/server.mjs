// The OpenID Connect identity provider of license-ledger's end-to-end tests.
//
// Why: the ledger accepts OIDC access tokens (JWT) from configured issuers (issue #15). Its tests
// need tokens a real provider signed, obtained the way a real client obtains them, so this is the
// certified `oidc-provider` library (the exact version is pinned in package.json and
// package-lock.json), not a hand-made JWT. The Rust harness `tests/src/idp.rs` installs it
// (`npm ci`), starts this script and drives the authorization code flow with PKCE over plain HTTP.
// The ledger's web UI (issue #18) logs people in through it too: its browser tests (headless
// Chromium, `tests/src/browser.rs`) fill this provider's login form as a person would.
//
// What it is:
// - an issuer on `http://127.0.0.1:PORT` (`--port`, 0 = any free port); once listening it prints
//   exactly one line to stdout, `{"issuer":"http://127.0.0.1:PORT"}` (everything else goes to
//   stderr);
// - signing keys generated at start and lost at exit: an ES256 (P-256) and an RS256 (2048-bit) key,
//   both published at `/jwks`; access tokens are signed with ES256 unless the authorization request
//   asks `access_token_alg=RS256`; ID tokens with RS256 (the OIDC default);
// - three clients, all with PKCE S256 required and the authorization code grant only:
//   - `ledger-tests`, public (no client secret), redirect URI `http://127.0.0.1/callback` (nothing
//     listens there: the harness reads `code` from the Location header of the last redirect);
//   - `ledger-ui`, public, for the ledger's web UI (issue #18) as a browser test runs it: redirect
//     URIs `http://127.0.0.1/auth/callback` and `http://localhost/auth/callback`;
//   - `ledger-ui-confidential`, the same with the secret `ledger-ui-secret` (client_secret_basic),
//     for the UI's client-secret path.
//   All are `application_type: 'native'`, so that a loopback redirect URI matches with any port
//   (RFC 8252 section 7.3; oidc-provider's Client#redirectUriAllowed drops the port of an `http`
//   URI on `localhost`, `127.0.0.1` or `[::1]` before comparing, when no registered URI matches
//   exactly): the ledger under test listens on a random port. The host must still be the one
//   registered (`127.0.0.1` and `localhost` are not interchangeable), and so must the path;
// - JWT access tokens (`typ: at+jwt`) for the resource named by the RFC 8707 `resource` parameter.
//   Resource indicators must be absolute URIs, so an audience that is not one (such as
//   `license-ledger`) is requested as `urn:ledger-tests:audience:<audience>`, and the token's
//   `aud` is `<audience>`; any other absolute URI is its own audience. Without `resource` the
//   audience is `license-ledger`. Access tokens carry `iss`, `sub`, `aud`, `exp`, `iat`, `jti`,
//   `client_id`, `scope` (the scopes granted, `openid email ledger` as the harness asks) and the
//   account's `email` and `email_verified` (oidc-provider sets no `nbf`);
// - scopes `openid`, `email` (claims `email`, `email_verified`) and `profile` (claim `name`, the
//   subject: the accounts have no other name); ID tokens carry the claims of the scopes granted
//   (`conformIdTokenClaims: false`), so a code-flow client reads the email from its ID token;
// - any account, logged in at the interaction page `/interaction/<uid>` in one of two ways:
//   - with a `login_hint` in the authorization request, no human: it names the account,
//     `sub=alice;email=alice@example.com;verified=true` (`email` defaults to `<sub>@example.com`,
//     `verified` to true), and any request to the page logs that account in and grants what was
//     requested (the OIDC scopes among `openid email profile`, and the requested scopes on the
//     requested resources), then redirects back to the authorization endpoint, which redirects
//     to the client with `code`;
//   - without one, a human (or a browser test): a GET shows a login form (Subject, required;
//     Email; "Email verified", checked by default; "Sign in") that POSTs back to the same page,
//     which logs that account in and grants the same way (on the default resource,
//     `urn:ledger-tests:audience:license-ledger`, when the request named none); the subject,
//     email and checkbox are the `login_hint`'s `sub`, `email` and `verified`.
//   Every authorization request passes through this page, even in a browser signed in before:
//   oidc-provider asks the user of a native client each time (its consent check
//   `native_client_prompt`), so the form shows at every sign-in without a hint;
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
const UI_CLIENT_ID = 'ledger-ui';
const UI_CONFIDENTIAL_CLIENT_ID = 'ledger-ui-confidential';
const UI_CONFIDENTIAL_CLIENT_SECRET = 'ledger-ui-secret';
// Registered without a port; any port matches (native clients, RFC 8252 section 7.3).
const UI_REDIRECT_URIS = ['http://127.0.0.1/auth/callback', 'http://localhost/auth/callback'];
// The OIDC scopes an interaction grants, when requested.
const OIDC_SCOPES = new Set(['openid', 'email', 'profile']);
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
  return accountOf(fields.sub, fields.email, fields.verified !== 'false');
}

// An account's claims; `name` (scope `profile`) is its subject.
function accountOf(sub, email, emailVerified) {
  return {
    sub,
    email: email || `${sub}@example.com`,
    email_verified: emailVerified,
    name: sub,
  };
}

// What each grant (one per login) was issued with: the account's claims and the token options of
// its authorization request. Keyed by grant id, so two logins of one subject with different
// claims do not mix; `accounts` keeps each subject's latest claims for lookups without a grant.
const grants = new Map();
const accounts = new Map();

function claimsFor(accountId, grantId) {
  return grants.get(grantId)?.account ?? accounts.get(accountId) ?? accountOf(accountId, '', true);
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
    {
      client_id: UI_CLIENT_ID,
      client_name: 'license-ledger web UI',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: UI_REDIRECT_URIS,
    },
    {
      client_id: UI_CONFIDENTIAL_CLIENT_ID,
      client_secret: UI_CONFIDENTIAL_CLIENT_SECRET,
      client_name: 'license-ledger web UI (confidential)',
      application_type: 'native',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: UI_REDIRECT_URIS,
    },
  ],
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The ID token of the code flow carries the claims of its scopes, not only `sub`: the UI reads
  // the user's email from it without calling the userinfo endpoint. (8.8.1 strips them only when
  // the access token has no audience, and here every one has a resource's; `false` keeps the
  // claims whatever the resource configuration becomes.)
  conformIdTokenClaims: false,
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

// The resource an interaction grants when the authorization request named none (what
// `defaultResource` gives the token endpoint).
const DEFAULT_RESOURCE = `${AUDIENCE_URN}${DEFAULT_AUDIENCE}`;
// A login form's body is a few short fields.
const MAX_FORM_BYTES = 16 * 1024;

// The interaction page `/interaction/<uid>`: with a `login_hint`, that account is logged in at
// once (no human, what the Rust harness relies on); without one, a login form for a human or a
// browser test.
async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  const { params } = details;
  if (params.login_hint !== undefined && params.login_hint !== '') {
    await login(req, res, details, parseLoginHint(params.login_hint), [params.resource ?? []].flat());
    return;
  }

  // The interaction cookie names the pending request; a form of another (stale) one must not
  // log its account into this one.
  if (details.uid !== uid) {
    throw new errors.InvalidRequest('this login page belongs to another authorization request: start again from the client');
  }
  if (req.method === 'GET' || req.method === 'HEAD') {
    sendForm(res, 200, uid, params, { subject: '', email: '', verified: true });
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.setHeader('Allow', 'GET, HEAD, POST');
    res.end();
    return;
  }
  const form = await readForm(req);
  const submitted = {
    subject: (form.get('subject') ?? '').trim(),
    email: (form.get('email') ?? '').trim(),
    // An unchecked checkbox is absent from the form.
    verified: form.has('email_verified'),
  };
  if (submitted.subject === '') {
    sendForm(res, 400, uid, params, submitted, 'Subject is required.');
    return;
  }
  const account = accountOf(submitted.subject, submitted.email, submitted.verified);
  await login(req, res, details, account, [params.resource ?? DEFAULT_RESOURCE].flat());
}

// Logs `account` in and grants what the request asked: its OIDC scopes among `openid email
// profile`, and its scopes on each of `resources`; then redirects (303) back to the
// authorization endpoint, which sends the browser on to the client with `code`.
async function login(req, res, details, account, resources) {
  const { params } = details;
  const grant = new provider.Grant({ accountId: account.sub, clientId: params.client_id });
  const requested = String(params.scope ?? '').split(' ').filter(Boolean);
  grant.addOIDCScope(requested.filter((scope) => OIDC_SCOPES.has(scope)).join(' '));
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

// The body of a form POST (application/x-www-form-urlencoded), at most MAX_FORM_BYTES.
async function readForm(req) {
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new errors.InvalidRequest('the login form is posted as application/x-www-form-urlencoded');
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) {
      throw new errors.InvalidRequest('the login form is too large');
    }
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Everything echoed into the page goes through here.
function escapeHtml(value) {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

// The login form: every field labelled, the error (if any) announced and linked to the field.
function sendForm(res, status, uid, params, values, error) {
  const action = `/interaction/${encodeURIComponent(uid)}`;
  const invalid = error ? ' aria-invalid="true" aria-describedby="error"' : '';
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - license-ledger test identity provider</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input[type="text"] { display: block; box-sizing: border-box; width: 100%; padding: 0.5rem; font: inherit; }
  .check { display: flex; gap: 0.5rem; align-items: center; margin-top: 1rem; }
  .check label { margin: 0; }
  .hint { margin: 0.25rem 0 0; color: #444; font-size: 0.9rem; }
  .error { color: #a00; font-weight: 600; }
  button { margin-top: 1.5rem; padding: 0.5rem 1.5rem; font: inherit; }
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
<p>Test identity provider of license-ledger: any account is accepted. Signing in to
<strong>${escapeHtml(params.client_id ?? '')}</strong> with the scopes
<code>${escapeHtml(params.scope ?? '')}</code>.</p>
${error ? `<p id="error" class="error" role="alert">${escapeHtml(error)}</p>\n` : ''}<form method="post" action="${escapeHtml(action)}">
<label for="subject">Subject</label>
<input id="subject" name="subject" type="text" required autocomplete="username" value="${escapeHtml(values.subject)}"${invalid}>
<label for="email">Email</label>
<input id="email" name="email" type="text" inputmode="email" autocomplete="email" value="${escapeHtml(values.email)}" aria-describedby="email-hint">
<p id="email-hint" class="hint">Empty: &lt;subject&gt;@example.com.</p>
<div class="check">
<input id="email_verified" name="email_verified" type="checkbox" value="true"${values.verified ? ' checked' : ''}>
<label for="email_verified">Email verified</label>
</div>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const { pathname } = new URL(req.url, issuer);
  const match = /^\/interaction\/([^/]+)$/.exec(pathname);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1]).catch((err) => {
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
