import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { applyDefaults, validate, type JSONSchemaProps } from '../api/schema.js';
import { buildCrd, generatedFiles, GENERATE_COMMAND, renderChartCrdYaml, repoRoot } from './generate.js';

const crd = buildCrd();
const root = crd.spec.versions[0]!.schema.openAPIV3Schema;

interface Node {
  path: string;
  schema: JSONSchemaProps;
  /** A named property of an object (as opposed to array items or map values). */
  isProperty: boolean;
  underMetadata: boolean;
}

function walk(schema: JSONSchemaProps, path = '', isProperty = false, underMetadata = false): Node[] {
  const out: Node[] = [{ path: path || '(root)', schema, isProperty, underMetadata }];
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    out.push(...walk(v, `${path}.${k}`, true, underMetadata || (path === '' && k === 'metadata')));
  }
  if (schema.items) out.push(...walk(schema.items, `${path}[]`, false, underMetadata));
  if (schema.additionalProperties) out.push(...walk(schema.additionalProperties, `${path}{}`, false, underMetadata));
  return out;
}

const nodes = walk(root);

describe('generated files', () => {
  test.each(generatedFiles().map((f) => [f.path, f.content] as const))('%s is current', (path, expected) => {
    let actual = '';
    try {
      actual = readFileSync(join(repoRoot(), path), 'utf8');
    } catch {
      // reported below
    }
    if (actual !== expected) {
      throw new Error(`${path} is stale or missing: operator/api changed without regenerating. Run:\n  ${GENERATE_COMMAND}`);
    }
  });

  test('the chart copy is the same CRD, wrapped in crds.install and kept on uninstall', () => {
    const text = renderChartCrdYaml();
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('{{- if .Values.crds.install }}');
    expect(lines.at(-1)).toBe('{{- end }}');
    const body = lines.slice(1, -1).join('\n');
    expect(body).not.toContain('{{'); // nothing else Helm would try to render
    const doc = parse(body) as ReturnType<typeof buildCrd>;
    expect(doc.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(doc.spec).toEqual(crd.spec);
  });
});

describe('CRD', () => {
  test('names, scope, subresources and printer columns', () => {
    expect(crd.metadata.name).toBe('databaseproxies.dbproxy.io');
    expect(crd.spec.names).toMatchObject({ kind: 'DatabaseProxy', plural: 'databaseproxies', shortNames: ['dbp'] });
    expect(crd.spec.scope).toBe('Namespaced');
    const v = crd.spec.versions[0]!;
    expect(v).toMatchObject({ name: 'v1alpha1', served: true, storage: true });
    expect(v.subresources).toEqual({
      status: {},
      scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' },
    });
    expect(v.additionalPrinterColumns.map((c) => c.name)).toEqual(['Ready', 'Writer', 'Clients', 'Borrowed', 'Pinned', 'Readers', 'Age']);
  });

  test('printer columns and scale paths point at fields the schema declares', () => {
    const v = crd.spec.versions[0]!;
    const paths = [...v.additionalPrinterColumns.map((c) => c.jsonPath), ...Object.values(v.subresources.scale)];
    for (const p of paths) {
      if (p === '.metadata.creationTimestamp') continue;
      const fieldPath = p.replace(/\[\?\(.*?\)\]/g, '[]');
      const declared = nodes.some((n) => n.path === fieldPath);
      expect({ p, declared }).toEqual({ p, declared: true });
    }
  });
});

describe('structural schema rules', () => {
  test('every node has a type, or preserves unknown fields, or is int-or-string', () => {
    const bad = nodes.filter((n) => !n.schema.type && !n.schema['x-kubernetes-preserve-unknown-fields'] && !n.schema['x-kubernetes-int-or-string']);
    expect(bad.map((n) => n.path)).toEqual([]);
  });

  test('every field has a description', () => {
    // metadata itself may carry nothing but name/generateName restrictions (the API server refuses a description there).
    const bad = nodes.filter((n) => (n.isProperty || n.path === '(root)') && n.path !== '.metadata' && !n.schema.description?.trim());
    expect(bad.map((n) => n.path)).toEqual([]);
  });

  test('no $ref, oneOf, allOf or not; anyOf only in the int-or-string form', () => {
    const bad: string[] = [];
    for (const n of nodes) {
      const keys = Object.keys(n.schema);
      for (const k of ['$ref', 'oneOf', 'allOf', 'not', 'nullable']) if (keys.includes(k)) bad.push(`${n.path}: ${k}`);
      if (n.schema.anyOf) {
        const intOrString = n.schema['x-kubernetes-int-or-string'] && JSON.stringify(n.schema.anyOf) === JSON.stringify([{ type: 'integer' }, { type: 'string' }]);
        if (!intOrString || n.schema.type) bad.push(`${n.path}: anyOf`);
      }
      if (n.schema['x-kubernetes-int-or-string'] && n.schema.type) bad.push(`${n.path}: int-or-string with a type`);
    }
    expect(bad).toEqual([]);
  });

  test('objects use properties or additionalProperties, not both; required names declared properties', () => {
    const bad: string[] = [];
    for (const n of nodes) {
      if (n.schema.properties && n.schema.additionalProperties) bad.push(`${n.path}: properties and additionalProperties`);
      for (const r of n.schema.required ?? []) if (!n.schema.properties?.[r]) bad.push(`${n.path}: required ${r} is not a property`);
      if ((n.schema.properties || n.schema.additionalProperties) && n.schema.type !== 'object') bad.push(`${n.path}: properties on a non-object`);
      if (n.schema.items && n.schema.type !== 'array') bad.push(`${n.path}: items on a non-array`);
    }
    expect(bad).toEqual([]);
  });

  test('list-map keys are required or defaulted scalar fields of the items', () => {
    const bad: string[] = [];
    for (const n of nodes.filter((x) => x.schema['x-kubernetes-list-type'] === 'map')) {
      const items = n.schema.items!;
      for (const k of n.schema['x-kubernetes-list-map-keys'] ?? []) {
        const field = items.properties?.[k];
        if (!field || !(items.required?.includes(k) || field.default !== undefined)) bad.push(`${n.path}: key ${k}`);
        if (field && !['string', 'integer', 'boolean'].includes(field.type ?? '')) bad.push(`${n.path}: key ${k} is not a scalar`);
      }
      if (!n.schema['x-kubernetes-list-map-keys']?.length) bad.push(`${n.path}: no list-map keys`);
    }
    expect(bad).toEqual([]);
  });

  test('defaults validate against their own schema and nothing under metadata has one', () => {
    const bad: string[] = [];
    let defaults = 0;
    for (const n of nodes) {
      if (n.schema.default === undefined) continue;
      defaults++;
      if (n.underMetadata) bad.push(`${n.path}: default under metadata`);
      // The API server defaults inside a default before validating it, and so do we.
      bad.push(...validate(applyDefaults(n.schema.default, n.schema), n.schema, n.path));
    }
    expect(bad).toEqual([]);
    expect(defaults).toBeGreaterThan(10);
  });

  test('enum values have the type of their node; patterns compile as RE2-compatible regexes', () => {
    const bad: string[] = [];
    for (const n of nodes) {
      for (const e of n.schema.enum ?? []) if (typeof e !== (n.schema.type === 'integer' ? 'number' : n.schema.type)) bad.push(`${n.path}: enum ${String(e)}`);
      const p = n.schema.pattern;
      if (p !== undefined) {
        expect(() => new RegExp(p, 'u')).not.toThrow();
        // RE2 (the API server's engine) has no lookaround and no backreferences.
        if (/\(\?[=!<]|\\[1-9]/.test(p)) bad.push(`${n.path}: pattern not RE2: ${p}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test('CEL rules have messages; rules sit on objects whose strings and lists are bounded', () => {
    const bad: string[] = [];
    for (const n of nodes) {
      for (const r of n.schema['x-kubernetes-validations'] ?? []) {
        if (!r.rule.trim() || !r.message.trim()) bad.push(`${n.path}: empty rule or message`);
        if (n.schema.type !== 'object') bad.push(`${n.path}: rule on a ${n.schema.type}`);
        // Keep the CEL cost estimate small: every string and list a rule can see has a bound.
        for (const child of walk(n.schema, n.path)) {
          if (child.schema.type === 'string' && child.schema.maxLength === undefined && !child.schema.enum) bad.push(`${child.path}: unbounded string under a rule`);
          if (child.schema.type === 'array' && child.schema.maxItems === undefined) bad.push(`${child.path}: unbounded list under a rule`);
        }
      }
    }
    expect(bad).toEqual([]);
  });
});
