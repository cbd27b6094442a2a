// Test-only OpenID Provider for gatehouse-policy's end-to-end OIDC test (policy/tests/oidc.rs).
//
// Usage: node tests/oidc/issuer.mjs [port]   (port 0 or omitted: pick a free port)
//
// Listens on 127.0.0.1 only and prints `READY <issuer>` on stdout once it accepts requests.
// The RS256 signing key is generated at start and lives only in memory; it is test-only.
// Client `gateway-test` / `secret-123` may use client_credentials with scope `kafka`; access
// tokens are JWTs whose audience is the requested resource indicator (default
// `urn:kafka:gateway`; `urn:kafka:other` is also allowed so tests can get a foreign-audience token).
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
    ],
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
  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
