import { sanitizeMailHtml } from './sanitize-mail-html.js';
import { textToHtml } from './text-html.js';

// Signatures below outgoing mail: the agent's own (their replies) or the channel's, with {{agent.name}} and
// {{channel.name}} filled in. HTML signatures pass the same allowlist as inbound mail, when saved and when sent.

export const SIGNATURE_TOKENS = { agentName: '{{agent.name}}', channelName: '{{channel.name}}' } as const;
export const MAX_SIGNATURE_CHARS = 10_000;

export interface SignatureTemplate {
  text: string | null;
  html: string | null;
}

export interface Signature {
  text: string;
  /** Null: the HTML part shows the text signature. */
  html: string | null;
}

// As in the subject and From-name templates: the name inside {{ }} is trimmed in code, never by backtracking.
const TOKEN = /\{\{([^{}]*)\}\}/g;

function fill(template: string, names: { agentName: string; channelName: string }, escape: (value: string) => string) {
  return template.replaceAll(TOKEN, (match, name: string) => {
    const token = `{{${name.trim()}}}`;
    if (token === SIGNATURE_TOKENS.agentName) return escape(names.agentName);
    if (token === SIGNATURE_TOKENS.channelName) return escape(names.channelName);
    return match;
  });
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The signature a mail carries: the first of `templates` that has one (the agent's, then the channel's), filled
 * in; null when none has. `agentName` is whoever writes (the channel's name for mail nobody wrote).
 */
export function renderSignature(
  templates: readonly SignatureTemplate[],
  names: { agentName: string; channelName: string },
): Signature | null {
  const template = templates.find((t) => t.text?.trim() || t.html?.trim());
  if (!template) return null;
  const html = template.html?.trim() ? sanitizeMailHtml(fill(template.html, names, escapeHtml)) : null;
  const text = template.text?.trim() ? fill(template.text.trim(), names, (value) => value) : null;
  return { text: text ?? '', html: html || null };
}

/** The body with its signature below: the text after the usual "-- " line, the HTML in its own block. */
export function signedParts(body: { text: string; html: string }, signature: Signature | null): { text: string; html: string } {
  if (!signature) return body;
  const text = signature.text ? `${body.text}\n\n-- \n${signature.text}` : body.text;
  const signatureHtml = signature.html ?? (signature.text ? bodyOf(textToHtml(signature.text)) : '');
  if (!signatureHtml) return { text, html: body.html };
  const block = `<div class="signature">${signatureHtml}</div>\n`;
  const end = body.html.lastIndexOf('</body>');
  return { text, html: end < 0 ? body.html + block : body.html.slice(0, end) + block + body.html.slice(end) };
}

/** What is between <body …> and </body> of a document textToHtml made. */
function bodyOf(document: string): string {
  const start = document.indexOf('>', document.indexOf('<body')) + 1;
  const end = document.lastIndexOf('</body>');
  return document.slice(start, end).trim();
}
