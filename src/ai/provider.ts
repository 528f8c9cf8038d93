/** A help-center article the AI agent may answer from. */
export interface KnowledgeArticle {
  id: string;
  title: string;
  body: string;
}

/** One mail of the conversation; `assistant` is our side (the AI agent or a human agent). */
export interface AiTurn {
  role: 'customer' | 'assistant';
  text: string;
}

export interface AiAnswerRequest {
  channelName: string;
  /** The AI agent's display name, e.g. 'Mia (AI)'. */
  agentName: string;
  subject: string;
  /** Oldest first; the last turn is the customer's mail to answer. */
  conversation: AiTurn[];
  /** The channel's knowledge base. */
  articles: KnowledgeArticle[];
}

export interface AiAnswer {
  text: string;
  /** 0..1: how sure the provider is that `text` answers the customer's question. */
  confidence: number;
  sourceArticleIds: string[];
}

export interface AiProvider {
  readonly name: string;
  answer(request: AiAnswerRequest, signal?: AbortSignal): Promise<AiAnswer>;
}

/** retryable: worth another attempt (network, timeout, 429, 5xx); not: bad key, bad model, unusable answer. */
export class AiProviderError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AiProviderError';
  }
}
