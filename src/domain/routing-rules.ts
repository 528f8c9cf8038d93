import { RE2JS } from 're2js';
import { z } from 'zod';
import type { MailClassification } from './conversation.js';

// Routing rules: per channel an ordered list; the first rule whose conditions all match decides who
// gets a new conversation, its priority and its labels. Everything here is pure: the facts are
// gathered by the caller, the schemas validate rule bodies at the API.

export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** One step up; urgent stays urgent. */
export function raisePriority(p: Priority): Priority {
  return PRIORITIES[Math.min(PRIORITIES.indexOf(p) + 1, PRIORITIES.length - 1)]!;
}

const CLASSIFICATIONS = ['ordinary', 'auto_reply', 'bounce'] as const satisfies readonly MailClassification[];
// Fails to compile when MailClassification gains a value this list lacks.
const _allClassifications: Record<MailClassification, true> = { ordinary: true, auto_reply: true, bounce: true };

/** Text (subject, body, addresses, attribute values) is cut to this many characters before matching. */
export const MAX_MATCHED_TEXT = 20_000;
export const MAX_REGEX_LENGTH = 200;
/**
 * Patterns are admins' input matched against senders' input, so they run on RE2 (linear in the text).
 * Its cost per character grows with the compiled program's size: capped per rule, one rule matches
 * 20,000 characters in well under 100 ms even when pattern and text are made to be slow.
 */
export const MAX_RULE_REGEX_PROGRAM = 1_000;
const MAX_VALUE_LENGTH = 1_000;

// ---------------------------------------------------------------------------------------------
// Schemas

const value = z
  .string({ error: (issue) => (issue.input === undefined ? 'value is required' : 'value must be a string') })
  .max(MAX_VALUE_LENGTH, `value must be at most ${MAX_VALUE_LENGTH} characters`);

/** Checks the value against its operator: regexes must compile, substrings must not be empty. */
function checkValue(operator: string, v: string | undefined, ctx: z.core.$RefinementCtx) {
  if (v === undefined) return;
  if (operator === 'matches') {
    if (v.length > MAX_REGEX_LENGTH) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: `regular expression must be at most ${MAX_REGEX_LENGTH} characters (got ${v.length})`,
      });
      return;
    }
    try {
      const size = compileRulePattern(v).programSize();
      if (size > MAX_RULE_REGEX_PROGRAM) {
        ctx.addIssue({
          code: 'custom',
          path: ['value'],
          message: `regular expression is too complex: it compiles to ${size} instructions, at most ${MAX_RULE_REGEX_PROGRAM}`,
        });
      }
    } catch (error) {
      // RE2 syntax (no look-around, no back-references): its message reads "error parsing regexp: missing closing ): `(`".
      ctx.addIssue({ code: 'custom', path: ['value'], message: `Invalid regular expression: ${(error as Error).message}` });
    }
  } else if ((operator === 'contains' || operator === 'not_contains') && v === '') {
    ctx.addIssue({ code: 'custom', path: ['value'], message: `value must not be empty for operator "${operator}"` });
  }
}

const checked = <T extends { operator: string; value?: string | undefined }>(c: T, ctx: z.core.$RefinementCtx) =>
  checkValue(c.operator, c.value, ctx);

const CONDITION_FIELDS = [
  'sender',
  'sender_domain',
  'recipient',
  'subject',
  'body',
  'contact_attribute',
  'business_hours',
  'classification',
] as const;

export const routingConditionSchema = z.discriminatedUnion(
  'field',
  [
    z
      .object({ field: z.literal('sender'), operator: z.enum(['is', 'is_not', 'contains', 'matches']), value })
      .superRefine(checked),
    z.object({ field: z.literal('sender_domain'), operator: z.enum(['is', 'is_not', 'matches']), value }).superRefine(checked),
    z.object({ field: z.literal('recipient'), operator: z.enum(['is', 'contains', 'matches']), value }).superRefine(checked),
    z
      .object({ field: z.enum(['subject', 'body']), operator: z.enum(['is', 'contains', 'not_contains', 'matches']), value })
      .superRefine(checked),
    z
      .object({
        field: z.literal('contact_attribute'),
        attribute: z
          .string({ error: 'attribute (the contact attribute name) is required' })
          .trim()
          .min(1, 'attribute must not be empty')
          .max(100, 'attribute must be at most 100 characters'),
        operator: z.enum(['is', 'is_not', 'contains', 'matches', 'exists', 'not_exists']),
        value: value.optional(),
      })
      .superRefine((c, ctx) => {
        if (c.value === undefined && c.operator !== 'exists' && c.operator !== 'not_exists') {
          ctx.addIssue({ code: 'custom', path: ['value'], message: `value is required for operator "${c.operator}"` });
        }
        checkValue(c.operator, c.value, ctx);
      }),
    z.object({
      field: z.literal('business_hours'),
      value: z.enum(['inside', 'outside'], { error: 'value must be "inside" or "outside"' }),
    }),
    z.object({
      field: z.literal('classification'),
      operator: z.enum(['is', 'is_not']),
      value: z.enum(CLASSIFICATIONS),
    }),
  ],
  {
    error: (issue) =>
      issue.code === 'invalid_union'
        ? `unknown condition field ${JSON.stringify((issue.input as { field?: unknown } | undefined)?.field) ?? 'undefined'}; expected one of ${CONDITION_FIELDS.join(', ')}`
        : undefined,
  },
);
export type RoutingCondition = z.infer<typeof routingConditionSchema>;

const label = z
  .string({ error: 'label must be a string' })
  .trim()
  .toLowerCase()
  .min(1, 'label must not be empty')
  .max(50, 'label must be at most 50 characters');

export const routingActionsSchema = z
  .object({
    assignTo: z
      .discriminatedUnion(
        'kind',
        [
          z.object({ kind: z.literal('agent'), agentId: z.uuid() }),
          z.object({ kind: z.literal('team'), teamId: z.uuid() }),
          z.object({ kind: z.literal('ai_agent'), aiAgentId: z.uuid() }),
          z.object({ kind: z.literal('humans') }),
        ],
        {
          error: (issue) =>
            issue.code === 'invalid_union' ? 'assignTo.kind must be one of agent, team, ai_agent, humans' : undefined,
        },
      )
      .optional(),
    priority: z.enum(PRIORITIES).optional(),
    /** Trimmed and lower-cased; duplicates are allowed here and collapse when applied. */
    labels: z.array(label).max(20, 'at most 20 labels').optional(),
  })
  .refine((a) => a.assignTo !== undefined || a.priority !== undefined || (a.labels?.length ?? 0) > 0, {
    message: 'actions must do something: set assignTo, priority or labels',
  });
export type RoutingActions = z.infer<typeof routingActionsSchema>;

export const routingRuleSchema = z.object({
  name: z
    .string({ error: 'name is required' })
    .trim()
    .min(1, 'name must not be empty')
    .max(120, 'name must be at most 120 characters'),
  conditions: z
    .array(routingConditionSchema, { error: 'conditions must be a list' })
    .min(1, 'a rule needs at least one condition')
    .max(20, 'a rule has at most 20 conditions')
    .superRefine((conditions, ctx) => {
      const size = conditions.reduce(
        (sum, c) => sum + ('operator' in c && c.operator === 'matches' ? programSizeOf(c.value) : 0),
        0,
      );
      if (size > MAX_RULE_REGEX_PROGRAM) {
        ctx.addIssue({
          code: 'custom',
          message: `the rule's regular expressions are too complex together: ${size} instructions, at most ${MAX_RULE_REGEX_PROGRAM}`,
        });
      }
    }),
  actions: routingActionsSchema,
});
export type RoutingRuleDefinition = z.infer<typeof routingRuleSchema>;
export interface RoutingRule extends RoutingRuleDefinition {
  id: string;
}

// ---------------------------------------------------------------------------------------------
// Matching

export interface RoutingFacts {
  /** Lower-cased address. */
  sender: string;
  /** Lower-cased To + Cc. */
  recipients: string[];
  subject: string;
  /** The customer's text (reply part). */
  body: string;
  contactAttributes: Record<string, string | number | boolean | null>;
  insideBusinessHours: boolean;
  classification: MailClassification;
}

type TextOperator = 'is' | 'is_not' | 'contains' | 'not_contains' | 'matches';

/** Case-insensitive comparison of one text; 'is' ignores surrounding whitespace. A regex that does not compile matches nothing. */
function textMatches(operator: TextOperator, text: string, expected: string): boolean {
  const bounded = text.slice(0, MAX_MATCHED_TEXT);
  switch (operator) {
    case 'is':
      return bounded.trim().toLowerCase() === expected.trim().toLowerCase();
    case 'is_not':
      return !textMatches('is', bounded, expected);
    case 'contains':
      return bounded.toLowerCase().includes(expected.toLowerCase());
    case 'not_contains':
      return !textMatches('contains', bounded, expected);
    case 'matches':
      try {
        return compileRulePattern(expected).test(bounded);
      } catch {
        return false;
      }
  }
}

// Compiled patterns by source: a worker routes many conversations with the same few rules.
const compiledPatterns = new Map<string, RE2JS>();
const COMPILED_PATTERNS_KEPT = 1_000;

/** A rule's pattern on RE2, case-insensitive; throws RE2's syntax error for one that does not compile. */
export function compileRulePattern(pattern: string): RE2JS {
  let compiled = compiledPatterns.get(pattern);
  if (!compiled) {
    compiled = RE2JS.compile(pattern, RE2JS.CASE_INSENSITIVE);
    if (compiledPatterns.size >= COMPILED_PATTERNS_KEPT) compiledPatterns.delete(compiledPatterns.keys().next().value!);
    compiledPatterns.set(pattern, compiled);
  }
  return compiled;
}

function programSizeOf(pattern: string | undefined): number {
  try {
    return pattern === undefined ? 0 : compileRulePattern(pattern).programSize();
  } catch {
    return 0; // reported on the condition itself
  }
}

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1);
}

/** The attribute by exact name, else by name ignoring case; null and '' count as not set. */
function contactAttribute(attributes: RoutingFacts['contactAttributes'], name: string): string | undefined {
  let key: string | undefined = Object.hasOwn(attributes, name) ? name : undefined;
  if (key === undefined) {
    const lower = name.toLowerCase();
    key = Object.keys(attributes).find((k) => k.toLowerCase() === lower);
  }
  const raw = key === undefined ? undefined : attributes[key];
  if (raw === undefined || raw === null || raw === '') return undefined;
  return String(raw);
}

export function conditionMatches(condition: RoutingCondition, facts: RoutingFacts): boolean {
  switch (condition.field) {
    case 'sender':
      return textMatches(condition.operator, facts.sender, condition.value);
    case 'sender_domain': {
      // "@example.com" is accepted for "example.com"; patterns are taken as written.
      const expected = condition.operator === 'matches' ? condition.value : condition.value.trim().replace(/^@/, '');
      return textMatches(condition.operator, domainOf(facts.sender), expected);
    }
    case 'recipient':
      return facts.recipients.some((r) => textMatches(condition.operator, r, condition.value));
    case 'subject':
      return textMatches(condition.operator, facts.subject, condition.value);
    case 'body':
      return textMatches(condition.operator, facts.body, condition.value);
    case 'contact_attribute': {
      const actual = contactAttribute(facts.contactAttributes, condition.attribute);
      if (condition.operator === 'exists') return actual !== undefined;
      if (condition.operator === 'not_exists') return actual === undefined;
      // A missing attribute is "not" any value, and contains or matches nothing.
      if (actual === undefined || condition.value === undefined) return condition.operator === 'is_not';
      return textMatches(condition.operator, actual, condition.value);
    }
    case 'business_hours':
      return facts.insideBusinessHours === (condition.value === 'inside');
    case 'classification':
      return (facts.classification === condition.value) === (condition.operator === 'is');
    default: {
      const unknown: never = condition;
      throw new Error(`unknown routing condition ${JSON.stringify(unknown)}`);
    }
  }
}

export function ruleMatches(rule: RoutingRuleDefinition, facts: RoutingFacts): boolean {
  return rule.conditions.every((c) => conditionMatches(c, facts));
}

/** The first rule (in the given order) whose conditions all match, or null. */
export function firstMatchingRule<R extends RoutingRuleDefinition>(rules: readonly R[], facts: RoutingFacts): R | null {
  return rules.find((rule) => ruleMatches(rule, facts)) ?? null;
}

// ---------------------------------------------------------------------------------------------
// Description

const MAX_DESCRIBED_VALUE = 60;

function shortened(text: string): string {
  return text.length > MAX_DESCRIBED_VALUE ? `${text.slice(0, MAX_DESCRIBED_VALUE)}…` : text;
}

function quoted(text: string): string {
  return JSON.stringify(shortened(text));
}

const OPERATOR_WORDS: Record<string, string> = {
  is: 'is',
  is_not: 'is not',
  contains: 'contains',
  not_contains: 'does not contain',
  matches: 'matches',
};

function describeComparison(subject: string, operator: string, expected: string): string {
  const shown = operator === 'matches' ? `/${shortened(expected)}/` : quoted(expected);
  return `${subject} ${OPERATOR_WORDS[operator] ?? operator} ${shown}`;
}

function describeCondition(c: RoutingCondition): string {
  switch (c.field) {
    case 'sender':
    case 'recipient':
    case 'subject':
    case 'body':
      return describeComparison(c.field, c.operator, c.value);
    case 'sender_domain':
      return describeComparison('sender domain', c.operator, c.value);
    case 'contact_attribute': {
      const subject = `contact ${c.attribute}`;
      if (c.operator === 'exists') return `${subject} is set`;
      if (c.operator === 'not_exists') return `${subject} is not set`;
      return describeComparison(subject, c.operator, c.value ?? '');
    }
    case 'business_hours':
      return `${c.value} business hours`;
    case 'classification':
      return `mail ${c.operator === 'is' ? 'is' : 'is not'} ${c.value}`;
  }
}

function describeActions(a: RoutingActions): string {
  const parts: string[] = [];
  if (a.assignTo) {
    const to = { agent: 'agent', team: 'team', ai_agent: 'AI agent', humans: 'humans' }[a.assignTo.kind];
    parts.push(`assign to ${to}`);
  }
  if (a.priority) parts.push(`priority ${a.priority}`);
  if (a.labels?.length) parts.push(`label ${[...new Set(a.labels)].join(', ')}`);
  return parts.join(', ');
}

/** One line for the timeline / Temporal UI, e.g. `rule "VIP customers": contact plan is "enterprise" → assign to team`. */
export function describeRule(rule: RoutingRuleDefinition): string {
  return `rule ${quoted(rule.name)}: ${rule.conditions.map(describeCondition).join(' and ')} → ${describeActions(rule.actions)}`;
}
