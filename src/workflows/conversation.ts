// The conversation workflow moved to legacy/ while it is reshaped.
export * from './legacy/conversation-workflow.js';
