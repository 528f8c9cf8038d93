import type { Db } from '../db/connection.js';
import type { Channel, Conversation } from '../db/schema.js';
import type { AuthenticatedUser } from './env.js';
import { Problem } from './problem.js';

// Who may see and do what (A2). The rule everywhere: an object of another account (or none at all)
// answers 404, and never appears in a list; an object of the caller's account that their role or
// channel membership does not allow answers 403.

/** The ids of the channels whose conversations the user reads and answers: all of the account's for an admin, their own for an agent. */
export function accessibleChannelIds(db: Db, user: AuthenticatedUser) {
  const channels = db
    .selectFrom('channels')
    .select('channels.id')
    .where('channels.account_id', '=', user.accountId)
    .where('channels.deleted_at', 'is', null);
  if (user.role === 'admin') return channels;
  return channels.where((eb) =>
    eb.exists(
      eb
        .selectFrom('channel_agents as member')
        .select('member.user_id')
        .whereRef('member.channel_id', '=', 'channels.id')
        .where('member.user_id', '=', user.id),
    ),
  );
}

export type ChannelPurpose =
  /** Read the channel and work its conversations: admins, and agents of the channel. */
  | 'work'
  /** Change its settings, agents, AI agents, rules: admins only. */
  | 'configure';

/** The channel, if the user may use it for `purpose`; otherwise the matching problem. */
export async function findChannel(db: Db, user: AuthenticatedUser, channelId: string, purpose: ChannelPurpose): Promise<Channel> {
  const channel = await db
    .selectFrom('channels')
    .selectAll()
    .where('id', '=', channelId)
    .where('account_id', '=', user.accountId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  if (!channel) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channelId}`);
  if (user.role === 'admin') return channel;
  if (purpose === 'configure') throw new Problem(403, 'forbidden', 'Admins only', 'only an admin configures a channel');
  await requireMembership(db, user, channel.id);
  return channel;
}

/** Agents work the conversations of the channels they belong to; admins all of the account's. */
export async function requireMembership(db: Db, user: AuthenticatedUser, channelId: string): Promise<void> {
  if (user.role === 'admin') return;
  const member = await db
    .selectFrom('channel_agents')
    .select('user_id')
    .where('channel_id', '=', channelId)
    .where('user_id', '=', user.id)
    .executeTakeFirst();
  if (!member)
    throw new Problem(403, 'forbidden', 'Not an agent of this channel', `you are not an agent of channel ${channelId}`);
}

/** The conversation, if the user may work it: another account's (or none) answers 404, another channel's 403 for an agent. */
export async function findConversation(db: Db, user: AuthenticatedUser, conversationId: string): Promise<Conversation> {
  const conversation = await db
    .selectFrom('conversations')
    .selectAll()
    .where('id', '=', conversationId)
    .where('account_id', '=', user.accountId)
    .where('erased_at', 'is', null) // a tombstone, for reports only
    .executeTakeFirst();
  if (!conversation) throw new Problem(404, 'not-found', 'Conversation not found', `no conversation ${conversationId}`);
  await requireMembership(db, user, conversation.channel_id);
  return conversation;
}
