// What the drivers' conformance runs (pgx's Go suite, asyncpg's Python suite) share: the
// known-differences files. (dbproxy itself is started by hack/dbproxyProcess.ts.)
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../repoRoot.js';

export interface Known {
  /** `package:Test/sub`; `*` matches any run of characters. */
  pattern: RegExp;
  text: string;
  klass: string;
  cause: string;
  /** When set, the failure matches only if the test's output contains this. */
  output?: string;
}

/**
 * A known-differences file of hack/conformance/, one line each:
 * `name  class  cause  [| text the failure output must contain]`, # comments.
 */
export function readKnown(file: string): Known[] {
  const f = join(repoRoot(), 'hack', 'conformance', file);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*/, '').trim())
    .filter(Boolean)
    .map((l) => {
      const [head, output] = l.split(/\s+\|\s+/, 2);
      const [text, klass, cause] = head!.split(/\s+/);
      const pattern = new RegExp(`^${text!.replace(/[.+?^${}()[\]\\]/g, '\\$&').replaceAll('*', '.*')}$`);
      return { pattern, text: text!, klass: klass ?? '', cause: cause ?? '', output: output?.trim() };
    });
}

/** The line of `known` that explains a failure of `name` with this output, if any. */
export function knownFor(known: Known[], name: string, output: readonly string[]): Known | undefined {
  return known.find((k) => k.pattern.test(name) && (k.output === undefined || output.some((l) => l.includes(k.output!))));
}
