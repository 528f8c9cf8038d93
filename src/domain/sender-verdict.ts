import type { MailHeaders } from './classification.js';

// Issue 9: a mail from a forged sender, or one the receiving server judged spam, is stored but never answered
// automatically (the answer would be backscatter to whoever was impersonated).
// Every header read here was written by someone else: bounded prefixes, linear scans, no exceptions.

// The receiving server's own headers are on top; 20 of each is far more than any real mail carries.
const MAX_VALUES_PER_HEADER = 20;
const MAX_VALUE_CHARS = 8 * 1024;

export interface SenderTrust {
  /**
   * The authserv-ids the channel's receiving servers write into Authentication-Results: exact names
   * (`mx.google.com`, case-insensitive), or `*.example.com` for any host below example.com (not example.com itself).
   */
  trustedAuthservIds: readonly string[];
  /**
   * Exchange Online writes its Authentication-Results without an authserv-id: believe such a header when it is the topmost
   * one (channels whose mailbox is in Microsoft 365). Default false.
   */
  trustUnnamedAuthenticationResults?: boolean;
  /**
   * Read the spam verdicts receiving servers add (SpamAssassin, rspamd, Microsoft 365). Default true: only their yes-verdicts
   * count, and a sender who writes one into their own mail only hurts themselves.
   */
  trustSpamHeaders?: boolean;
}

/** Without a channel's settings: no Authentication-Results is believed, spam flags are. */
export const NO_SENDER_TRUST: SenderTrust = { trustedAuthservIds: [] };

/**
 * - `spam`: spam, or a sender the receiving server found forged: stored, kept out of the queue, never answered automatically.
 * - `unverified`: the sender may be forged, but nobody enforced it (DMARC policy none, an override by the receiving server):
 *   queued for agents, never answered automatically.
 * - `ordinary`: nothing against it.
 */
export type SenderVerdictKind = 'spam' | 'unverified' | 'ordinary';

export interface SenderVerdict {
  kind: SenderVerdictKind;
  /** One line per finding, for agents; empty when ordinary. */
  reasons: string[];
}

interface Finding {
  kind: 'spam' | 'unverified';
  reason: string;
}

/**
 * Judges an inbound mail by its header section (topmost header first, as received).
 * DMARC and Microsoft's composite authentication decide about forgery; SPF or DKIM failures alone do not,
 * because forwarding breaks SPF and mailing lists break DKIM.
 * Gmail writes no spam header at all: it files spam into the Spam folder, which Mailroom never reads.
 */
export function senderVerdict(headers: MailHeaders, trust: SenderTrust): SenderVerdict {
  const findings = [
    ...authenticationFindings(headers, trust),
    ...((trust.trustSpamHeaders ?? true) ? spamFlagFindings(headers) : []),
  ];
  const reasons = [...new Set(findings.map((finding) => finding.reason))];
  if (findings.some((finding) => finding.kind === 'spam')) return { kind: 'spam', reasons };
  return { kind: findings.length > 0 ? 'unverified' : 'ordinary', reasons };
}

// ---- Authentication-Results (RFC 8601) ----

interface AuthResult {
  /** Lower case, without a method version (`dkim/1` → `dkim`). */
  method: string;
  /** Lower case. */
  result: string;
  /** `header.from`, `reason`, `action`, … (lower-case keys) → the first value given. */
  properties: Map<string, string>;
  /** `key=value` words found in the result's comments, all lower case: `(p=REJECT sp=REJECT dis=NONE)`, `(policy=none)`. */
  commentFields: Map<string, string>;
}

interface AuthResultsHeader {
  /** Lower case, without a job id; null when the header starts right with a result, as Exchange Online writes it. */
  authservId: string | null;
  results: AuthResult[];
}

function authenticationFindings(headers: MailHeaders, trust: SenderTrust): Finding[] {
  const parsed = valuesOf(headers, 'authentication-results').map(readAuthenticationResults);
  return receivingServerResults(parsed, trust).flatMap(({ label, results }) => judgeResults(label, results));
}

/**
 * The results the channel's receiving server wrote for this delivery: the topmost run of headers with a trusted authserv-id.
 * It prepends its own; anything lower is an earlier hop or a forgery (RFC 8601 §5 asks MTAs to delete those; not all do).
 * ARC-Authentication-Results are not read: a sealer writes them for the next hop, without its final verdict.
 */
function receivingServerResults(
  parsed: readonly (AuthResultsHeader | null)[],
  trust: SenderTrust,
): { label: string; results: AuthResult[] }[] {
  const start = parsed.findIndex((header, index) => header !== null && isTrusted(header, index, trust));
  const first = parsed[start];
  if (!first) return [];
  // Every Exchange Online tenant on the way writes an unnamed header: only the topmost one is the channel's.
  if (first.authservId === null) return [{ label: 'Microsoft 365', results: first.results }];

  const id = first.authservId;
  const run: AuthResultsHeader[] = [];
  for (const header of parsed.slice(start)) {
    if (header?.authservId !== id) break;
    run.push(header);
  }
  // One server's milters write one header per method; a lower header repeating a method is from an earlier hop.
  const seen = new Set<string>();
  return run.map((header) => {
    const results = header.results.filter((result) => !seen.has(result.method));
    for (const result of header.results) seen.add(result.method);
    return { label: id, results };
  });
}

function isTrusted(header: AuthResultsHeader, index: number, trust: SenderTrust): boolean {
  const id = header.authservId;
  if (id === null) return index === 0 && trust.trustUnnamedAuthenticationResults === true;
  return trust.trustedAuthservIds.some((pattern) => authservIdMatches(id, pattern.trim().toLowerCase()));
}

function authservIdMatches(id: string, pattern: string): boolean {
  if (!pattern.startsWith('*.')) return pattern !== '' && id === pattern;
  const suffix = pattern.slice(1);
  return suffix.length > 1 && id.length > suffix.length && id.endsWith(suffix);
}

/** Lower case, without the `/<job id>` OpenDMARC and OpenDKIM can append; null unless it looks like a host name. */
function normalizedAuthservId(id: string): string | null {
  const name = (id.split('/', 1)[0] ?? '').toLowerCase();
  return /^[a-z0-9._-]{1,253}$/.test(name) ? name : null;
}

function judgeResults(label: string, results: readonly AuthResult[]): Finding[] {
  const dmarc = results.filter((result) => result.method === 'dmarc');
  const compauth = results.filter((result) => result.method === 'compauth');
  // Microsoft's composite verdict already weighs DMARC, ARC and the tenant's allow lists: where present it decides alone.
  if (compauth.length > 0) {
    const domain = dmarc.map((result) => displayDomain(result.properties.get('header.from'))).find(Boolean);
    return compauth.flatMap((result) => judgeCompauth(result, label, domain));
  }
  return dmarc.flatMap((result) => judgeDmarc(result, label));
}

function judgeDmarc(result: AuthResult, label: string): Finding[] {
  // pass, none, bestguesspass, temperror and permerror say nothing against the sender.
  if (result.result !== 'fail') return [];
  const domain = displayDomain(result.properties.get('header.from'));
  const failure = domain ? `DMARC fail for ${domain} (header.from) according to ${label}` : `DMARC fail according to ${label}`;
  const unenforced = notEnforced(result);
  // Policy none: the domain's owner says its failures are no proof of forgery yet; still, no answer to a maybe-forged address.
  return [
    unenforced ? { kind: 'unverified', reason: `${failure}, not enforced (${unenforced})` } : { kind: 'spam', reason: failure },
  ];
}

// Where servers say how a DMARC failure was handled, most specific first: the disposition they applied
// (Authentication-Milter, OpenDMARC and Gmail, Microsoft), then the domain's policy (rspamd, Authentication-Milter, Gmail).
const DISPOSITION_SOURCES: readonly (readonly ['property' | 'comment', string])[] = [
  ['property', 'policy.applied-disposition'],
  ['comment', 'dis'],
  ['property', 'action'],
  ['comment', 'policy'],
  ['property', 'policy.published-domain-policy'],
  ['comment', 'p'],
];

/** `dis=none` and the like when the failure was not enforced; null when it was, or nobody said (a failure is a failure). */
function notEnforced(result: AuthResult): string | null {
  for (const [source, key] of DISPOSITION_SOURCES) {
    const value = (source === 'property' ? result.properties : result.commentFields).get(key)?.toLowerCase();
    if (value !== undefined) return value === 'none' ? `${key}=none` : null;
  }
  return null;
}

// Microsoft's documented compauth reason codes; 001 and 6xx are implicit failures, which Microsoft itself may let through.
const COMPAUTH_REASONS: Readonly<Record<string, string>> = {
  '000': 'explicit: DMARC fail under a quarantine or reject policy',
  '001': 'implicit: weak or missing authentication records',
  '002': "the organization forbids this sender's spoofing",
  '010': "DMARC fail for one of the organization's own domains",
};

function judgeCompauth(result: AuthResult, label: string, domain: string | undefined): Finding[] {
  if (result.result !== 'fail') return []; // pass, softpass, none (not checked, or bypassed by an allow list)
  const code = result.properties.get('reason') ?? '';
  const implicit = code === '001' || /^6\d\d$/.test(code);
  const meaning = COMPAUTH_REASONS[code] ?? (implicit ? "implicit, for one of the organization's own domains" : undefined);
  const because = /^\d{3}$/.test(code) ? `, reason ${code}${meaning ? ` (${meaning})` : ''}` : '';
  const reason = `composite authentication fail${because}${domain ? `, for ${domain} (header.from)` : ''} according to ${label}`;
  return [{ kind: implicit ? 'unverified' : 'spam', reason }];
}

/** The domain of a `header.from` value, fit to show; undefined when it is not a plausible domain. */
function displayDomain(value: string | undefined): string | undefined {
  const domain = value?.slice(value.lastIndexOf('@') + 1).toLowerCase();
  return domain !== undefined && /^[a-z0-9._-]{1,253}$/.test(domain) ? domain : undefined;
}

function readAuthenticationResults(value: string): AuthResultsHeader | null {
  const [head, ...rest] = segmentsOf(tokenize(value));
  if (!head) return null;
  if (head.tokens[1]?.kind === '=') return { authservId: null, results: [head, ...rest].flatMap(readResult) };
  // `authserv-id [version]`; a header without a plausible one cannot be attributed to any server.
  const id = head.tokens[0];
  const authservId = id?.kind === 'word' || id?.kind === 'quoted' ? normalizedAuthservId(id.text) : null;
  return authservId === null ? null : { authservId, results: rest.flatMap(readResult) };
}

/** `method=result` followed by `reason=…`, `ptype.property=…` and comments; nothing for `none` or a stray word. */
function readResult({ tokens, comments }: Segment): AuthResult[] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < tokens.length; i++) {
    const key = tokens[i];
    const value = tokens[i + 2];
    if (key?.kind === 'word' && tokens[i + 1]?.kind === '=' && (value?.kind === 'word' || value?.kind === 'quoted')) {
      pairs.push([key.text.toLowerCase(), value.text]);
      i += 2;
    }
  }
  const [methodAndResult, ...rest] = pairs;
  if (!methodAndResult) return [];
  const properties = new Map<string, string>();
  for (const [key, value] of rest) if (!properties.has(key)) properties.set(key, value);
  const commentFields = new Map<string, string>();
  for (const word of comments.join(' ').split(/[\s(),]+/)) {
    const equals = word.indexOf('=');
    const key = word.slice(0, equals).toLowerCase();
    if (equals > 0 && !commentFields.has(key)) commentFields.set(key, word.slice(equals + 1).toLowerCase());
  }
  const [method, result] = methodAndResult;
  return [{ method: method.split('/', 1)[0] ?? method, result: result.toLowerCase(), properties, commentFields }];
}

type Token = { kind: 'word' | 'quoted' | 'comment'; text: string } | { kind: ';' | '=' };

interface Segment {
  /** Words, quoted strings and `=`, in order. */
  tokens: Token[];
  comments: string[];
}

/** The `;`-separated parts of a header (quoted strings and comments keep their `;`). */
function segmentsOf(tokens: readonly Token[]): Segment[] {
  const segments: Segment[] = [{ tokens: [], comments: [] }];
  for (const token of tokens) {
    const current = segments[segments.length - 1]!;
    if (token.kind === ';') segments.push({ tokens: [], comments: [] });
    else if (token.kind === 'comment') current.comments.push(token.text);
    else current.tokens.push(token);
  }
  return segments;
}

// Characters that end a word: white space and the RFC 8601 / RFC 5322 specials that matter here.
const WORD_END = new Set([' ', '\t', '\r', '\n', ';', '=', '(', ')', '"']);

/** RFC 8601 lexemes in one pass: words, quoted strings, (nested) comments, `=` and `;`. */
function tokenize(value: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < value.length) {
    const char = value.charAt(i);
    if (char === ';' || char === '=') {
      tokens.push({ kind: char });
      i++;
    } else if (char === '(') {
      const end = closingIndex(value, i);
      tokens.push({ kind: 'comment', text: value.slice(i + 1, end) });
      i = end + 1;
    } else if (char === '"') {
      const end = closingIndex(value, i);
      tokens.push({ kind: 'quoted', text: value.slice(i + 1, end).replace(/\\(.)/gs, '$1') });
      i = end + 1;
    } else if (WORD_END.has(char)) {
      i++; // white space, or a `)` without its `(`
    } else {
      const start = i;
      while (i < value.length && !WORD_END.has(value.charAt(i))) i++;
      tokens.push({ kind: 'word', text: value.slice(start, i) });
    }
  }
  return tokens;
}

/**
 * Index of the character closing the comment or quoted string opened at `start`, or the end of the value when it is
 * never closed. Comments nest; `\` quotes the next character in both.
 */
function closingIndex(value: string, start: number): number {
  const isComment = value.charAt(start) === '(';
  let depth = 0;
  for (let i = start; i < value.length; i++) {
    const char = value.charAt(i);
    if (char === '\\') i++;
    else if (!isComment) {
      if (char === '"' && i > start) return i;
    } else if (char === '(') depth++;
    else if (char === ')' && --depth === 0) return i;
  }
  return value.length;
}

// ---- Spam verdicts of the receiving server ----

// Each reader says why a value is a spam verdict, or null; a "no" never clears another header's "yes".
const SPAM_VERDICT_READERS: readonly (readonly [string, (value: string) => string | null])[] = [
  ['x-spam-flag', (value) => (firstWord(value) === 'yes' ? 'spam verdict X-Spam-Flag: YES' : null)],
  ['x-spam-status', spamStatus],
  ['x-spam', (value) => (firstWord(value) === 'yes' ? 'spam verdict X-Spam: Yes' : null)],
  ['x-spamd-result', rspamdResult],
  ['x-rspamd-action', rspamdAction],
  ['x-ms-exchange-organization-scl', exchangeSpamConfidence],
  ['x-forefront-antispam-report', forefrontReport],
];

function spamFlagFindings(headers: MailHeaders): Finding[] {
  return SPAM_VERDICT_READERS.flatMap(([name, read]) =>
    valuesOf(headers, name).flatMap((value) => {
      const reason = read(value);
      return reason === null ? [] : [{ kind: 'spam' as const, reason }];
    }),
  );
}

/** SpamAssassin, and rspamd's look-alike: `Yes, score=7.9 required=5.0 tests=…`. */
function spamStatus(value: string): string | null {
  if (firstWord(value) !== 'yes') return null;
  const score = numberAfter(value, 'score=');
  const required = numberAfter(value, 'required=');
  return `spam verdict X-Spam-Status: Yes${score ? `, score=${score}` : ''}${score && required ? ` required=${required}` : ''}`;
}

/** rspamd: `default: True [16.20 / 15.00]; SYMBOL(score)[…]; …`, where True means its action is reject. */
function rspamdResult(value: string): string | null {
  const text = value.trimStart().toLowerCase();
  return text.startsWith('default:') && firstWord(text.slice('default:'.length)) === 'true'
    ? 'rspamd verdict reject (X-Spamd-Result: default: True)'
    : null;
}

// `soft reject` is a temporary refusal (greylisting, rate limits), not a verdict on the content.
const RSPAMD_SPAM_ACTIONS = new Set(['add header', 'rewrite subject', 'reject']);

function rspamdAction(value: string): string | null {
  const action = value
    .trim()
    .toLowerCase()
    .split(/[\s_]+/)
    .join(' ');
  return RSPAMD_SPAM_ACTIONS.has(action) ? `rspamd action "${action}" (X-Rspamd-Action)` : null;
}

/** SCL 5 to 9 is spam; -1 (a trusted sender) and 0 to 1 never clear anything. */
function spamConfidence(value: string): number | null {
  const text = value.trim();
  const level = /^\d$/.test(text) ? Number(text) : null;
  return level !== null && level >= 5 ? level : null;
}

function exchangeSpamConfidence(value: string): string | null {
  const level = spamConfidence(value);
  return level === null ? null : `Microsoft 365 spam confidence level ${level} (X-MS-Exchange-Organization-SCL)`;
}

const FOREFRONT_FILTER_VERDICTS: Readonly<Record<string, string>> = {
  SPM: 'marked as spam by the spam filter',
  SKS: 'marked as spam by a mail flow rule',
  SKB: "sender on the anti-spam policy's blocked list",
  BLK: "sender on the recipient's Blocked Senders list",
};

const FOREFRONT_CATEGORIES: Readonly<Record<string, string>> = {
  SPM: 'spam',
  HSPM: 'high confidence spam',
  PHSH: 'phishing',
  HPHSH: 'high confidence phishing',
  HPHISH: 'high confidence phishing',
  SPOOF: 'spoofing',
  MALW: 'malware',
};

/** Microsoft 365: `CIP:…;CTRY:NL;LANG:en;SCL:5;SRV:;IPV:NLI;SFV:SPM;…;CAT:SPM;…;DIR:INB;`. */
function forefrontReport(value: string): string | null {
  const findings: string[] = [];
  for (const field of value.split(';', 200)) {
    const colon = field.indexOf(':');
    if (colon < 0) continue;
    const key = field.slice(0, colon).trim().toUpperCase();
    const fieldValue = field.slice(colon + 1).trim();
    const code = fieldValue.toUpperCase();
    const level = key === 'SCL' ? spamConfidence(fieldValue) : null;
    if (level !== null) findings.push(`spam confidence level ${level}`);
    if (key === 'SFV' && FOREFRONT_FILTER_VERDICTS[code]) findings.push(`${FOREFRONT_FILTER_VERDICTS[code]} (SFV:${code})`);
    if (key === 'CAT' && FOREFRONT_CATEGORIES[code]) findings.push(`category ${FOREFRONT_CATEGORIES[code]} (CAT:${code})`);
  }
  return findings.length > 0 ? `Microsoft 365: ${findings.join(', ')} (X-Forefront-Antispam-Report)` : null;
}

/** The first word of a value, lower case: `YES`, `Yes,`, `yes (…)` all give `yes`. */
function firstWord(value: string): string {
  const text = value.trimStart();
  let end = 0;
  while (end < text.length && !/[\s,;(]/.test(text.charAt(end))) end++;
  return text.slice(0, end).toLowerCase();
}

/** The number right after `key` (`score=7.9`), when there is a plausible one. */
function numberAfter(value: string, key: string): string | undefined {
  const start = value.toLowerCase().indexOf(key);
  if (start < 0) return undefined;
  const number = value.slice(start + key.length, start + key.length + 12).split(/[\s,;]/, 1)[0] ?? '';
  return /^-?\d{1,5}(\.\d{1,3})?$/.test(number) ? number : undefined;
}

/** The first values of a header, each cut to a bounded length; nothing when the entry is not a list of strings. */
function valuesOf(headers: MailHeaders, name: string): string[] {
  const values: unknown = headers[name];
  if (!Array.isArray(values)) return [];
  return values
    .slice(0, MAX_VALUES_PER_HEADER)
    .filter((value): value is string => typeof value === 'string')
    .map((value) => value.slice(0, MAX_VALUE_CHARS));
}
