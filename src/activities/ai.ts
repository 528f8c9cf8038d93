import { ApplicationFailure, Context } from '@temporalio/activity';
import { AiProviderError, createAiProvider, type AiAnswer, type AiProviderConfig, type AiTurn } from '../ai/index.js';
import type { AiProviderKind } from '../db/schema.js';
import type { ActivityDeps } from './deps.js';

/** Where an OpenAI-compatible provider is reached; from the environment (AI_BASE_URL, AI_API_KEY, AI_MODEL). */
export interface OpenAiCompatibleSettings {
  baseUrl: string;
  apiKey?: string;
  model: string;
}

function providerConfig(
  kind: AiProviderKind,
  model: string | null,
  settings: OpenAiCompatibleSettings | undefined,
): AiProviderConfig {
  if (kind === 'knowledge_base') return { kind };
  if (!settings) {
    throw ApplicationFailure.nonRetryable(
      'the AI agent uses an OpenAI-compatible provider, but AI_BASE_URL is not configured',
      'AiProviderNotConfigured',
    );
  }
  return {
    kind,
    baseUrl: settings.baseUrl,
    model: model ?? settings.model,
    ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
  };
}

export function createAiActivities({ db, openAiCompatible }: ActivityDeps) {
  return {
    /**
     * Drafts the AI agent's answer to the customer's latest mail from the conversation so far and the
     * channel's knowledge articles. Sends nothing: the workflow decides by the confidence.
     */
    async answerWithAi({ conversationId, aiAgentId }: { conversationId: string; aiAgentId: string }): Promise<AiAnswer> {
      const agent = await db
        .selectFrom('ai_agents as a')
        .innerJoin('channels as ch', 'ch.id', 'a.channel_id')
        .innerJoin('conversations as c', 'c.channel_id', 'ch.id')
        .select(['a.name', 'a.provider', 'a.model', 'ch.id as channel_id', 'ch.name as channel_name', 'c.subject'])
        .where('a.id', '=', aiAgentId)
        .where('c.id', '=', conversationId)
        .executeTakeFirst();
      if (!agent)
        throw ApplicationFailure.nonRetryable(`AI agent ${aiAgentId} is not on this conversation's channel`, 'AiAgentNotFound');
      const [inbound, outbound, articles] = await Promise.all([
        db
          .selectFrom('inbound_messages')
          .select(['reply_text', 'text_body', 'received_at as at'])
          .where('conversation_id', '=', conversationId)
          .where('classification', '=', 'ordinary')
          .execute(),
        db
          .selectFrom('outbound_messages')
          .select(['text_body', 'created_at as at'])
          .where('conversation_id', '=', conversationId)
          .where('kind', 'in', ['reply', 'ai_reply'])
          .execute(),
        db.selectFrom('knowledge_articles').select(['id', 'title', 'body']).where('channel_id', '=', agent.channel_id).execute(),
      ]);
      const conversation: Array<AiTurn & { at: Date }> = [
        ...inbound.map((m) => ({ role: 'customer' as const, text: m.reply_text ?? m.text_body ?? '', at: m.at })),
        ...outbound.map((m) => ({ role: 'assistant' as const, text: m.text_body, at: m.at })),
      ].sort((a, b) => a.at.getTime() - b.at.getTime());

      const provider = createAiProvider(providerConfig(agent.provider, agent.model, openAiCompatible));
      try {
        return await provider.answer(
          {
            channelName: agent.channel_name,
            agentName: agent.name,
            subject: agent.subject,
            conversation: conversation.map(({ role, text }) => ({ role, text })),
            articles,
          },
          // A cancelled activity stops the request instead of waiting for the provider.
          Context.current().cancellationSignal,
        );
      } catch (error) {
        // A bad key or an unusable answer will not get better by asking again.
        if (error instanceof AiProviderError && !error.retryable) {
          throw ApplicationFailure.nonRetryable(error.message, 'AiProviderFailed');
        }
        throw error;
      }
    },
  };
}
