import { describe, expect, it } from 'vitest';
import { isSingleMailbox } from '../../src/domain/addresses.js';

describe('isSingleMailbox', () => {
  it.each<[string, boolean]>([
    ['ann@example.com', true],
    ['ann.lee+support@mail.example.co.uk', true],
    ["o'brien@example.ie", true],
    ['jürgen@müller.example', true],
    ['x@xn--mller-kva.example', true],
    // What the MIME parser hands over as one address when a header lists several.
    ['v0@a.example,v1@b.example', false],
    ['v0@a.example;v1@b.example', false],
    ['a@b.example c@d.example', false],
    ['a@b@c.example', false],
    ['<a@b.example>', false],
    ['"x y"@example.com', false],
    ['ann@localhost', false],
    ['ann@10.0.0.1', false],
    ['ann@[10.0.0.1]', false],
    ['.ann@example.com', false],
    ['ann.@example.com', false],
    ['an..n@example.com', false],
    ['ann@-example.com', false],
    ['ann@example..com', false],
    ['@example.com', false],
    ['ann@', false],
    ['', false],
    [`${'a'.repeat(65)}@example.com`, false],
    [`a@${'b'.repeat(250)}.com`, false],
  ])('%j → %s', (address, expected) => {
    expect(isSingleMailbox(address)).toBe(expected);
  });

  it('answers at once for long hostile input', () => {
    expect(isSingleMailbox(`${'a.'.repeat(100_000)}@x`)).toBe(false);
    expect(isSingleMailbox(`a@${'a-'.repeat(100_000)}`)).toBe(false);
  });
});
