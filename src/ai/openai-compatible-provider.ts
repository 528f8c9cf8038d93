import { z } from 'zod';
import { AiProviderError, type AiAnswer, type AiAnswerRequest, type AiProvider } from './provider.js';

export interface OpenAiCompatibleOptions {
  /** E.g. https://api.openai.com/v1, http://localhost:11434/v1 (Ollama), a vLLM or LiteLLM server. */
  baseUrl: string;
  apiKey?: string;
  model: string;
  /** Per request, including reading the answer; 30 s unless set. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** How much of an unusable answer an error message quotes. */
const QUOTE_LENGTH = 200;

/** Any server that speaks OpenAI's chat-completions protocol and supports JSON mode. */
export function createOpenAiCompatibleProvider(options: OpenAiCompatibleOptions): AiProvider {
  let base = options.baseUrl;
  while (base.endsWith('/')) base = base.slice(0, -1);
  const url = `${base}/chat/completions`;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const name = `openai_compatible (${options.model})`;

  return {
    name,
    async answer(request: AiAnswerRequest, signal?: AbortSignal): Promise<AiAnswer> {
      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = signal ? AbortSignal.any([timeout, signal]) : timeout;
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
      if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
      const body = JSON.stringify({
        model: options.model,
        messages: chatMessages(request),
        temperature: 0.2,
        response_format: { type: 'json_object' },
      });

      let status: number;
      let text: string;
      try {
        const response = await fetchImpl(url, { method: 'POST', headers, body, signal: combined });
        status = response.status;
        text = await response.text();
      } catch (error) {
        if (timeout.aborted) {
          throw new AiProviderError(`${name} did not answer within ${timeoutMs} ms`, true, { cause: error });
        }
        if (signal?.aborted) throw new AiProviderError(`the request to ${name} was cancelled`, true, { cause: signal.reason });
        throw new AiProviderError(`${name} could not be reached at ${url}: ${describe(error)}`, true, { cause: error });
      }

      if (status < 200 || status > 299) {
        const serverMessage = errorMessageOf(text);
        throw new AiProviderError(
          `${name} answered HTTP ${status}${serverMessage ? `: ${serverMessage}` : ''}`,
          status === 408 || status === 409 || status === 429 || status >= 500,
        );
      }
      return parseCompletion(text, request);
    },
  };
}

type ChatMessage = { role: 'system' | 'user' | 'assistant'; content: string };

function chatMessages(request: AiAnswerRequest): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: 'system', content: systemPrompt(request) }];
  for (const turn of request.conversation) {
    messages.push({ role: turn.role === 'customer' ? 'user' : 'assistant', content: turn.text });
  }
  return messages;
}

function systemPrompt(request: AiAnswerRequest): string {
  const articles = request.articles.length
    ? request.articles.map((article) => `### ${article.title} (id: ${article.id})\n${article.body.trim()}`).join('\n\n')
    : '(The knowledge base is empty.)';
  return [
    `You are ${request.agentName}, the support agent of ${request.channelName}. You answer customers by email.`,
    `The conversation's subject is: ${request.subject}`,
    "Answer the customer's latest mail using only the knowledge articles below. Do not invent policies, prices, dates " +
      'or promises that the articles do not state. Write the body of an email in the language of the customer, ' +
      'friendly and short, without a subject line and without a signature.',
    'Reply with a JSON object and nothing else: {"answer": string, "confidence": number between 0 and 1, ' +
      '"sources": array of the ids of the articles you used}. The confidence says how sure you are that the articles ' +
      'answer the question; make it low (below 0.3) when the articles do not cover the question, when the customer ' +
      'is upset or asks for something only a person can do.',
    `Knowledge articles:\n\n${articles}`,
  ].join('\n\n');
}

const completionSchema = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string().nullish() }).nullish() })).min(1),
});

const answerSchema = z.object({
  answer: z.string(),
  confidence: z.union([
    z.number(),
    z
      .string()
      .trim()
      .regex(/^-?\d+(?:\.\d+)?$/)
      .transform(Number),
  ]),
  sources: z.array(z.unknown()).optional(),
});

function parseCompletion(text: string, request: AiAnswerRequest): AiAnswer {
  const completion = completionSchema.safeParse(parseJson(text));
  const content = completion.success ? completion.data.choices[0]?.message?.content : undefined;
  if (content === undefined || content === null) throw unexpected(text);

  const parsed = answerSchema.safeParse(parseJson(unfence(content)) ?? parseJson(outermostObject(content)));
  if (!parsed.success) throw unexpected(content);

  const answer = parsed.data.answer.trim();
  const known = new Set(request.articles.map((article) => article.id));
  const sources = (parsed.data.sources ?? []).map(String).filter((id) => known.has(id));
  return {
    text: answer,
    // An empty answer answers nothing, whatever the model claims.
    confidence: answer ? Math.min(1, Math.max(0, parsed.data.confidence)) : 0,
    sourceArticleIds: [...new Set(sources)],
  };
}

function unexpected(content: string): AiProviderError {
  const quoted = content.length > QUOTE_LENGTH ? `${content.slice(0, QUOTE_LENGTH)}…` : content;
  return new AiProviderError(`the model answered something that is not the expected JSON: ${quoted}`, false);
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The JSON inside a ```json … ``` fence, or the text itself. */
function unfence(content: string): string {
  const trimmed = content.trim();
  if (trimmed.length < 6 || !trimmed.startsWith('```') || !trimmed.endsWith('```')) return trimmed;
  const inner = trimmed.slice(3, -3);
  return inner.slice(/^[a-z]*/i.exec(inner)![0].length).trim(); // without the language tag
}

/** Models that talk around their JSON despite JSON mode: from the first `{` to the last `}`. */
function outermostObject(content: string): string | undefined {
  const start = content.indexOf('{');
  const end = content.lastIndexOf('}');
  return start >= 0 && end > start ? content.slice(start, end + 1) : undefined;
}

/** OpenAI: {"error": {"message": …}}; others: {"error": "…"}, {"message": …}, {"detail": …}, or plain text. */
function errorMessageOf(text: string): string | undefined {
  const body = parseJson(text) as Record<string, unknown> | undefined;
  if (body && typeof body === 'object') {
    const error = body.error;
    if (error && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
      return (error as { message: string }).message;
    }
    for (const candidate of [error, body.message, body.detail]) if (typeof candidate === 'string') return candidate;
    return undefined;
  }
  const plain = text.trim();
  if (!plain || plain.startsWith('<')) return undefined; // an HTML error page says nothing useful
  return plain.length > QUOTE_LENGTH ? `${plain.slice(0, QUOTE_LENGTH)}…` : plain;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // Node's fetch says "fetch failed" and puts the reason (ECONNREFUSED …) in the cause.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}
