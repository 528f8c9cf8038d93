import { Context } from '@temporalio/activity';
import {
  contactConversationIds,
  contactConversationsNotErased,
  contactsLeftWithoutConversations,
  eraseConversationRows,
  expiredConversations,
  markContactErased,
  tombstoneContact,
  tombstoneConversations,
} from '../db/erasure.js';
import { requestRebalance } from '../temporal/assignment-queue.js';
import { deleteConversationWorkflows } from '../temporal/erasure.js';
import type { ActivityDeps } from './deps.js';

// The steps of a contact's erasure and of the retention sweep. Each may run again after a crash and does
// nothing twice; they use the worker's own Temporal client to delete the conversations' workflow runs.

export function createErasureActivities({ db, secretKey }: ActivityDeps) {
  /** One conversation: a tombstone first (no new mail reaches it), then its workflow runs, then its rows. */
  async function eraseConversation(conversationId: string): Promise<void> {
    const { client, info } = Context.current();
    const [before] = await db.transaction().execute((trx) => tombstoneConversations(trx, [conversationId]));
    if (!before) return;
    const runIds = await deleteConversationWorkflows(client, conversationId, () => Context.current().heartbeat());
    await eraseConversationRows(db, conversationId, runIds);
    if (before.wasOpenWithAssignee) {
      // Its agent has capacity again: the channel's queue may hand them the next conversation.
      const channel = await db
        .selectFrom('channels')
        .select(['id', 'name'])
        .where('id', '=', before.channelId)
        .executeTakeFirst();
      if (channel) await requestRebalance(client, channel, { reason: 'a conversation was erased' }, info.taskQueue);
    }
  }

  async function eraseEach(conversationIds: readonly string[]): Promise<number> {
    for (const [done, conversationId] of conversationIds.entries()) {
      Context.current().heartbeat(done);
      await eraseConversation(conversationId);
    }
    return conversationIds.length;
  }

  return {
    /** Removes the contact's address, name and attributes and cuts their conversations off; found: false when there is none. */
    async tombstoneContact({ contactId }: { contactId: string }): Promise<{ found: boolean }> {
      return { found: (await tombstoneContact(db, contactId, secretKey)) !== undefined };
    },

    /** Erases the next `limit` conversations of the contact after `after` (by id); last: null when there were no more. */
    async eraseContactConversations(input: {
      contactId: string;
      after: string | null;
      limit: number;
    }): Promise<{ erased: number; last: string | null }> {
      const ids = await contactConversationIds(db, input.contactId, input.after, input.limit);
      const erased = await eraseEach(ids);
      return { erased, last: ids.length === input.limit ? ids[ids.length - 1]! : null };
    },

    /** Erases what a mail arriving during the erasure added (its sender was looked up just before), then marks it erased. */
    async completeContactErasure({ contactId }: { contactId: string }): Promise<void> {
      await eraseEach(await contactConversationsNotErased(db, contactId));
      await markContactErased(db, contactId);
    },

    /** Accounts with a retention, in turn after `afterAccountId`, with some of their closed conversations past it. */
    async findExpiredConversations(input: { afterAccountId: string | null; accounts: number; perAccount: number }) {
      return expiredConversations(db, input);
    },

    /** The retention sweep's erasure of expired conversations; a contact left with none is erased too. */
    async eraseConversations({ conversationIds }: { conversationIds: string[] }): Promise<{ erased: number }> {
      const erased = await eraseEach(conversationIds);
      for (const contactId of await contactsLeftWithoutConversations(db, conversationIds)) {
        await tombstoneContact(db, contactId, secretKey);
        await markContactErased(db, contactId);
      }
      return { erased };
    },
  };
}
