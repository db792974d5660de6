// The OpenID provider Stockade's functional tests sign in against (started by tests/support/oidc.py).
//
//   node server.mjs PORT
//
// Issuer http://127.0.0.1:PORT. Environment:
//   OIDC_REDIRECT_URIS              space-separated redirect URIs of the `stockade` client
//   OIDC_POST_LOGOUT_REDIRECT_URIS  space-separated post-logout redirect URIs
//   OIDC_CLIENT_SECRET              secret of the `stockade` and `ci-runner` clients
//   OIDC_JWKS_FILE                  optional: a private JWK set (JSON) to sign with, so tests can
//                                   also forge tokens (expired, ...) signed by the provider's key
//
// Clients: `stockade` (authorization code + PKCE, refresh, client credentials) and `ci-runner`
// (client credentials only: workload identity for CI). The login page is oidc-provider's own
// development interaction: any login name works, the password is not checked. Known names get
// the claims below; any other name gets `<name>@example.test` and the group `/devs`.
// Access tokens for the resource `urn:stockade:api` are JWTs with the audience `stockade-api`;
// `urn:other:api` gives JWTs with the audience `other-api` (a token meant for someone else).
// Prints "listening on <issuer>" once it accepts connections.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] || process.env.OIDC_PORT || 0);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const words = (name) => (process.env[name] || '').split(/\s+/).filter(Boolean);
const secret = process.env.OIDC_CLIENT_SECRET || 'stockade-test-secret';

const ACCOUNTS = {
  alice: { name: 'Alice Liddell', groups: ['/devs', '/devs/core', 'readers'] },
  bob: { name: 'Bob Builder', groups: [] },
};

function claimsOf(sub) {
  const known = ACCOUNTS[sub];
  return {
    sub,
    preferred_username: sub,
    email: `${sub}@example.test`,
    email_verified: true,
    name: known ? known.name : `Test user ${sub}`,
    groups: known ? known.groups : ['/devs'],
  };
}

function signingKeys() {
  if (process.env.OIDC_JWKS_FILE) {
    return JSON.parse(readFileSync(process.env.OIDC_JWKS_FILE, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' }] };
}

const RESOURCES = {
  'urn:stockade:api': 'stockade-api',
  'urn:other:api': 'other-api',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'stockade',
      client_secret: secret,
      redirect_uris: words('OIDC_REDIRECT_URIS'),
      post_logout_redirect_uris: words('OIDC_POST_LOGOUT_REDIRECT_URIS'),
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      scope: 'openid profile email groups offline_access conda:read',
    },
    {
      client_id: 'ci-runner',
      client_secret: secret,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      scope: 'conda:read',
    },
  ],
  jwks: signingKeys(),
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'conda:read'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => claimsOf(sub),
  }),
  // Like Keycloak: a user's access token names the user and carries the groups.
  extraTokenClaims: async (_ctx, token) => {
    if (!token.accountId) return undefined;
    const { preferred_username, email, groups } = claimsOf(token.accountId);
    return { preferred_username, email, groups };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resource) => {
        const audience = RESOURCES[resource];
        if (!audience) throw new errors.InvalidTarget();
        return {
          audience,
          scope: 'conda:read',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: 300,
    AuthorizationCode: 60,
    ClientCredentials: 300,
    IdToken: 300,
    Interaction: 600,
    Grant: 3600,
    Session: 3600,
    RefreshToken: 3600,
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
