// Reads the event stream of `go test -json` (cmd/test2json) into one result per test.
// Each line is {Time, Action, Package, Test?, Elapsed?, Output?}; a test's last
// pass/fail/skip event is its result. A test that started and never reported one
// (its package binary was killed or panicked) is recorded as `unfinished`.

export type Outcome = 'pass' | 'fail' | 'skip' | 'unfinished';

export interface TestResult {
  pkg: string;
  /** Full name, subtests included: TestFoo/bar. */
  test: string;
  outcome: Outcome;
  elapsedS: number;
  /** The test's own output lines (t.Log, assertion messages, the skip reason), trimmed. */
  output: string[];
}

export interface GoTestEvent {
  Time?: string;
  Action: string;
  Package?: string;
  Test?: string;
  Elapsed?: number;
  Output?: string;
}

export class GoTestJson {
  readonly results = new Map<string, TestResult>();
  /** Package-level output (build errors, panics, "FAIL pkg"). */
  readonly packageOutput = new Map<string, string[]>();
  readonly packageOutcome = new Map<string, string>();
  private partial = '';

  static key(pkg: string, test: string): string {
    return `${pkg} ${test}`;
  }

  /** Feeds a chunk of stdout; lines may be split across chunks. */
  write(chunk: string): GoTestEvent[] {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    const events: GoTestEvent[] = [];
    for (const line of lines) {
      const ev = this.line(line);
      if (ev) events.push(ev);
    }
    return events;
  }

  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }

  private line(line: string): GoTestEvent | undefined {
    if (!line.startsWith('{')) return undefined;
    let ev: GoTestEvent;
    try {
      ev = JSON.parse(line) as GoTestEvent;
    } catch {
      return undefined;
    }
    const pkg = ev.Package ?? '';
    if (!ev.Test) {
      if (ev.Action === 'output' && ev.Output !== undefined) {
        const out = this.packageOutput.get(pkg) ?? [];
        if (out.length < 400) out.push(ev.Output.replace(/\n$/, ''));
        this.packageOutput.set(pkg, out);
      } else if (ev.Action === 'pass' || ev.Action === 'fail' || ev.Action === 'skip') {
        this.packageOutcome.set(pkg, ev.Action);
      }
      return ev;
    }
    const k = GoTestJson.key(pkg, ev.Test);
    let r = this.results.get(k);
    if (!r) {
      r = { pkg, test: ev.Test, outcome: 'unfinished', elapsedS: 0, output: [] };
      this.results.set(k, r);
    }
    switch (ev.Action) {
      case 'pass':
      case 'fail':
      case 'skip':
        r.outcome = ev.Action;
        r.elapsedS = ev.Elapsed ?? 0;
        break;
      case 'output': {
        const o = (ev.Output ?? '').replace(/\n$/, '');
        // Framing lines (=== RUN, --- FAIL, === PAUSE/CONT) say nothing the outcome does not.
        if (!/^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP))/.test(o) && r.output.length < 60) r.output.push(o.trim());
        break;
      }
    }
    return ev;
  }

  /** Top-level tests that started and have no result yet: the ones running when a package hung. */
  unfinishedTopLevel(pkg: string): string[] {
    const out = new Set<string>();
    for (const r of this.results.values()) {
      if (r.pkg === pkg && r.outcome === 'unfinished') out.add(r.test.split('/')[0]!);
    }
    return [...out];
  }

  /** Top-level tests of pkg that have a result. */
  finishedTopLevel(pkg: string): string[] {
    const out: string[] = [];
    for (const r of this.results.values()) {
      if (r.pkg === pkg && r.outcome !== 'unfinished' && !r.test.includes('/')) out.push(r.test);
    }
    return out;
  }
}

/** The test's skip reason: its own output with file:line prefixes removed. */
export function skipReason(r: TestResult): string {
  const lines = r.output.filter((l) => l.length > 0).map((l) => l.replace(/^[\w.]+_test\.go:\d+:\s*/, ''));
  return lines.join(' ').slice(0, 200) || '(no reason given)';
}

/** A one-line digest of why a test failed: the first assertion message or error. */
export function failureDigest(r: TestResult): string {
  const lines = r.output.map((l) => l.trim()).filter((l) => l.length > 0);
  const interesting = lines.filter((l) => /^(Error:|Error Trace:|Messages:)|\b(error|Error|panic|timeout|timed out|expected|Expected)\b/.test(l));
  const pick = lines.find((l) => l.startsWith('Error:')) ?? interesting.find((l) => !l.startsWith('Error Trace:')) ?? lines[0] ?? '';
  const i = lines.indexOf(pick);
  // testify prints "Error:" then the message on the following lines.
  const tail = pick.startsWith('Error:') ? lines.slice(i, i + 3).join(' ') : pick;
  return tail.replace(/\s+/g, ' ').slice(0, 240);
}
