import { createKnowledgeBaseProvider } from './knowledge-base-provider.js';
import { createOpenAiCompatibleProvider } from './openai-compatible-provider.js';
import type { AiProvider } from './provider.js';

export * from './provider.js';
export { createKnowledgeBaseProvider } from './knowledge-base-provider.js';
export { createOpenAiCompatibleProvider, type OpenAiCompatibleOptions } from './openai-compatible-provider.js';

export type AiProviderConfig =
  { kind: 'knowledge_base' } | { kind: 'openai_compatible'; baseUrl: string; apiKey?: string; model: string };

/** The provider an AI agent's settings name. */
export function createAiProvider(config: AiProviderConfig): AiProvider {
  switch (config.kind) {
    case 'knowledge_base':
      return createKnowledgeBaseProvider();
    case 'openai_compatible':
      return createOpenAiCompatibleProvider({ baseUrl: config.baseUrl, apiKey: config.apiKey, model: config.model });
  }
  // Settings come from the database: a kind this code does not know is a configuration error.
  throw new Error(`unknown AI provider kind: ${(config as { kind: unknown }).kind}`);
}
