// A small schema builder: each field of the DatabaseProxy API is declared once, with its
// TypeScript type, description, default and validation. From that one declaration we get
//   - the TypeScript types (`InputOf` as a user writes it, `OutputOf` after defaulting),
//   - the OpenAPI v3 structural schema for the CRD (`.json`),
//   - defaulting (`applyDefaults`) and validation (`validate`) that follow the API server's rules,
//     so the operator and its tests see exactly what the API server stores.
// It emits only what a Kubernetes structural schema allows: `type` on every node (or
// x-kubernetes-preserve-unknown-fields / x-kubernetes-int-or-string), no $ref, and anyOf only in
// the int-or-string form the API server accepts.

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps this project emits. */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  default?: unknown;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  additionalProperties?: JSONSchemaProps;
  items?: JSONSchemaProps;
  anyOf?: JSONSchemaProps[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
}

/** One CEL rule (x-kubernetes-validations entry). */
export interface ValidationRule {
  rule: string;
  message: string;
  /** Field path the error is reported on, e.g. ".maxIdleConnectionsPercent". */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/** How a property is present: optional, required, or filled in by its schema default. */
export type Presence = 'optional' | 'required' | 'defaulted';

/**
 * A schema node. `I` is the type a user writes, `O` the type after defaulting, `P` how the node
 * is present as a property of its parent object. Immutable: every method returns a new node.
 */
export class Schema<I, O, P extends Presence = 'optional'> {
  declare readonly __in: I;
  declare readonly __out: O;
  declare readonly __presence: P;

  constructor(
    readonly json: JSONSchemaProps,
    readonly presence: P,
  ) {}

  /** The property must be set. */
  required(): Schema<I, O, 'required'> {
    return new Schema(this.json, 'required');
  }

  /** The API server fills in `value` when the property is absent (and then defaults inside it). */
  default(value: I): Schema<I, O, 'defaulted'> {
    return new Schema({ ...this.json, default: value }, 'defaulted');
  }

  /** Adds a CEL rule (x-kubernetes-validations) evaluated with `self` bound to this node. */
  rule(rule: string, message: string, extra: Omit<ValidationRule, 'rule' | 'message'> = {}): Schema<I, O, P> {
    const rules = [...(this.json['x-kubernetes-validations'] ?? []), { rule, message, ...extra }];
    return new Schema({ ...this.json, 'x-kubernetes-validations': rules }, this.presence);
  }

  /** Adds or overrides raw schema keywords (list types, formats, ...). */
  with(extra: JSONSchemaProps): Schema<I, O, P> {
    return new Schema({ ...this.json, ...extra }, this.presence);
  }
}

type AnySchema = Schema<any, any, Presence>;
export type Shape = Record<string, AnySchema>;

export type InputOf<S> = S extends Schema<infer I, unknown, Presence> ? I : never;
export type OutputOf<S> = S extends Schema<unknown, infer O, Presence> ? O : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type KeysWhere<S extends Shape, P extends Presence> = { [K in keyof S]: S[K]['presence'] extends P ? K : never }[keyof S];

type ObjectInput<S extends Shape> = Simplify<
  { [K in KeysWhere<S, 'required'>]: InputOf<S[K]> } & { [K in KeysWhere<S, 'optional' | 'defaulted'>]?: InputOf<S[K]> }
>;
type ObjectOutput<S extends Shape> = Simplify<
  { [K in KeysWhere<S, 'required' | 'defaulted'>]: OutputOf<S[K]> } & { [K in KeysWhere<S, 'optional'>]?: OutputOf<S[K]> }
>;

interface Common {
  /** Shown by `kubectl explain`; every field has one. */
  description: string;
}

interface StringOpts extends Common {
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  format?: string;
}

interface NumberOpts extends Common {
  minimum?: number;
  maximum?: number;
  format?: 'int32' | 'int64';
}

interface ArrayOpts extends Common {
  minItems?: number;
  maxItems?: number;
  listType?: 'atomic' | 'set' | 'map';
  listMapKeys?: string[];
}

function common(o: Common): JSONSchemaProps {
  return { description: o.description };
}

export const s = {
  string(o: StringOpts): Schema<string, string> {
    const { description, ...rest } = o;
    return new Schema({ type: 'string', description, ...rest }, 'optional');
  },

  enum<const T extends readonly string[]>(values: T, o: Common): Schema<T[number], T[number]> {
    return new Schema({ type: 'string', ...common(o), enum: [...values] }, 'optional');
  },

  integer(o: NumberOpts): Schema<number, number> {
    const { description, ...rest } = o;
    return new Schema({ type: 'integer', description, ...rest }, 'optional');
  },

  boolean(o: Common): Schema<boolean, boolean> {
    return new Schema({ type: 'boolean', ...common(o) }, 'optional');
  },

  object<S extends Shape>(shape: S, o: Common & { maxProperties?: number }): Schema<ObjectInput<S>, ObjectOutput<S>> {
    const properties: Record<string, JSONSchemaProps> = {};
    const required: string[] = [];
    for (const [k, v] of Object.entries(shape)) {
      properties[k] = v.json;
      if (v.presence === 'required') required.push(k);
    }
    const json: JSONSchemaProps = { type: 'object', ...common(o), properties };
    if (required.length > 0) json.required = required;
    if (o.maxProperties !== undefined) json.maxProperties = o.maxProperties;
    return new Schema(json, 'optional');
  },

  array<I, O>(items: Schema<I, O, Presence>, o: ArrayOpts): Schema<I[], O[]> {
    const json: JSONSchemaProps = { type: 'array', ...common(o), items: items.json };
    if (o.minItems !== undefined) json.minItems = o.minItems;
    if (o.maxItems !== undefined) json.maxItems = o.maxItems;
    if (o.listType) json['x-kubernetes-list-type'] = o.listType;
    if (o.listMapKeys) json['x-kubernetes-list-map-keys'] = o.listMapKeys;
    return new Schema(json, 'optional');
  },

  /** map[string]V (additionalProperties). */
  map<I, O>(values: Schema<I, O, Presence>, o: Common & { maxProperties?: number }): Schema<Record<string, I>, Record<string, O>> {
    const json: JSONSchemaProps = { type: 'object', ...common(o), additionalProperties: values.json };
    if (o.maxProperties !== undefined) json.maxProperties = o.maxProperties;
    return new Schema(json, 'optional');
  },

  /** An object kept as is (a Kubernetes type this API embeds without restating its schema). */
  preserved<T extends object = Record<string, unknown>>(o: Common): Schema<T, T> {
    return new Schema({ type: 'object', ...common(o), 'x-kubernetes-preserve-unknown-fields': true }, 'optional');
  },

  /** An integer or a string (e.g. a resource.Quantity), in the form the API server accepts. */
  intOrString(o: Common & { pattern?: string }): Schema<number | string, number | string> {
    const json: JSONSchemaProps = {
      ...common(o),
      anyOf: [{ type: 'integer' }, { type: 'string' }],
      'x-kubernetes-int-or-string': true,
    };
    if (o.pattern) json.pattern = o.pattern;
    return new Schema(json, 'optional');
  },
};

// ---------------------------------------------------------------------------------------------
// Defaulting and validation, following the API server's structural-schema semantics.

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Applies schema defaults like the API server does: an absent property with a default gets a copy
 * of it, and defaulting then continues inside the (possibly just defaulted) value. Returns a new
 * value; the input is not modified.
 */
export function applyDefaults<T>(value: T, schema: JSONSchemaProps): T {
  return defaultNode(value, schema) as T;
}

function defaultNode(value: unknown, schema: JSONSchemaProps): unknown {
  if (Array.isArray(value)) {
    return schema.items ? value.map((v) => defaultNode(v, schema.items!)) : value.slice();
  }
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = { ...value };
  if (schema.properties) {
    for (const [k, child] of Object.entries(schema.properties)) {
      if (out[k] === undefined && child.default !== undefined) out[k] = structuredClone(child.default);
      if (out[k] !== undefined) out[k] = defaultNode(out[k], child);
    }
  } else if (schema.additionalProperties) {
    for (const k of Object.keys(out)) out[k] = defaultNode(out[k], schema.additionalProperties);
  }
  return out;
}

/**
 * Validates a value against the OpenAPI part of a schema (types, enums, bounds, patterns,
 * required, unknown fields). CEL rules are not evaluated here: the API server does that.
 * Returns problems as "path: message"; empty when valid.
 */
export function validate(value: unknown, schema: JSONSchemaProps, path = ''): string[] {
  const problems: string[] = [];
  const at = path || '(root)';
  const fail = (msg: string): void => void problems.push(`${at}: ${msg}`);

  if (schema['x-kubernetes-int-or-string']) {
    if (typeof value === 'number') {
      if (!Number.isInteger(value)) fail('must be an integer or a string');
    } else if (typeof value === 'string') {
      if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) fail(`does not match ${schema.pattern}`);
    } else fail('must be an integer or a string');
    return problems;
  }

  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return [`${at}: must be a string`];
      if (schema.minLength !== undefined && value.length < schema.minLength) fail(`must be at least ${schema.minLength} characters`);
      if (schema.maxLength !== undefined && value.length > schema.maxLength) fail(`must be at most ${schema.maxLength} characters`);
      if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) fail(`does not match ${schema.pattern}`);
      if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) fail('must be an RFC 3339 date-time');
      break;
    case 'integer':
    case 'number':
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value))) return [`${at}: must be an ${schema.type}`];
      if (schema.minimum !== undefined && value < schema.minimum) fail(`must be >= ${schema.minimum}`);
      if (schema.maximum !== undefined && value > schema.maximum) fail(`must be <= ${schema.maximum}`);
      break;
    case 'boolean':
      if (typeof value !== 'boolean') return [`${at}: must be a boolean`];
      break;
    case 'array':
      if (!Array.isArray(value)) return [`${at}: must be an array`];
      if (schema.minItems !== undefined && value.length < schema.minItems) fail(`must have at least ${schema.minItems} items`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) fail(`must have at most ${schema.maxItems} items`);
      if (schema.items) value.forEach((v, i) => problems.push(...validate(v, schema.items!, `${path}[${i}]`)));
      if (schema['x-kubernetes-list-type'] === 'map' && schema['x-kubernetes-list-map-keys']) {
        const keys = schema['x-kubernetes-list-map-keys'];
        const seen = new Set<string>();
        for (const item of value) {
          const k = JSON.stringify(keys.map((key) => (isPlainObject(item) ? item[key] : undefined)));
          if (seen.has(k)) fail(`duplicate entry for key ${keys.join(',')}=${k}`);
          seen.add(k);
        }
      }
      break;
    case 'object': {
      if (!isPlainObject(value)) return [`${at}: must be an object`];
      if (schema.maxProperties !== undefined && Object.keys(value).length > schema.maxProperties) fail(`must have at most ${schema.maxProperties} properties`);
      for (const r of schema.required ?? []) if (value[r] === undefined) problems.push(`${path ? `${path}.` : ''}${r}: required`);
      if (schema.properties) {
        for (const [k, v] of Object.entries(value)) {
          const child = schema.properties[k];
          const childPath = path ? `${path}.${k}` : k;
          if (child) problems.push(...validate(v, child, childPath));
          else if (!schema['x-kubernetes-preserve-unknown-fields']) problems.push(`${childPath}: unknown field`);
        }
      } else if (schema.additionalProperties) {
        for (const [k, v] of Object.entries(value)) problems.push(...validate(v, schema.additionalProperties, `${path}[${JSON.stringify(k)}]`));
      }
      break;
    }
    default:
      if (!schema['x-kubernetes-preserve-unknown-fields']) fail(`schema has no type`);
  }
  if (schema.enum && !schema.enum.includes(value)) fail(`must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`);
  return problems;
}
