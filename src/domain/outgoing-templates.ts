import { DateTime } from 'luxon';
import { replySubject } from './threading.js';

// A6 and A7: a channel's default subject may carry the conversation-start timestamp, and its From
// name the name of the agent who sends. Tokens are written {{like.this}}; any other {{...}} is refused
// when the channel is configured, so a typo never reaches a customer.

export const SUBJECT_TOKENS = { startedAt: '{{conversation.started_at}}' } as const;
export const FROM_NAME_TOKENS = { agentName: '{{agent.name}}' } as const;

// The name is trimmed in code: `\s*` around a lazy `[^{}]*?` would backtrack quadratically on long blank runs.
const TOKEN = /\{\{([^{}]*)\}\}/g;

/** Null when `template` uses only `allowed` tokens; otherwise what is wrong, for a 422. */
export function templateProblem(template: string, allowed: readonly string[]): string | null {
  for (const match of template.matchAll(TOKEN)) {
    const token = `{{${match[1]!.trim()}}}`;
    if (!allowed.includes(token)) return `unknown token ${match[0]}; allowed: ${allowed.join(', ')}`;
  }
  return null;
}

/**
 * The subject of an outgoing mail: the one the agent typed, else the channel's default subject with
 * the conversation start (in the channel's time zone), else "Re: <conversation subject>".
 */
export function outgoingSubject(input: {
  typed?: string | undefined;
  defaultSubject: string | null;
  conversationSubject: string;
  startedAt: Date;
  timeZone: string;
}): string {
  const typed = input.typed?.trim();
  if (typed) return typed;
  if (!input.defaultSubject?.trim()) return replySubject(input.conversationSubject);
  const startedAt = DateTime.fromJSDate(input.startedAt, { zone: input.timeZone }).toFormat('yyyy-MM-dd HH:mm ZZ');
  return input.defaultSubject.replaceAll(TOKEN, (match, name: string) =>
    `{{${name.trim()}}}` === SUBJECT_TOKENS.startedAt ? startedAt : match,
  );
}

/**
 * The From name: the channel's template with the sender's name, else "<agent> (<channel>)" for a
 * person or an AI agent, and the channel name for mail nobody wrote (greeting, survey, out of office).
 */
export function outgoingFromName(input: { template: string | null; channelName: string; senderName: string | null }): string {
  const sender = input.senderName ?? input.channelName;
  if (input.template?.trim()) {
    return input.template.replaceAll(TOKEN, (match, name: string) =>
      `{{${name.trim()}}}` === FROM_NAME_TOKENS.agentName ? sender : match,
    );
  }
  return input.senderName ? `${input.senderName} (${input.channelName})` : input.channelName;
}
