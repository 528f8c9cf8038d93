import { randomBytes, randomUUID } from 'node:crypto';
import { generateApiKey } from '../api/auth.js';
import { hashSecret } from '../security/secret-hash.js';
import type { Db } from './connection.js';
import type { UserRole } from '../domain/conversation.js';

// Creating accounts, people and channels: used by `npm start`'s demo data and by the tests.

export async function createAccount(db: Db, name: string): Promise<{ id: string }> {
  const id = randomUUID();
  await db.insertInto('accounts').values({ id, name }).execute();
  return { id };
}

export async function createUser(
  db: Db,
  input: { accountId: string; name: string; email: string; role: UserRole },
): Promise<{ id: string; apiKey: string }> {
  const id = randomUUID();
  await db
    .insertInto('users')
    .values({ id, account_id: input.accountId, name: input.name, email: input.email.toLowerCase(), role: input.role })
    .execute();
  const { key } = await createApiKey(db, id, 'default');
  return { id, apiKey: key };
}

/** A new API key for a user; the key is returned here and never again. */
export async function createApiKey(db: Db, userId: string, name: string): Promise<{ id: string; key: string; prefix: string }> {
  const id = randomUUID();
  const { key, hash, prefix } = generateApiKey();
  await db.insertInto('api_keys').values({ id, user_id: userId, name, key_hash: hash, key_prefix: prefix }).execute();
  return { id, key, prefix };
}

export interface ChannelSettings {
  accountId: string;
  name: string;
  emailAddress: string;
  greeting?: { text: string } | null;
  csat?: { delaySeconds: number; linkValiditySeconds?: number } | null;
}

export async function createChannel(db: Db, settings: ChannelSettings): Promise<{ id: string; forwarderSecret: string }> {
  const id = randomUUID();
  const forwarderSecret = randomBytes(24).toString('base64url');
  await db
    .insertInto('channels')
    .values({
      id,
      account_id: settings.accountId,
      name: settings.name,
      email_address: settings.emailAddress.toLowerCase(),
      forwarder_secret_hash: hashSecret(forwarderSecret),
      greeting_enabled: Boolean(settings.greeting),
      greeting_text: settings.greeting?.text ?? null,
      csat_enabled: Boolean(settings.csat),
      ...(settings.csat ? { csat_delay_seconds: settings.csat.delaySeconds } : {}),
      ...(settings.csat?.linkValiditySeconds ? { csat_link_validity_seconds: settings.csat.linkValiditySeconds } : {}),
    })
    .execute();
  return { id, forwarderSecret };
}

export async function addAgentToChannel(db: Db, channelId: string, userId: string): Promise<void> {
  await db.insertInto('channel_agents').values({ channel_id: channelId, user_id: userId }).execute();
}
