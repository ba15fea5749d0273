import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { ANY_JSON, finiteNumbers, toGrammarSchema } from '../../src/providers/llama-cpp/json-schema.ts';
import { llamaRuntime } from '../../src/providers/llama-cpp/llama-runtime.ts';

describe('toGrammarSchema', () => {
  test('ANY_JSON accepts every JSON value', () => {
    assert.deepEqual(ANY_JSON, {
      oneOf: [
        { type: ['string', 'number', 'boolean', 'null'] },
        { type: 'object', additionalProperties: true },
        { type: 'array' },
      ],
    });
  });

  test('an empty schema, true, or a non-object becomes ANY_JSON', () => {
    for (const schema of [{}, true, false, null, undefined, 'string', 42, []])
      assert.deepEqual(toGrammarSchema(schema), ANY_JSON, `for ${JSON.stringify(schema)}`);
  });

  test('a schema with only unsupported keywords becomes ANY_JSON', () => {
    assert.deepEqual(toGrammarSchema({ not: { type: 'string' } }), ANY_JSON);
    assert.deepEqual(toGrammarSchema({ allOf: [{ type: 'string' }, { minLength: 1 }] }), ANY_JSON);
  });

  test('scalar types pass through', () => {
    assert.deepEqual(toGrammarSchema({ type: 'integer' }), { type: 'integer' });
    assert.deepEqual(toGrammarSchema({ type: 'boolean', description: 'flag' }), {
      type: 'boolean',
      description: 'flag',
    });
  });

  test('anyOf becomes oneOf', () => {
    assert.deepEqual(toGrammarSchema({ anyOf: [{ type: 'string' }, { type: 'integer', minimum: 3 }] }), {
      oneOf: [{ type: 'string' }, { type: 'integer' }],
    });
  });

  test('alternatives beside other keywords keep them: each alternative is the schema with its own additions', () => {
    // An object that must have one property or the other: its structure stays, in each alternative with its
    // `required` (it was any JSON at all).
    const properties = { a: { type: 'string' }, b: { type: 'integer' } };
    assert.deepEqual(
      toGrammarSchema({ type: 'object', properties, anyOf: [{ required: ['a'] }, { required: ['b'] }] }),
      {
        oneOf: [
          { type: 'object', properties, required: ['a'] },
          { type: 'object', properties, required: ['b'] },
        ],
      },
    );
    // Alternatives with properties of their own keep the others, which stay required.
    const tagged = {
      type: 'object',
      properties: { kind: { type: 'string' }, common: { type: 'string' } },
      required: ['kind', 'common'],
      oneOf: [{ properties: { kind: { const: 'a' }, a: { type: 'integer' } }, required: ['a'] }],
    };
    assert.deepEqual(toGrammarSchema(tagged), {
      oneOf: [
        {
          type: 'object',
          properties: { kind: { const: 'a' }, common: { type: 'string' }, a: { type: 'integer' } },
          required: ['kind', 'common', 'a'],
        },
      ],
    });
  });

  test('oneOf is kept, converting each alternative', () => {
    assert.deepEqual(toGrammarSchema({ oneOf: [{ type: 'number' }, {}] }), { oneOf: [{ type: 'number' }, ANY_JSON] });
  });

  test('a single-entry allOf is unwrapped', () => {
    assert.deepEqual(toGrammarSchema({ allOf: [{ type: 'string', maxLength: 4 }] }), { type: 'string', maxLength: 4 });
  });

  test('nullable adds null to the type list', () => {
    assert.deepEqual(toGrammarSchema({ type: 'integer', nullable: true }), { type: ['integer', 'null'] });
    // A string keeps its own conversion, so the alternatives become a oneOf.
    assert.deepEqual(toGrammarSchema({ type: 'string', nullable: true, maxLength: 10 }), {
      oneOf: [{ type: 'string', maxLength: 10 }, { type: 'null' }],
    });
    // Already nullable: unchanged.
    assert.deepEqual(toGrammarSchema({ type: ['number', 'null'], nullable: true }), { type: ['number', 'null'] });
  });

  test('a type list of non-string scalars stays a type list; others become oneOf', () => {
    assert.deepEqual(toGrammarSchema({ type: ['integer', 'boolean'] }), { type: ['integer', 'boolean'] });
    assert.deepEqual(toGrammarSchema({ type: ['string', 'array'], items: { type: 'integer' } }), {
      oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'integer' } }],
    });
  });

  test('definitions become $defs and their refs point there', () => {
    const schema = {
      type: 'object',
      properties: {
        home: { $ref: '#/definitions/address' },
        work: { $ref: '#/$defs/address', description: 'office' },
      },
      required: ['home'],
      definitions: {
        address: {
          type: 'object',
          properties: { street: { type: 'string', pattern: '^[A-Z]' }, zip: { type: 'string' } },
          required: ['street', 'zip'],
        },
      },
    };
    assert.deepEqual(toGrammarSchema(schema), {
      type: 'object',
      properties: {
        home: { $ref: '#/$defs/address' },
        work: { $ref: '#/$defs/address', description: 'office' },
      },
      required: ['home'],
      $defs: {
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, zip: { type: 'string' } },
          required: ['street', 'zip'],
        },
      },
    });
  });

  test('$defs and definitions are merged', () => {
    const result = toGrammarSchema({
      type: 'array',
      items: { $ref: '#/definitions/a' },
      definitions: { a: { type: 'integer' } },
      $defs: { b: { type: 'boolean' } },
    }) as Record<string, unknown>;
    assert.deepEqual(result, {
      type: 'array',
      items: { $ref: '#/$defs/a' },
      $defs: { a: { type: 'integer' }, b: { type: 'boolean' } },
    });
  });

  test('a scalar top level with $defs is wrapped in oneOf to carry them', () => {
    assert.deepEqual(toGrammarSchema({ type: 'string', $defs: { x: { type: 'integer' } } }), {
      oneOf: [{ type: 'string' }],
      $defs: { x: { type: 'integer' } },
    });
  });

  test('a ref that is not into $defs/definitions becomes ANY_JSON', () => {
    assert.deepEqual(toGrammarSchema({ type: 'array', items: { $ref: '#' } }), { type: 'array', items: ANY_JSON });
    assert.deepEqual(toGrammarSchema({ $ref: 'https://example.com/schema.json' }), ANY_JSON);
  });

  test('unsupported keywords are dropped', () => {
    assert.deepEqual(
      toGrammarSchema({ type: 'string', pattern: '^[a-z]+$', minLength: 2, maxLength: 8, contentEncoding: 'base64' }),
      { type: 'string', minLength: 2, maxLength: 8 },
    );
    assert.deepEqual(toGrammarSchema({ type: 'number', minimum: 0, maximum: 10, multipleOf: 2 }), { type: 'number' });
  });

  test('an object without properties allows any properties', () => {
    assert.deepEqual(toGrammarSchema({ type: 'object' }), { type: 'object', additionalProperties: true });
    // Without a type, additionalProperties alone makes it an object.
    assert.deepEqual(toGrammarSchema({ additionalProperties: { type: 'integer' } }), {
      type: 'object',
      additionalProperties: { type: 'integer' },
    });
  });

  test('an object without properties and additionalProperties false stays closed', () => {
    assert.deepEqual(toGrammarSchema({ type: 'object', additionalProperties: false }), { type: 'object' });
  });

  test('an object with properties keeps only the required keys that exist', () => {
    assert.deepEqual(
      toGrammarSchema({
        type: 'object',
        properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } },
        required: ['name', 'ghost', 7],
        minProperties: 1,
        maxProperties: 2,
      }),
      {
        type: 'object',
        properties: { name: { type: 'string' }, age: { type: 'integer' } },
        required: ['name'],
        minProperties: 1,
        maxProperties: 2,
      },
    );
  });

  test('an object with properties infers its type from them', () => {
    assert.deepEqual(toGrammarSchema({ properties: { a: { type: 'boolean' } } }), {
      type: 'object',
      properties: { a: { type: 'boolean' } },
    });
  });

  test('additionalProperties false is respected, true is kept', () => {
    const closed = toGrammarSchema({
      type: 'object',
      properties: { a: { type: 'string' } },
      required: ['a'],
      additionalProperties: false,
    });
    assert.deepEqual(closed, { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] });
    assert.ok(!('additionalProperties' in closed));

    assert.deepEqual(
      toGrammarSchema({ type: 'object', properties: { a: { type: 'string' } }, additionalProperties: true }),
      { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: true },
    );
  });

  test('a string format date is kept, other formats are dropped', () => {
    for (const format of ['date', 'date-time', 'time'])
      assert.deepEqual(toGrammarSchema({ type: 'string', format }), { type: 'string', format });
    assert.deepEqual(toGrammarSchema({ type: 'string', format: 'email' }), { type: 'string' });
    assert.deepEqual(toGrammarSchema({ type: 'string', format: 'uri', maxLength: 100 }), {
      type: 'string',
      maxLength: 100,
    });
  });

  test('enum and const are kept', () => {
    assert.deepEqual(toGrammarSchema({ type: 'string', enum: ['red', 'green', null] }), {
      enum: ['red', 'green', null],
    });
    assert.deepEqual(toGrammarSchema({ enum: [1, { not: 'scalar' }, true] }), { enum: [1, true] });
    assert.deepEqual(toGrammarSchema({ const: 'fixed', description: 'always' }), {
      const: 'fixed',
      description: 'always',
    });
    // An enum without any scalar value falls back to the type.
    assert.deepEqual(toGrammarSchema({ type: 'integer', enum: [[1], { a: 1 }] }), { type: 'integer' });
  });

  test('array items, prefixItems, minItems and maxItems are kept', () => {
    assert.deepEqual(
      toGrammarSchema({
        type: 'array',
        items: { type: 'string', pattern: 'x' },
        minItems: 1,
        maxItems: 3,
        uniqueItems: true,
      }),
      { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 },
    );
    assert.deepEqual(toGrammarSchema({ prefixItems: [{ type: 'integer' }, { const: 'x' }] }), {
      type: 'array',
      prefixItems: [{ type: 'integer' }, { const: 'x' }],
    });
    // Negative or fractional counts are not counts.
    assert.deepEqual(toGrammarSchema({ type: 'array', minItems: -1, maxItems: 2.5 }), { type: 'array' });
  });

  test('descriptions are kept on nested schemas', () => {
    assert.deepEqual(
      toGrammarSchema({
        type: 'object',
        description: 'a point',
        properties: { x: { type: 'number', description: 'abscissa' } },
      }),
      { type: 'object', description: 'a point', properties: { x: { type: 'number', description: 'abscissa' } } },
    );
  });

  test('does not mutate its input', () => {
    const schema = {
      type: 'object',
      properties: { a: { type: 'string', nullable: true } },
      definitions: { d: { type: 'integer' } },
    };
    const copy = structuredClone(schema);
    toGrammarSchema(schema);
    assert.deepEqual(schema, copy);
  });
});

describe('finiteNumbers', () => {
  test("node-llama-cpp's grammar, with an integer and a number: no exponent on the integer, two digits at most", async () => {
    const { llama } = await llamaRuntime(pino({ level: 'silent' }));
    const schema = { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'number' } } } as const;
    const { grammar } = await llama.createGrammarForJsonSchema(schema);
    const rule = (text: string, name: string) => text.split('\n').find((line) => line.startsWith(`${name} ::= `));
    assert.match(rule(grammar, 'integer-number-rule')!, /\[eE\]/, 'the exponent this fixes is there');
    const fixed = finiteNumbers(grammar);
    assert.equal(rule(fixed, 'integer-number-rule'), 'integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15})');
    assert.equal(
      rule(fixed, 'fractional-number-rule'),
      'fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? ("0" | [1-9] [0-9]?))?',
    );
    assert.equal(rule(fixed, 'root'), rule(grammar, 'root'));
  });
});
