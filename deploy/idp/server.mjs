// Local OpenID Connect provider for bilan (development, demo and tests only).
// Built on oidc-provider; all state is in memory and lost on restart.
import { readFileSync } from 'node:fs';
import { Provider, errors } from 'oidc-provider';

const env = (name, fallback) => process.env[name] || fallback;
const list = (value) => value.split(',').map((item) => item.trim()).filter(Boolean);

const PORT = Number(env('IDP_PORT', '9400'));
const HOST = env('IDP_HOST', '127.0.0.1');
const ISSUER = env('IDP_ISSUER', `http://127.0.0.1:${PORT}`);
const AUDIENCE = env('BILAN_AUDIENCE', 'http://127.0.0.1:8000/fhir');
const WEB_REDIRECT_URIS = list(env('BILAN_WEB_REDIRECT_URIS', 'http://127.0.0.1:8000/auth/callback'));
const POST_LOGOUT_URIS = list(env('BILAN_POST_LOGOUT_URIS', 'http://127.0.0.1:8000/'));
const COOKIE_KEYS = list(env('IDP_COOKIE_KEYS', 'bilan-dev-idp-cookie-key-1,bilan-dev-idp-cookie-key-2'));

const readJwk = (name) => JSON.parse(readFileSync(new URL(`./keys/${name}.jwk.json`, import.meta.url)));

// Machine clients may sign their assertions with RS384 or RS256: register the
// public key without its `alg` so that both algorithms are accepted.
const publicJwks = (name) => {
  const { alg, ...jwk } = readJwk(`${name}.public`);
  return { keys: [jwk] };
};

// ---------------------------------------------------------------------------
// Demo users (every password is "demo")
// ---------------------------------------------------------------------------

const PASSWORD = 'demo';
const USERS = {
  'dr.lambert': {
    sub: 'psc-810003456786', role: 'prescriber', rpps: '10003456786', given_name: 'Claire', family_name: 'Lambert',
  },
  'dr.nguyen': {
    sub: 'psc-810123456781', role: 'prescriber', rpps: '10123456781', given_name: 'Paul', family_name: 'Nguyen',
  },
  'accueil.martin': {
    sub: 'staff-accueil-martin', role: 'reception', lab_finess: '750100001', given_name: 'Julie', family_name: 'Martin',
  },
  'tech.bernard': {
    sub: 'staff-tech-bernard', role: 'technician', lab_finess: '750100001', given_name: 'Sophie', family_name: 'Bernard',
  },
  'bio.durand': {
    sub: 'psc-810000000017', role: 'biologist', rpps: '10000000017', lab_finess: '750100001', given_name: 'Luc', family_name: 'Durand',
  },
  'patient.dupont': {
    sub: 'fc-patient-dupont', role: 'patient', ins: '279035121518989', given_name: 'Marie', family_name: 'Dupont',
  },
  'patient.lefevre': {
    sub: 'fc-patient-lefevre', role: 'patient', ins: '162117512345635', given_name: 'Jean', family_name: 'Lefèvre',
  },
};
const USERS_BY_SUB = new Map(Object.values(USERS).map((user) => [user.sub, user]));

// Claims describing the user's role in bilan (scope `bilan`).
const roleClaims = ({ role, rpps, ins, lab_finess }) => ({ role, rpps, ins, lab_finess });

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

const WEB_SCOPES = ['openid', 'profile', 'bilan'];

const PRACTICE_SOFTWARE_SCOPES = [
  'system/ServiceRequest.read', 'system/ServiceRequest.write',
  'system/Patient.read', 'system/Patient.write',
  'system/Practitioner.read', 'system/Practitioner.write',
  'system/PractitionerRole.read', 'system/PractitionerRole.write',
  'system/Organization.read', 'system/Organization.write',
  'system/Observation.read', 'system/Observation.write',
  'system/Condition.read', 'system/Condition.write',
  'system/Task.read', 'system/DiagnosticReport.read', 'system/DocumentReference.read',
  'system/DocumentReference.write', 'system/List.write', 'system/Binary.read',
  'system/Communication.read', 'system/Communication.write',
  'system/Subscription.read', 'system/Subscription.write',
  'system/Encounter.read', 'system/Encounter.write',
  'system/Location.read', 'system/Location.write',
  'system/*.read',
];

const LAB_MIDDLEWARE_SCOPES = [
  'system/Observation.write', 'system/Observation.read',
  'system/ServiceRequest.read',
  'system/Specimen.read', 'system/Specimen.write',
  'system/Task.read', 'system/Task.write',
  'system/DiagnosticReport.read', 'system/DiagnosticReport.write',
  'system/Communication.read', 'system/Communication.write',
  'system/Subscription.read', 'system/Subscription.write',
  'system/DocumentReference.read', 'system/DocumentReference.write', 'system/List.write',
  'system/Binary.read', 'system/Encounter.read', 'system/Location.read',
];

const ALL_SCOPES = [...new Set([...WEB_SCOPES, ...PRACTICE_SOFTWARE_SCOPES, ...LAB_MIDDLEWARE_SCOPES])];

// Extra access-token claims for the machine clients (who they act for).
const MACHINE_CLAIMS = {
  'practice-software-demo': { client_kind: 'practice-software', acting_rpps: '10003456786' },
  'lab-middleware-demo': { client_kind: 'lab-middleware', acting_finess: '750100001' },
};

const machineClient = (clientId, scopes) => ({
  client_id: clientId,
  token_endpoint_auth_method: 'private_key_jwt',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: scopes.join(' '),
  jwks: publicJwks(clientId),
});

const CLIENTS = [
  {
    client_id: 'bilan-web',
    client_name: 'bilan',
    client_secret: 'bilan-web-demo-secret',
    token_endpoint_auth_method: 'client_secret_basic', // client_secret_post works too
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: WEB_REDIRECT_URIS,
    post_logout_redirect_uris: POST_LOGOUT_URIS,
    scope: WEB_SCOPES.join(' '),
  },
  machineClient('practice-software-demo', PRACTICE_SOFTWARE_SCOPES),
  machineClient('lab-middleware-demo', LAB_MIDDLEWARE_SCOPES),
];

// ---------------------------------------------------------------------------
// HTML pages (French)
// ---------------------------------------------------------------------------

const escapeHtml = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title, body) => `<!DOCTYPE html>
<html lang="fr">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <style>
    body { font-family: sans-serif; max-width: 24rem; margin: 3rem auto; padding: 0 1rem; }
    label, input, button { display: block; width: 100%; box-sizing: border-box; margin-bottom: .75rem; }
    input, button { padding: .5rem; font-size: 1rem; }
    .error { color: #b00020; }
    .hint { color: #555; font-size: .9rem; }
  </style>
</head>
<body>
  <h1>${escapeHtml(title)}</h1>
  ${body}
</body>
</html>`;

const loginPage = (uid, clientName, login = '', error = '') => page('Connexion', `
  <p>Connexion à <strong>${escapeHtml(clientName)}</strong> (fournisseur d'identité de démonstration).</p>
  ${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
  <form method="post" action="/interaction/${escapeHtml(uid)}/login">
    <label for="login">Identifiant</label>
    <input id="login" name="login" type="text" autocomplete="username" value="${escapeHtml(login)}" required autofocus>
    <label for="password">Mot de passe</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit">Se connecter</button>
  </form>
  <p class="hint">Comptes de démonstration : ${Object.keys(USERS).map(escapeHtml).join(', ')} (mot de passe « demo »).</p>`);

// ---------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------

const configuration = {
  clients: CLIENTS,
  // Persisted demo signing key, so tokens stay verifiable across restarts.
  jwks: { keys: [readJwk('idp-signing.private')] },
  cookies: { keys: COOKIE_KEYS },

  scopes: ['openid', 'offline_access', ...ALL_SCOPES],
  claims: {
    acr: null,
    auth_time: null,
    sid: null,
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name'],
    bilan: ['role', 'rpps', 'ins', 'lab_finess'],
  },
  conformIdTokenClaims: false, // put the scope claims in the ID token too

  async findAccount(ctx, sub) {
    const user = USERS_BY_SUB.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: `${user.given_name} ${user.family_name}`,
          given_name: user.given_name,
          family_name: user.family_name,
          ...roleClaims(user),
        };
      },
    };
  },

  // First-party clients only: consent is granted automatically for whatever
  // is requested, so the login form is the only interaction.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    const grant = (grantId && await oidc.provider.Grant.find(grantId))
      || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    autoGrant(oidc, grant);
    await grant.save();
    return grant;
  },

  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') return MACHINE_CLAIMS[token.clientId];
    const user = token.accountId && USERS_BY_SUB.get(token.accountId);
    return user ? roleClaims(user) : undefined;
  },

  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  pkce: { required: () => true }, // S256 is the only method oidc-provider supports
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'ES256', 'ES384'],
  },

  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      // Clients need not send `resource`: the token is for bilan's API.
      // Exception: a refresh_token request with an explicit `scope` containing
      // `openid` gets an opaque token usable at the userinfo endpoint.
      useGrantedResource: (ctx) => !(ctx.oidc.params.grant_type === 'refresh_token' && ctx.oidc.params.scope),
      getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== AUDIENCE) throw new errors.InvalidTarget();
        return {
          audience: AUDIENCE,
          scope: ALL_SCOPES.join(' '),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        // `form` is the provider's <form> holding the hidden `xsrf` field.
        const buttons = `
    <button type="submit" name="logout" value="yes" autofocus>Se déconnecter</button>
    <button type="submit">Rester connecté</button>
  `;
        ctx.body = page('Déconnexion', `
  <p>Voulez-vous vous déconnecter du fournisseur d'identité de démonstration ?</p>
  ${form.replace('</form>', `${buttons}</form>`)}`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Déconnexion', '<p>Vous êtes déconnecté.</p>');
      },
    },
  },

  // Refresh tokens for bilan-web without requiring `offline_access`
  // (they expire with the login session).
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),

  ttl: {
    AccessToken: 600,
    ClientCredentials: 600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 8 * 3600,
    Grant: 8 * 3600,
    Session: 8 * 3600,
    Interaction: 600,
  },

  clientBasedCORS: () => false,
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Erreur', `
  <p class="error">${escapeHtml(out.error)}</p>
  <p>${escapeHtml(out.error_description)}</p>`);
  },
};

// Adds every requested scope to the grant (OIDC scopes and API scopes).
function autoGrant(oidc, grant) {
  const requested = [...oidc.requestParamScopes];
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  for (const [indicator, server] of Object.entries(oidc.resourceServers)) {
    const scopes = requested.filter((scope) => server.scopes.has(scope));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
}

const provider = new Provider(ISSUER, configuration);

// ---------------------------------------------------------------------------
// Interactions: GET /interaction/:uid and POST /interaction/:uid/login
// ---------------------------------------------------------------------------

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(ctx.path);
  if (!match) return next();
  const [, uid, loginPath] = match;
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'html';

  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
    const client = await provider.Client.find(details.params.client_id);
    const clientName = client?.clientName || details.params.client_id;
    let result;

    if (details.prompt.name === 'consent') {
      // Only reached with prompt=consent: grant and continue.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const { missingOIDCScope = [], missingResourceScopes = {} } = details.prompt.details;
      grant.addOIDCScope(missingOIDCScope.join(' '));
      for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    } else if (ctx.method === 'GET' && !loginPath) {
      ctx.body = loginPage(uid, clientName);
      return undefined;
    } else if (ctx.method === 'POST' && loginPath) {
      const form = await readForm(ctx.req);
      const login = (form.login || '').trim();
      const user = Object.hasOwn(USERS, login) ? USERS[login] : undefined;
      if (!user || form.password !== PASSWORD) {
        ctx.status = 200;
        ctx.body = loginPage(uid, clientName, login, 'Identifiant ou mot de passe incorrect');
        return undefined;
      }
      result = { login: { accountId: user.sub } };
    } else {
      ctx.status = 405;
      ctx.body = page('Erreur', '<p>Méthode non autorisée.</p>');
      return undefined;
    }

    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: 'consent' in result, // keep the login result
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  } catch (err) {
    if (!(err instanceof errors.SessionNotFound)) throw err;
    ctx.status = 400;
    ctx.body = page('Session expirée', `<p>La demande de connexion a expiré ou est introuvable.
  Veuillez recommencer depuis l'application.</p>`);
  }
  return undefined;
});

// Log errors to stderr (stdout only carries the "ready" line).
for (const event of ['server_error', 'grant.error', 'authorization.error', 'end_session.error', 'userinfo.error']) {
  provider.on(event, (ctx, err) => {
    console.error(`idp ${event}: ${err.error || err.name}: ${err.error_description || err.message}`);
  });
}

// ---------------------------------------------------------------------------
// Start / stop
// ---------------------------------------------------------------------------

const server = provider.listen(PORT, HOST, () => {
  console.log(`idp ready at ${ISSUER}`);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
