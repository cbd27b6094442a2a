// Test-only OpenID Provider for gatehouse-policy's end-to-end OIDC test (policy/tests/oidc.rs),
// the gateway's OAUTHBEARER tests and the console's SSO test (tests/python/test_console_oidc.py).
//
// Usage: node tests/oidc/issuer.mjs [port]   (port 0 or omitted: pick a free port)
//
// Listens on 127.0.0.1 only and prints `READY <issuer>` on stdout once it accepts requests.
// The RS256 signing key is generated at start and lives only in memory; it is test-only.
// Client `gateway-test` / `secret-123` may use client_credentials with scope `kafka`; access
// tokens are JWTs whose audience is the requested resource indicator (default
// `urn:kafka:gateway`; `urn:kafka:other` is also allowed so tests can get a foreign-audience token).
//
// Client `console-test` / `console-secret-456` (the web console) may use the authorization_code
// grant with PKCE, scopes `openid kafka`, redirecting to `http://127.0.0.1:<any port>/console/oidc/callback`
// (a native client: loopback redirect URIs match on any port, RFC 8252 section 7.3). Users log in on a
// minimal login page served at `/interaction/<uid>` (test users below, e.g. `alice` / `alice-password`);
// consent is implied. The access token's `sub` is the user name.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const requestedPort = Number.parseInt(process.argv[2] ?? '0', 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`invalid port: ${process.argv[2]}`);
  process.exit(2);
}

const DEFAULT_RESOURCE = 'urn:kafka:gateway';
const ALLOWED_RESOURCES = new Set([DEFAULT_RESOURCE, 'urn:kafka:other']);

// Test users of the interactive login: name -> password.
const USERS = new Map([
  ['alice', 'alice-password'],
  ['bob', 'bob-password'],
]);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'gatehouse-test-rs256', alg: 'RS256', use: 'sig' };

const server = createServer();
server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gateway-test',
        client_secret: 'secret-123',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'kafka',
      },
      {
        client_id: 'console-test',
        client_secret: 'console-secret-456',
        application_type: 'native',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/console/oidc/callback'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'openid kafka',
      },
    ],
    findAccount: (_ctx, id) => (USERS.has(id)
      ? { accountId: id, claims: () => ({ sub: id, preferred_username: id }) }
      : undefined),
    scopes: ['openid', 'kafka'],
    jwks: { keys: [signingKey] },
    cookies: { keys: ['gatehouse-test-only-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => DEFAULT_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (!ALLOWED_RESOURCES.has(resourceIndicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'kafka',
            audience: resourceIndicator,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?(?:\?.*)?$/.exec(req.url ?? '');
    if (!m) {
      callback(req, res);
      return;
    }
    interaction(provider, req, res, m[2] === '/login').catch((err) => {
      res.statusCode = 400;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`interaction failed: ${err.message}`);
    });
  });
  console.log(`READY ${issuer}`);
});

const escapeHtml = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, clientId, error) {
  res.statusCode = error ? 401 : 200;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(`<!DOCTYPE html><html><head><title>Test issuer: sign in</title></head><body>
<h1>Test issuer</h1><p>Sign in to continue to <b>${escapeHtml(clientId)}</b>.</p>
${error ? `<p id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>User <input name="login" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button></form></body></html>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The login page (prompt `login`) and an implied consent (prompt `consent`).
async function interaction(provider, req, res, isLogin) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (isLogin && req.method === 'POST') {
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    if (!USERS.has(login) || USERS.get(login) !== form.get('password')) {
      loginPage(res, uid, params.client_id, 'Invalid user or password.');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } },
      { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'login') {
    loginPage(res, uid, params.client_id);
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } },
      { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unsupported prompt ${prompt.name}`);
}

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
