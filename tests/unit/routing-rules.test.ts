import { describe, expect, it } from 'vitest';
import {
  conditionMatches,
  describeRule,
  firstMatchingRule,
  MAX_MATCHED_TEXT,
  PRIORITIES,
  raisePriority,
  routingActionsSchema,
  routingConditionSchema,
  routingRuleSchema,
  type RoutingCondition,
  type RoutingFacts,
  type RoutingRule,
} from '../../src/domain/routing-rules.js';

const facts = (overrides: Partial<RoutingFacts> = {}): RoutingFacts => ({
  sender: 'ann@shop.example.com',
  recipients: ['support@acme.example', 'billing@acme.example'],
  subject: 'Refund for order #1234',
  body: 'Hello, my parcel arrived broken. Please send a refund.',
  contactAttributes: { plan: 'Enterprise', seats: 25, vip: true, churned: false, country: null, note: '' },
  insideBusinessHours: true,
  classification: 'ordinary',
  ...overrides,
});

const TEAM_ID = '7d3c4a52-2f0e-4c1b-9a44-5b7b0f6f1c11';
const AGENT_ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

describe('conditionMatches', () => {
  const cases: Array<[string, RoutingCondition, Partial<RoutingFacts>, boolean]> = [
    // sender
    ['sender is (exact)', { field: 'sender', operator: 'is', value: 'ann@shop.example.com' }, {}, true],
    ['sender is ignores case', { field: 'sender', operator: 'is', value: 'ANN@Shop.Example.com' }, {}, true],
    ['sender is another address', { field: 'sender', operator: 'is', value: 'bob@shop.example.com' }, {}, false],
    ['sender is_not another address', { field: 'sender', operator: 'is_not', value: 'bob@shop.example.com' }, {}, true],
    ['sender is_not the address', { field: 'sender', operator: 'is_not', value: 'Ann@shop.example.com' }, {}, false],
    ['sender contains', { field: 'sender', operator: 'contains', value: 'SHOP' }, {}, true],
    ['sender does not contain', { field: 'sender', operator: 'contains', value: 'acme' }, {}, false],
    ['sender matches', { field: 'sender', operator: 'matches', value: '^ann@.*\\.com$' }, {}, true],
    ['sender matches ignores case', { field: 'sender', operator: 'matches', value: '^ANN@' }, {}, true],
    ['sender does not match', { field: 'sender', operator: 'matches', value: '^bob@' }, {}, false],
    // sender_domain
    ['sender_domain is', { field: 'sender_domain', operator: 'is', value: 'shop.example.com' }, {}, true],
    ['sender_domain is ignores case', { field: 'sender_domain', operator: 'is', value: 'SHOP.Example.COM' }, {}, true],
    ['sender_domain is accepts a leading @', { field: 'sender_domain', operator: 'is', value: '@shop.example.com' }, {}, true],
    ['sender_domain is is exact, not subdomains', { field: 'sender_domain', operator: 'is', value: 'example.com' }, {}, false],
    ['sender_domain is_not', { field: 'sender_domain', operator: 'is_not', value: 'example.com' }, {}, true],
    ['sender_domain is_not the domain', { field: 'sender_domain', operator: 'is_not', value: 'shop.example.com' }, {}, false],
    [
      'sender_domain matches subdomains',
      { field: 'sender_domain', operator: 'matches', value: '(^|\\.)example\\.com$' },
      {},
      true,
    ],
    ['sender_domain matches only the domain', { field: 'sender_domain', operator: 'matches', value: '^ann' }, {}, false],
    // recipient: any of To + Cc
    ['recipient is the first', { field: 'recipient', operator: 'is', value: 'support@acme.example' }, {}, true],
    ['recipient is the second', { field: 'recipient', operator: 'is', value: 'BILLING@acme.example' }, {}, true],
    ['recipient is none of them', { field: 'recipient', operator: 'is', value: 'sales@acme.example' }, {}, false],
    ['recipient contains', { field: 'recipient', operator: 'contains', value: 'billing' }, {}, true],
    ['recipient matches', { field: 'recipient', operator: 'matches', value: '^(sales|billing)@' }, {}, true],
    ['recipient with no recipients', { field: 'recipient', operator: 'contains', value: '@' }, { recipients: [] }, false],
    // subject
    ['subject is ignores case', { field: 'subject', operator: 'is', value: 'REFUND FOR ORDER #1234' }, {}, true],
    ['subject is ignores surrounding space', { field: 'subject', operator: 'is', value: ' Refund for order #1234 ' }, {}, true],
    ['subject is needs the whole subject', { field: 'subject', operator: 'is', value: 'Refund' }, {}, false],
    ['subject contains ignores case', { field: 'subject', operator: 'contains', value: 'REFUND' }, {}, true],
    ['subject contains is a substring', { field: 'subject', operator: 'contains', value: 'der #12' }, {}, true],
    ['subject not_contains', { field: 'subject', operator: 'not_contains', value: 'invoice' }, {}, true],
    ['subject not_contains what it contains', { field: 'subject', operator: 'not_contains', value: 'ORDER' }, {}, false],
    ['subject matches', { field: 'subject', operator: 'matches', value: 'order #\\d{4}\\b' }, {}, true],
    ['subject does not match', { field: 'subject', operator: 'matches', value: '^order' }, {}, false],
    [
      'subject matches unicode case-insensitively',
      { field: 'subject', operator: 'matches', value: 'ÄRGER' },
      { subject: 'ärger' },
      true,
    ],
    [
      'subject contains unicode case-insensitively',
      { field: 'subject', operator: 'contains', value: 'ÉTÉ' },
      { subject: 'été' },
      true,
    ],
    // body
    ['body contains', { field: 'body', operator: 'contains', value: 'arrived BROKEN' }, {}, true],
    ['body not_contains', { field: 'body', operator: 'not_contains', value: 'broken' }, {}, false],
    ['body is', { field: 'body', operator: 'is', value: 'hello' }, { body: 'Hello\n' }, true],
    ['body matches across words', { field: 'body', operator: 'matches', value: '\\bre(fund|turn)\\b' }, {}, true],
    [
      'body is matched only in its first 20,000 characters',
      { field: 'body', operator: 'contains', value: 'needle' },
      { body: `${'x'.repeat(MAX_MATCHED_TEXT)}needle` },
      false,
    ],
    [
      'body within the first 20,000 characters',
      { field: 'body', operator: 'contains', value: 'needle' },
      { body: `${'x'.repeat(MAX_MATCHED_TEXT - 6)}needle` },
      true,
    ],
    [
      'body not_contains beyond the first 20,000 characters',
      { field: 'body', operator: 'not_contains', value: 'needle' },
      { body: `${'x'.repeat(MAX_MATCHED_TEXT)}needle` },
      true,
    ],
    // contact_attribute
    [
      'attribute is ignores case',
      { field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'enterprise' },
      {},
      true,
    ],
    ['attribute is another value', { field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'free' }, {}, false],
    [
      'attribute name ignores case',
      { field: 'contact_attribute', attribute: 'Plan', operator: 'is', value: 'enterprise' },
      {},
      true,
    ],
    ['attribute is_not', { field: 'contact_attribute', attribute: 'plan', operator: 'is_not', value: 'free' }, {}, true],
    ['attribute contains', { field: 'contact_attribute', attribute: 'plan', operator: 'contains', value: 'PRISE' }, {}, true],
    [
      'attribute matches',
      { field: 'contact_attribute', attribute: 'plan', operator: 'matches', value: '^(pro|enterprise)$' },
      {},
      true,
    ],
    ['attribute number as string', { field: 'contact_attribute', attribute: 'seats', operator: 'is', value: '25' }, {}, true],
    [
      'attribute number matches',
      { field: 'contact_attribute', attribute: 'seats', operator: 'matches', value: '^\\d{2,}$' },
      {},
      true,
    ],
    ['attribute true as string', { field: 'contact_attribute', attribute: 'vip', operator: 'is', value: 'TRUE' }, {}, true],
    ['attribute false as string', { field: 'contact_attribute', attribute: 'churned', operator: 'is', value: 'false' }, {}, true],
    [
      'attribute false is not true',
      { field: 'contact_attribute', attribute: 'churned', operator: 'is', value: 'true' },
      {},
      false,
    ],
    ['attribute exists', { field: 'contact_attribute', attribute: 'plan', operator: 'exists' }, {}, true],
    ['attribute false exists', { field: 'contact_attribute', attribute: 'churned', operator: 'exists' }, {}, true],
    ['attribute missing: exists', { field: 'contact_attribute', attribute: 'region', operator: 'exists' }, {}, false],
    ['attribute missing: not_exists', { field: 'contact_attribute', attribute: 'region', operator: 'not_exists' }, {}, true],
    ['attribute present: not_exists', { field: 'contact_attribute', attribute: 'plan', operator: 'not_exists' }, {}, false],
    ['attribute missing: is', { field: 'contact_attribute', attribute: 'region', operator: 'is', value: 'eu' }, {}, false],
    ['attribute missing: is_not', { field: 'contact_attribute', attribute: 'region', operator: 'is_not', value: 'eu' }, {}, true],
    [
      'attribute missing: contains',
      { field: 'contact_attribute', attribute: 'region', operator: 'contains', value: 'e' },
      {},
      false,
    ],
    [
      'attribute missing: matches',
      { field: 'contact_attribute', attribute: 'region', operator: 'matches', value: '.*' },
      {},
      false,
    ],
    ['attribute null counts as missing', { field: 'contact_attribute', attribute: 'country', operator: 'not_exists' }, {}, true],
    [
      'attribute null is not "null"',
      { field: 'contact_attribute', attribute: 'country', operator: 'is', value: 'null' },
      {},
      false,
    ],
    ['attribute empty counts as missing', { field: 'contact_attribute', attribute: 'note', operator: 'exists' }, {}, false],
    [
      'attribute from the prototype is missing',
      { field: 'contact_attribute', attribute: 'constructor', operator: 'exists' },
      {},
      false,
    ],
    // business hours
    ['inside business hours, inside', { field: 'business_hours', value: 'inside' }, { insideBusinessHours: true }, true],
    ['inside business hours, outside', { field: 'business_hours', value: 'inside' }, { insideBusinessHours: false }, false],
    ['outside business hours, outside', { field: 'business_hours', value: 'outside' }, { insideBusinessHours: false }, true],
    ['outside business hours, inside', { field: 'business_hours', value: 'outside' }, { insideBusinessHours: true }, false],
    // classification
    [
      'classification is',
      { field: 'classification', operator: 'is', value: 'auto_reply' },
      { classification: 'auto_reply' },
      true,
    ],
    [
      'classification is other',
      { field: 'classification', operator: 'is', value: 'bounce' },
      { classification: 'auto_reply' },
      false,
    ],
    ['classification is_not', { field: 'classification', operator: 'is_not', value: 'bounce' }, {}, true],
    ['classification is_not same', { field: 'classification', operator: 'is_not', value: 'ordinary' }, {}, false],
  ];

  it.each(cases)('%s', (_name, condition, overrides, expected) => {
    // Every case is also a valid rule condition.
    expect(routingConditionSchema.safeParse(condition).success).toBe(true);
    expect(conditionMatches(condition, facts(overrides))).toBe(expected);
  });

  it('treats a stored regex that does not compile as no match instead of throwing', () => {
    expect(conditionMatches({ field: 'subject', operator: 'matches', value: '(' }, facts())).toBe(false);
  });
});

describe('firstMatchingRule', () => {
  const rule = (id: string, conditions: RoutingCondition[], actions: RoutingRule['actions'] = { priority: 'high' }) => ({
    id,
    name: id,
    conditions,
    actions,
  });
  const vip = rule('vip', [{ field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'enterprise' }]);
  const refunds = rule('refunds', [{ field: 'subject', operator: 'contains', value: 'refund' }]);
  const refundsAfterHours = rule('refunds after hours', [
    { field: 'subject', operator: 'contains', value: 'refund' },
    { field: 'business_hours', value: 'outside' },
  ]);
  const bounces = rule('bounces', [{ field: 'classification', operator: 'is', value: 'bounce' }]);

  it('picks the first of several matching rules, in the given order', () => {
    expect(firstMatchingRule([vip, refunds], facts())?.id).toBe('vip');
    expect(firstMatchingRule([refunds, vip], facts())?.id).toBe('refunds');
  });

  it('needs every condition of a rule to match', () => {
    expect(firstMatchingRule([refundsAfterHours, refunds], facts({ insideBusinessHours: true }))?.id).toBe('refunds');
    expect(firstMatchingRule([refundsAfterHours, refunds], facts({ insideBusinessHours: false }))?.id).toBe(
      'refunds after hours',
    );
  });

  it('skips rules that do not match', () => {
    expect(firstMatchingRule([bounces, refunds], facts())?.id).toBe('refunds');
  });

  it('returns the rule object itself', () => {
    expect(firstMatchingRule([bounces, refunds], facts())).toBe(refunds);
  });

  it('returns null when no rule matches', () => {
    expect(firstMatchingRule([bounces, refundsAfterHours], facts())).toBeNull();
  });

  it('returns null for an empty rule list', () => {
    expect(firstMatchingRule([], facts())).toBeNull();
  });
});

describe('routingConditionSchema', () => {
  const messages = (input: unknown) => {
    const result = routingConditionSchema.safeParse(input);
    expect(result.success).toBe(false);
    return result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
  };

  it('rejects an unknown field by name', () => {
    expect(messages({ field: 'priority', operator: 'is', value: 'x' })).toMatch(/unknown condition field "priority"/);
  });

  it('rejects an operator the field does not have', () => {
    expect(messages({ field: 'recipient', operator: 'not_contains', value: 'x' })).toMatch(/^operator: .*expected one of/);
    expect(messages({ field: 'sender_domain', operator: 'contains', value: 'x' })).toMatch(/^operator:/);
  });

  it('rejects a regex that does not compile, with the engine’s error', () => {
    const message = messages({ field: 'subject', operator: 'matches', value: '(unclosed' });
    expect(message).toMatch(/^value: Invalid regular expression: .*missing closing \)/);
    expect(messages({ field: 'body', operator: 'matches', value: '\\p{NoSuchProperty}' })).toMatch(/invalid character class/);
  });

  it('takes RE2 syntax: look-around and back-references, which need backtracking, are refused', () => {
    expect(messages({ field: 'body', operator: 'matches', value: '(?<=a)b' })).toMatch(/^value: Invalid regular expression/);
    expect(messages({ field: 'body', operator: 'matches', value: '(a)\\1' })).toMatch(/^value: Invalid regular expression/);
  });

  it('refuses a pattern that compiles to a program too large to match quickly', () => {
    expect(messages({ field: 'body', operator: 'matches', value: '(a|aa){1000}' })).toMatch(
      /^value: regular expression is too complex: it compiles to \d+ instructions, at most 1000/,
    );
    expect(routingConditionSchema.safeParse({ field: 'body', operator: 'matches', value: '(refund|chargeback)s?' }).success).toBe(
      true,
    );
  });

  it('refuses a rule whose patterns are too complex together', () => {
    const pattern = { field: 'body', operator: 'matches', value: '.{400}' } as const;
    const rule = { name: 'r', conditions: [pattern, pattern, pattern], actions: { priority: 'high' } };
    const result = routingRuleSchema.safeParse(rule);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)).toEqual([
      expect.stringMatching(
        /^conditions: the rule's regular expressions are too complex together: \d+ instructions, at most 1000$/,
      ),
    ]);
    expect(routingRuleSchema.safeParse({ ...rule, conditions: [pattern, pattern] }).success).toBe(true);
  });

  it('matches catastrophic-backtracking patterns in linear time (RE2)', () => {
    const condition = { field: 'body', operator: 'matches', value: '^(a+)+$' } as const;
    expect(routingConditionSchema.safeParse(condition).success).toBe(true);
    expect(conditionMatches(condition, facts({ body: `${'a'.repeat(19_990)}!` }))).toBe(false);
    expect(conditionMatches(condition, facts({ body: 'a'.repeat(20_000) }))).toBe(true);
  });

  it('rejects a regex longer than 200 characters', () => {
    expect(routingConditionSchema.safeParse({ field: 'body', operator: 'matches', value: 'a'.repeat(200) }).success).toBe(true);
    expect(messages({ field: 'body', operator: 'matches', value: 'a'.repeat(201) })).toMatch(
      /^value: regular expression must be at most 200 characters/,
    );
  });

  it('does not limit plain text values to the regex length', () => {
    expect(routingConditionSchema.safeParse({ field: 'body', operator: 'contains', value: 'a'.repeat(201) }).success).toBe(true);
  });

  it('rejects a missing value', () => {
    expect(messages({ field: 'subject', operator: 'contains' })).toBe('value: value is required');
    expect(messages({ field: 'contact_attribute', attribute: 'plan', operator: 'is' })).toBe(
      'value: value is required for operator "is"',
    );
    expect(messages({ field: 'business_hours' })).toMatch(/^value: value must be "inside" or "outside"/);
  });

  it('accepts exists and not_exists without a value', () => {
    expect(routingConditionSchema.parse({ field: 'contact_attribute', attribute: ' plan ', operator: 'exists' })).toEqual({
      field: 'contact_attribute',
      attribute: 'plan',
      operator: 'exists',
    });
  });

  it('rejects an empty substring, which would match everything', () => {
    expect(messages({ field: 'subject', operator: 'contains', value: '' })).toMatch(/must not be empty/);
  });

  it('rejects an unknown classification', () => {
    expect(messages({ field: 'classification', operator: 'is', value: 'spam' })).toMatch(/^value:/);
  });
});

describe('routingActionsSchema', () => {
  it('rejects actions that do nothing', () => {
    for (const actions of [{}, { labels: [] }]) {
      const result = routingActionsSchema.safeParse(actions);
      expect(result.success).toBe(false);
      expect(result.error!.issues[0]!.message).toMatch(/actions must do something/);
    }
  });

  it('normalizes labels: trimmed and lower-cased', () => {
    expect(routingActionsSchema.parse({ labels: ['  VIP ', 'Billing'] })).toEqual({ labels: ['vip', 'billing'] });
  });

  it('rejects empty, overlong and too many labels', () => {
    expect(routingActionsSchema.safeParse({ labels: ['   '] }).success).toBe(false);
    expect(routingActionsSchema.safeParse({ labels: ['x'.repeat(51)] }).success).toBe(false);
    expect(routingActionsSchema.safeParse({ labels: ['x'.repeat(50)] }).success).toBe(true);
    expect(routingActionsSchema.safeParse({ labels: Array.from({ length: 21 }, (_, i) => `l${i}`) }).success).toBe(false);
  });

  it('accepts every kind of assignment', () => {
    for (const assignTo of [
      { kind: 'agent', agentId: AGENT_ID },
      { kind: 'team', teamId: TEAM_ID },
      { kind: 'ai_agent', aiAgentId: AGENT_ID },
      { kind: 'humans' },
    ]) {
      expect(routingActionsSchema.parse({ assignTo })).toEqual({ assignTo });
    }
  });

  it('rejects a bad assignment', () => {
    expect(routingActionsSchema.safeParse({ assignTo: { kind: 'team', teamId: 'sales' } }).success).toBe(false);
    const unknown = routingActionsSchema.safeParse({ assignTo: { kind: 'bot' } });
    expect(unknown.error!.issues[0]!.message).toMatch(/assignTo.kind must be one of/);
  });

  it('rejects an unknown priority', () => {
    expect(routingActionsSchema.safeParse({ priority: 'critical' }).success).toBe(false);
  });
});

describe('routingRuleSchema', () => {
  const valid = {
    name: ' VIP customers ',
    conditions: [{ field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'enterprise' }],
    actions: { assignTo: { kind: 'team', teamId: TEAM_ID }, priority: 'high' },
  };

  it('accepts a valid rule and trims its name', () => {
    expect(routingRuleSchema.parse(valid).name).toBe('VIP customers');
  });

  it('rejects a rule without conditions', () => {
    const result = routingRuleSchema.safeParse({ ...valid, conditions: [] });
    expect(result.error!.issues.map((i) => i.message)).toEqual(['a rule needs at least one condition']);
  });

  it('rejects more than 20 conditions', () => {
    const result = routingRuleSchema.safeParse({ ...valid, conditions: Array(21).fill(valid.conditions[0]) });
    expect(result.error!.issues.map((i) => i.message)).toEqual(['a rule has at most 20 conditions']);
  });

  it('rejects a rule with empty actions', () => {
    const result = routingRuleSchema.safeParse({ ...valid, actions: {} });
    expect(result.error!.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['actions', 'actions must do something: set assignTo, priority or labels'],
    ]);
  });

  it('rejects an empty or overlong name', () => {
    expect(routingRuleSchema.safeParse({ ...valid, name: '  ' }).success).toBe(false);
    expect(routingRuleSchema.safeParse({ ...valid, name: 'n'.repeat(121) }).success).toBe(false);
  });

  it('points at the bad condition', () => {
    const result = routingRuleSchema.safeParse({
      ...valid,
      conditions: [...valid.conditions, { field: 'subject', operator: 'matches', value: '[' }],
    });
    expect(result.error!.issues[0]!.path).toEqual(['conditions', 1, 'value']);
  });
});

describe('describeRule', () => {
  it('describes conditions and actions in one line', () => {
    expect(
      describeRule({
        name: 'VIP customers',
        conditions: [{ field: 'contact_attribute', attribute: 'plan', operator: 'is', value: 'enterprise' }],
        actions: { assignTo: { kind: 'team', teamId: TEAM_ID } },
      }),
    ).toBe('rule "VIP customers": contact plan is "enterprise" → assign to team');
  });

  it('joins several conditions and actions', () => {
    expect(
      describeRule({
        name: 'Night refunds',
        conditions: [
          { field: 'subject', operator: 'not_contains', value: 'invoice' },
          { field: 'sender_domain', operator: 'matches', value: '\\.de$' },
          { field: 'business_hours', value: 'outside' },
          { field: 'classification', operator: 'is_not', value: 'auto_reply' },
          { field: 'contact_attribute', attribute: 'vip', operator: 'exists' },
        ],
        actions: { assignTo: { kind: 'ai_agent', aiAgentId: AGENT_ID }, priority: 'urgent', labels: ['refund', 'night'] },
      }),
    ).toBe(
      'rule "Night refunds": subject does not contain "invoice" and sender domain matches /\\.de$/ and outside business hours' +
        ' and mail is not auto_reply and contact vip is set → assign to AI agent, priority urgent, label refund, night',
    );
  });

  it('stays one short line for long or multi-line values', () => {
    const line = describeRule({
      name: 'Long',
      conditions: [{ field: 'body', operator: 'contains', value: `first line\n${'x'.repeat(500)}` }],
      actions: { labels: ['long'] },
    });
    expect(line).not.toContain('\n');
    expect(line.length).toBeLessThan(150);
  });
});

describe('raisePriority', () => {
  it('raises one step and keeps urgent', () => {
    expect(PRIORITIES.map(raisePriority)).toEqual(['normal', 'high', 'urgent', 'urgent']);
  });
});
