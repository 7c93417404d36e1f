/**
 * Least-privilege NATS permissions, one user per Switchboard process, derived from the subjects
 * the code uses (libs/protocol/src/subjects.ts, libs/bus/src/nats-bus.ts). This file is the one
 * source of deploy/nats/auth.conf and of test/security/nats-permissions.test.ts, which proves
 * that each user can do its job and nothing else. After a change, regenerate the config:
 *
 *   node deploy/nats/permissions.mjs > deploy/nats/auth.conf
 *   node deploy/nats/permissions.mjs my-prefix > auth.conf   # for another NATS_SUBJECT_PREFIX
 */
import { pathToFileURL } from 'node:url';

export const USERS = ['auth', 'persistence', 'gateway', 'status'];

/** The environment variable of nats-server that holds a user's password. */
export const passwordVariable = (user) => `SWITCHBOARD_${user.toUpperCase()}_NATS_PASSWORD`;

/** Publish and subscribe allow lists per user, for one subject prefix. */
export function servicePermissions(prefix = 'switchboard') {
  // As createSubjects() names them.
  const stream = `${prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_INBOUND`;
  const consumer = 'persistence';
  // The NATS services framework: $SRV.PING|INFO|STATS, then by service name, then by instance id.
  const serviceDiscovery = (service) => ['$SRV.*', `$SRV.*.${prefix}-${service}`, `$SRV.*.${prefix}-${service}.*`];
  // Each process takes its replies under its own inbox prefix (connectNatsBus's inboxPrefix,
  // `_INBOX.<service>`), so a user reads its own replies and no one else's.
  const inbox = (user) => `_INBOX.${user}.>`;
  return {
    auth: {
      // Every service opens a JetStream manager on connect, which asks $JS.API.INFO. Only auth
      // announces revoked tokens: another user could cut anyone off by forging one.
      publish: ['$JS.API.INFO', `${prefix}.auth.revoked`],
      // Answers the JWKS endpoint: only auth may, or a forged key set would be trusted.
      subscribe: [`${prefix}.auth.jwks`, ...serviceDiscovery('auth'), inbox('auth')],
    },
    persistence: {
      publish: [
        `${prefix}.confirmed.>`,
        `${prefix}.dead`,
        '$JS.API.INFO',
        // Ensures the inbound stream and its durable consumer: info, create, update; nothing else (no delete, no purge).
        `$JS.API.STREAM.INFO.${stream}`,
        `$JS.API.STREAM.CREATE.${stream}`,
        `$JS.API.STREAM.UPDATE.${stream}`,
        `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
        `$JS.API.CONSUMER.CREATE.${stream}.${consumer}`,
        `$JS.API.CONSUMER.CREATE.${stream}.${consumer}.>`,
        `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${consumer}`,
        // Pulls batches, and acks, naks or extends each message (several replies per message, hence not allow_responses).
        `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
        `$JS.ACK.${stream}.${consumer}.>`,
        // The same acks in the newer reply format that carries a domain and an account hash.
        `$JS.ACK.*.*.${stream}.${consumer}.>`,
      ],
      subscribe: [`${prefix}.persistence.>`, ...serviceDiscovery('persistence'), inbox('persistence')],
    },
    gateway: {
      // Client messages go to the inbound stream (a plain publish; the PubAck comes back on _INBOX),
      // requests to persistence and for the keys. Never confirmed.>: only persistence says what is stored.
      publish: [`${prefix}.inbound.>`, `${prefix}.persistence.>`, `${prefix}.auth.jwks`, '$JS.API.INFO'],
      subscribe: [
        `${prefix}.confirmed.>`,
        `${prefix}.dead`,
        `${prefix}.auth.revoked`,
        `${prefix}.gateway.status`,
        ...serviceDiscovery('gateway'),
        inbox('gateway'),
      ],
    },
    status: {
      // `npm run status`: asks $SRV.STATS (and may ask the gateways' status endpoint); reads the replies.
      publish: ['$SRV.>', `${prefix}.gateway.status`],
      subscribe: [inbox('status')],
    },
  };
}

/** Users that answer requests may publish their replies, once each, without a publish permission for the reply subject. */
const ANSWERS_REQUESTS = new Set(['auth', 'persistence', 'gateway']);

const list = (subjects) => `[${subjects.map((subject) => JSON.stringify(subject)).join(', ')}]`;

/** The `authorization` block for nats-server, with each password taken from the server's environment. */
export function renderAuthConf(prefix = 'switchboard') {
  const permissions = servicePermissions(prefix);
  const users = USERS.map((user) => {
    const { publish, subscribe } = permissions[user];
    return [
      '    {',
      `      user: ${user}`,
      `      password: $${passwordVariable(user)}`,
      '      permissions: {',
      `        publish: { allow: ${list(publish)} }`,
      `        subscribe: { allow: ${list(subscribe)} }`,
      ...(ANSWERS_REQUESTS.has(user) ? ['        allow_responses: true'] : []),
      '      }',
      '    }',
    ].join('\n');
  });
  return `# NATS authorization for Switchboard (subject prefix "${prefix}"): one user per process, each
# allowed only the subjects its code uses. Generated by deploy/nats/permissions.mjs: change that
# file, then run \`node deploy/nats/permissions.mjs${prefix === 'switchboard' ? '' : ` ${prefix}`} > deploy/nats/auth.conf\`.
#
# Use: add \`include ./auth.conf\` to the server's config (next to deploy/nats/nats.conf), and give
# nats-server the passwords in its environment (it refuses to start while one is unset):
${USERS.map((user) => `#   ${passwordVariable(user)}`).join('\n')}
# Each process then connects with NATS_URL=nats://<user>:<password>@<host>:4222 (percent-encode
# special characters in the password).
#
# What this rules out: a gateway cannot publish confirmed messages, answer persistence requests
# or serve signing keys; persistence cannot publish inbound messages; no process but auth can
# answer for the keys; no process can delete or purge the inbound stream or read it besides
# persistence's own consumer; each user reads only the replies under its own inbox prefix
# (_INBOX.<user>.>), not other processes' replies (message history, PubAcks, keys).

authorization {
  users = [
${users.join('\n')}
  ]
}
`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(renderAuthConf(process.argv[2]));
}
