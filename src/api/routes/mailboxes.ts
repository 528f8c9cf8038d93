import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Channel } from '../../db/schema.js';
import { applyMailboxSettings } from '../../temporal/mailbox.js';
import { checkImapConnection, IMAP_FAILURE_MESSAGES, type ImapSettings } from '../../mail/imap-connection.js';
import { CredentialDecryptionError, decryptCredential, encryptCredential } from '../../security/credentials.js';
import { isSameMailServerLogin } from '../../security/destinations.js';
import { findChannel } from '../access.js';
import { checkedMailServerHost } from '../mail-server-host.js';
import { deploymentOAuthClients } from '../../config.js';
import { createMailboxLogins } from '../../mail/mailbox-login.js';
import { ReauthorizationRequiredError, TokenRefreshFailedError } from '../../oauth/access-tokens.js';
import { describeMailboxLogin, OAuthConnectionSchema } from './mailbox-oauth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { SENT_COPY_KINDS } from '../../domain/conversation.js';

// A channel's IMAP mailbox: settings (password write-only, encrypted at rest), a connection test, the sync position.
// The stored password only ever goes to the server and user it was saved with; hosts pass the destination policy.

const security = [{ apiKey: [] }];
const channelParams = z.object({ channelId: z.uuid() });
const folderName = z.string().trim().min(1).max(255);
const IMPORT_DAYS =
  "Days of existing mail the first sync of a folder brings in (by the server's arrival date), marked as imported: " +
  'threaded like any mail, never answered automatically. 0 starts at the end of the folder: only mail arriving from then on. ' +
  'Applies to folders not synced yet, and to a folder whose UIDs the server renumbered (UIDVALIDITY).';
const POLL_INTERVAL =
  'How often the folders IDLE does not watch are looked at: every folder but the first, the Sent folder (copies to ' +
  'append, replies written in the mailbox); all of them where the server has no IDLE';
const SENT_FOLDER =
  'Where sent mail is copied and replies written in the mailbox are read; null: the folder the server marks \\Sent';
const SENT_COPY_KINDS_TEXT =
  'Which outgoing mail is appended to the Sent folder (\\Seen, the bytes sent) once the SMTP server took it; [] copies none';
const RECORD_MAILBOX_REPLIES =
  'Record mail someone sent from the mailbox itself (found in the Sent folder, From the channel, answering a ' +
  'conversation of the channel to someone who takes part in it) in that conversation, as kind mailbox_reply';

const ImapSettingsSchema = z
  .object({
    enabled: z.boolean(),
    host: z.string().trim().min(1).max(255).nullable(),
    port: z.number().int().min(1).max(65535).nullable(),
    tls: z.boolean().openapi({ description: 'Implicit TLS (port 993); false for a plain connection' }),
    username: z.string().min(1).max(255).nullable(),
    passwordSet: z.boolean().openapi({ description: 'The password itself is never returned' }),
    login: OAuthConnectionSchema.openapi({
      description: 'A password, or an OAuth 2.0 grant (POST …/oauth/authorizations) with its state and reason',
    }),
    folders: z.array(folderName).min(1).max(20),
    afterProcessing: z.enum(['none', 'mark_seen', 'move']),
    moveToFolder: folderName.nullable(),
    pollIntervalSeconds: z.number().int().min(5).max(3600).openapi({ description: POLL_INTERVAL }),
    importDays: z.number().int().min(0).max(3650).openapi({ description: IMPORT_DAYS }),
    sentFolder: folderName.nullable().openapi({ description: SENT_FOLDER }),
    sentCopyKinds: z.array(z.enum(SENT_COPY_KINDS)).openapi({ description: SENT_COPY_KINDS_TEXT }),
    recordMailboxReplies: z.boolean().openapi({ description: RECORD_MAILBOX_REPLIES }),
    sentFolderCursor: z
      .object({ folder: z.string(), uidValidity: z.string(), lastUid: z.string(), updatedAt: z.iso.datetime() })
      .nullable()
      .openapi({ description: 'How far the Sent folder has been read for replies; it starts at its end' }),
    cursors: z.array(
      z.object({
        folder: z.string(),
        uidValidity: z.string(),
        lastUid: z.string(),
        importedBefore: z.iso.datetime().nullable().openapi({
          description: 'When the folder was first synced: its mail from before then is history (null: read from its first mail)',
        }),
        updatedAt: z.iso.datetime(),
      }),
    ),
  })
  .openapi('ImapMailbox');

const ImapSettingsInput = z
  .object({
    enabled: z.boolean(),
    host: z.string().trim().min(1).max(255),
    port: z.number().int().min(1).max(65535).default(993),
    tls: z.boolean().default(true),
    username: z.string().min(1).max(255),
    password: z.string().min(1).max(1024).optional().openapi({
      description:
        'Write-only; omit to keep the stored one (or the OAuth grant), possible only while host, port, tls and username stay',
    }),
    folders: z.array(folderName).min(1).max(20).default(['INBOX']),
    afterProcessing: z.enum(['none', 'mark_seen', 'move']).default('none'),
    moveToFolder: folderName.optional(),
    pollIntervalSeconds: z.number().int().min(5).max(3600).default(60).openapi({ description: POLL_INTERVAL }),
    importDays: z.number().int().min(0).max(3650).default(0).openapi({ description: IMPORT_DAYS }),
    sentFolder: folderName.nullable().default(null).openapi({ description: SENT_FOLDER }),
    sentCopyKinds: z
      .array(z.enum(SENT_COPY_KINDS))
      .max(SENT_COPY_KINDS.length)
      .default([...SENT_COPY_KINDS])
      .openapi({ description: SENT_COPY_KINDS_TEXT }),
    recordMailboxReplies: z.boolean().default(true).openapi({ description: RECORD_MAILBOX_REPLIES }),
  })
  .refine((input) => input.afterProcessing !== 'move' || input.moveToFolder, {
    path: ['moveToFolder'],
    message: 'required when afterProcessing is "move"',
  })
  .openapi('ImapMailboxInput');

const ConnectionTestInput = z
  .object({
    host: z.string().trim().min(1).max(255),
    port: z.number().int().min(1).max(65535),
    tls: z.boolean(),
    username: z.string().min(1).max(255),
    password: z.string().min(1).max(1024),
    folders: z.array(folderName).min(1).max(20),
  })
  .partial()
  .openapi('ImapConnectionTestInput');

const ConnectionTestResult = z
  .discriminatedUnion('ok', [
    z.object({
      ok: z.literal(true),
      idle: z.boolean(),
      folders: z.array(z.object({ folder: z.string(), messages: z.number().int() })),
    }),
    z.object({
      ok: z.literal(false),
      reason: z.enum(['dns', 'refused', 'timeout', 'tls', 'auth', 'folder_missing', 'protocol']),
      message: z.string().openapi({ description: "A fixed text per reason; the server's own words are never passed on" }),
      folder: z.string().optional().openapi({ description: 'With folder_missing: the folder that could not be opened' }),
    }),
  ])
  .openapi('ImapConnectionTestResult');

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/imap',
  operationId: 'getImapSettings',
  tags: ['IMAP mailboxes'],
  summary: "The channel's IMAP settings and how far the sync has read each folder",
  security,
  request: { params: channelParams },
  responses: {
    200: { description: 'Settings', content: { 'application/json': { schema: ImapSettingsSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/imap',
  operationId: 'setImapSettings',
  tags: ['IMAP mailboxes'],
  summary: 'Set the IMAP settings; enabling starts the mailbox sync, disabling stops it',
  description:
    'A changed host, port, tls or username needs the password again. A host that resolves only to private, ' +
    'loopback or other non-public addresses is refused (422 naming host) unless the operator allows them ' +
    '(ALLOWED_PRIVATE_NETWORKS); a host that does not resolve yet is saved.',
  security,
  request: { params: channelParams, body: { required: true, content: { 'application/json': { schema: ImapSettingsInput } } } },
  responses: {
    200: { description: 'Saved', content: { 'application/json': { schema: ImapSettingsSchema } } },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const testRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/imap/test',
  operationId: 'testImapSettings',
  tags: ['IMAP mailboxes'],
  summary: 'Try the IMAP settings: connect, log in and open each folder; says what failed',
  description:
    'Fields left out are taken from the stored settings, so the saved mailbox can be tested with an empty body; ' +
    'the stored password is used only with the stored host, port, tls and username. A host the destination policy ' +
    'refuses answers 422 naming host.',
  security,
  request: { params: channelParams, body: { required: false, content: { 'application/json': { schema: ConnectionTestInput } } } },
  responses: {
    200: {
      description: 'The outcome; ok false names the reason',
      content: { 'application/json': { schema: ConnectionTestResult } },
    },
    ...problemResponses(401, 403, 404, 422),
  },
});

const PASSWORD_FOR_CHANGED_SERVER =
  'required again: host, port, tls or username differ from the stored settings, and the stored password only goes to the server and user it was saved for';
const OAUTH_FOR_CHANGED_SERVER =
  'required: host, port, tls or username differ from the OAuth connection, whose grant only goes to the server and account it was connected for (connect again, or give a password)';

function passwordProblem(message: string): Problem {
  return new Problem(422, 'validation', 'Request validation failed', 'the password must be sent with these settings', [
    { field: 'password', message },
  ]);
}

export function mailboxRoutes({ db, temporal, config, taskQueue }: ApiDeps) {
  const logins = createMailboxLogins({
    db,
    secretKey: config.SECRET_KEY,
    allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS ?? [],
    oauthClients: deploymentOAuthClients(config),
  });
  const destinationOf = (host: string) => checkedMailServerHost(host, config.ALLOWED_PRIVATE_NETWORKS);

  const storedLogin = (channel: Channel) => ({
    host: channel.imap_host,
    port: channel.imap_port,
    tls: channel.imap_tls,
    username: channel.imap_username,
  });

  async function describe(channel: Channel): Promise<z.infer<typeof ImapSettingsSchema>> {
    const cursors = await db
      .selectFrom('imap_cursors')
      .selectAll()
      .where('channel_id', '=', channel.id)
      .orderBy('folder')
      .execute();
    const sentCursor = await db
      .selectFrom('sent_folder_cursors')
      .selectAll()
      .where('channel_id', '=', channel.id)
      .executeTakeFirst();
    return {
      enabled: channel.imap_enabled,
      host: channel.imap_host,
      port: channel.imap_port,
      tls: channel.imap_tls,
      username: channel.imap_username,
      passwordSet: channel.imap_password_encrypted !== null,
      login: await describeMailboxLogin(db, channel),
      folders: channel.imap_folders,
      afterProcessing: channel.imap_after_processing,
      moveToFolder: channel.imap_move_to_folder,
      pollIntervalSeconds: channel.imap_poll_interval_seconds,
      importDays: channel.imap_import_days,
      sentFolder: channel.imap_sent_folder,
      sentCopyKinds: channel.sent_copy_kinds,
      recordMailboxReplies: channel.record_mailbox_replies,
      sentFolderCursor: sentCursor
        ? {
            folder: sentCursor.folder,
            uidValidity: String(sentCursor.uid_validity),
            lastUid: String(sentCursor.last_uid),
            updatedAt: sentCursor.updated_at.toISOString(),
          }
        : null,
      cursors: cursors.map((c) => ({
        folder: c.folder,
        uidValidity: String(c.uid_validity),
        lastUid: String(c.last_uid),
        importedBefore: c.imported_before?.toISOString() ?? null,
        updatedAt: c.updated_at.toISOString(),
      })),
    };
  }

  function storedPassword(encrypted: string): string {
    try {
      return decryptCredential(encrypted, config.SECRET_KEY);
    } catch (error) {
      if (error instanceof CredentialDecryptionError) {
        throw passwordProblem('required again: the stored password can no longer be read (was SECRET_KEY changed?)');
      }
      throw error;
    }
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(getRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    return c.json(await describe(channel), 200);
  });

  app.openapi(putRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    const input = c.req.valid('json');
    // Without a password an OAuth mailbox keeps its grant, which only goes to the server and account it was connected for.
    const oauth = !input.password && channel.imap_auth === 'oauth2';
    if (!input.password && !oauth && !channel.imap_password_encrypted) {
      throw passwordProblem('required: no password is stored yet');
    }
    if (!input.password && !isSameMailServerLogin(storedLogin(channel), input)) {
      throw passwordProblem(oauth ? OAUTH_FOR_CHANGED_SERVER : PASSWORD_FOR_CHANGED_SERVER);
    }
    // Refused only for what it resolves to now; a name that does not resolve yet (or DNS being down) is saved.
    await destinationOf(input.host);
    const updated = await db
      .updateTable('channels')
      .set({
        imap_enabled: input.enabled,
        imap_host: input.host,
        imap_port: input.port,
        imap_tls: input.tls,
        imap_username: input.username,
        ...(input.password
          ? { imap_password_encrypted: encryptCredential(input.password, config.SECRET_KEY), imap_auth: 'password' as const }
          : {}),
        imap_folders: JSON.stringify(input.folders),
        imap_after_processing: input.afterProcessing,
        imap_move_to_folder: input.moveToFolder ?? null,
        imap_poll_interval_seconds: input.pollIntervalSeconds,
        imap_import_days: input.importDays,
        imap_sent_folder: input.sentFolder,
        sent_copy_kinds: JSON.stringify([...new Set(input.sentCopyKinds)]),
        record_mailbox_replies: input.recordMailboxReplies,
      })
      .where('id', '=', channel.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    // Copies that found no Sent folder are tried again with the settings as they are now.
    await db
      .updateTable('outbound_messages')
      .set({ sent_copy_status: 'pending', sent_copy_error: null })
      .where('sent_copy_status', '=', 'failed')
      .where('conversation_id', 'in', (eb) => eb.selectFrom('conversations').select('id').where('channel_id', '=', channel.id))
      .execute();
    await applyMailboxSettings(temporal, updated, taskQueue, 'the settings are saved; PUT them again to start the sync');
    return c.json(await describe(updated), 200);
  });

  app.openapi(testRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    const given = c.req.valid('json') ?? {};
    const stored = channel.imap_password_encrypted;
    const oauth = !given.password && channel.imap_auth === 'oauth2';
    const server = {
      host: given.host ?? channel.imap_host,
      port: given.port ?? channel.imap_port ?? 993,
      tls: given.tls ?? channel.imap_tls,
      username: given.username ?? channel.imap_username,
    };
    const missing = (['host', 'username', 'password'] as const).filter((field) =>
      field === 'password' ? !given.password && !stored && !oauth : !server[field],
    );
    if (missing.length > 0) {
      throw new Problem(
        422,
        'validation',
        'Request validation failed',
        `${missing.join(', ')} needed`,
        missing.map((field) => ({ field, message: 'required: none is stored' })),
      );
    }
    if (!given.password && !isSameMailServerLogin(storedLogin(channel), server)) {
      throw passwordProblem(oauth ? OAUTH_FOR_CHANGED_SERVER : PASSWORD_FOR_CHANGED_SERVER);
    }
    let settings: ImapSettings;
    if (oauth) {
      try {
        settings = await logins.imapSettings(channel);
      } catch (error) {
        // The grant needs an admin, or the provider is away: the login cannot be tried.
        if (!(error instanceof ReauthorizationRequiredError || error instanceof TokenRefreshFailedError)) throw error;
        return c.json({ ok: false as const, reason: 'auth' as const, message: IMAP_FAILURE_MESSAGES.auth }, 200);
      }
    } else {
      settings = { ...server, password: given.password ?? storedPassword(stored!) } as ImapSettings;
    }
    const destination = await destinationOf(settings.host);
    if (!destination) return c.json({ ok: false as const, reason: 'dns' as const, message: IMAP_FAILURE_MESSAGES.dns }, 200);
    const folders = given.folders ?? channel.imap_folders;
    return c.json(await checkImapConnection(settings, destination, folders), 200);
  });

  return app;
}
