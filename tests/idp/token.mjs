// Prints an access token of the test identity provider (server.mjs), for trying license-ledger's
// sign-in by hand (README, "Users and single sign-on"):
//
//   node token.mjs --issuer http://127.0.0.1:PORT --sub alice --email alice@example.com
//
// It does what a real client does, and what the Rust harness (tests/src/idp.rs) does: the
// authorization code flow with PKCE for the public client `ledger-tests`, the account named by
// `login_hint` (the provider's interaction needs no human), the code exchanged for a JWT access
// token whose audience is `--audience` (default `license-ledger`). Only Node's own modules.

import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    sub: { type: 'string', default: 'alice' },
    email: { type: 'string' },
    verified: { type: 'string', default: 'true' },
    audience: { type: 'string', default: 'license-ledger' },
  },
});
if (!args.issuer) {
  console.error('usage: node token.mjs --issuer URL [--sub S] [--email E] [--verified true|false] [--audience A]');
  process.exit(2);
}

const CLIENT_ID = 'ledger-tests';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const base64url = (bytes) => Buffer.from(bytes).toString('base64url');

const discovery = await (await fetch(`${args.issuer}/.well-known/openid-configuration`)).json();
const verifier = base64url(crypto.randomBytes(32));
const challenge = base64url(crypto.createHash('sha256').update(verifier).digest());
const state = base64url(crypto.randomBytes(16));
const resource = `urn:ledger-tests:audience:${args.audience}`;
const email = args.email ?? `${args.sub}@example.com`;

let url = new URL(discovery.authorization_endpoint);
for (const [k, v] of Object.entries({
  client_id: CLIENT_ID,
  response_type: 'code',
  redirect_uri: REDIRECT_URI,
  scope: 'openid email ledger',
  state,
  code_challenge: challenge,
  code_challenge_method: 'S256',
  resource,
  login_hint: `sub=${args.sub};email=${email};verified=${args.verified}`,
})) {
  url.searchParams.set(k, v);
}

// Follow the provider's redirects by hand, keeping its cookies, until it sends us to the client.
const cookies = new Map();
let code;
for (let i = 0; i < 10 && !code; i += 1) {
  const response = await fetch(url, {
    redirect: 'manual',
    headers: { cookie: [...cookies].map(([n, v]) => `${n}=${v}`).join('; ') },
  });
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const at = pair.indexOf('=');
    cookies.set(pair.slice(0, at), pair.slice(at + 1));
  }
  const location = response.headers.get('location');
  if (!location) {
    console.error(`${url} answered ${response.status}: ${await response.text()}`);
    process.exit(1);
  }
  url = new URL(location, url);
  if (url.href.startsWith(REDIRECT_URI)) {
    if (url.searchParams.get('error')) {
      console.error(`refused: ${url.searchParams.get('error')}: ${url.searchParams.get('error_description')}`);
      process.exit(1);
    }
    code = url.searchParams.get('code');
  }
}
if (!code) {
  console.error('the flow did not reach the client');
  process.exit(1);
}

const token = await fetch(discovery.token_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    client_id: CLIENT_ID,
    code_verifier: verifier,
    resource,
  }),
});
const answer = await token.json();
if (!answer.access_token) {
  console.error(`the token endpoint answered ${token.status}: ${JSON.stringify(answer)}`);
  process.exit(1);
}
process.stdout.write(`${answer.access_token}\n`);
