import type { TargetStats } from '../contract/stats.js';
import { electWriter, endpointOfAuroraInstance } from './writerElection.js';

const up = (endpoint: string, role: 'writer' | 'reader' = 'writer'): TargetStats =>
  role === 'writer'
    ? { endpoint, state: 'AVAILABLE', role, maxConnections: 100 }
    : { endpoint, state: 'UNAVAILABLE', reason: 'READ_ONLY', role, maxConnections: 100 };
const down = (endpoint: string, reason = 'UNREACHABLE'): TargetStats => ({ endpoint, state: 'UNAVAILABLE', reason, role: 'unknown', maxConnections: 100 });

test.each<[string, TargetStats[], string | null, number, { writer: string | null; suspect: boolean; problem?: RegExp }]>([
  ['the one writer among readers', [up('a', 'reader'), up('b')], null, 0, { writer: 'b', suspect: false }],
  ['keeps the current writer', [up('a'), up('b', 'reader')], 'a', 0, { writer: 'a', suspect: false }],
  ['one failed check: still the writer, but suspect', [down('a'), up('b', 'reader')], 'a', 1, { writer: 'a', suspect: true }],
  ['two failed checks: lost, no writer yet', [down('a'), up('b', 'reader')], 'a', 2, { writer: null, suspect: false, problem: /NO_WRITER/ }],
  ['lost, and the promoted standby takes over', [down('a'), up('b')], 'a', 2, { writer: 'b', suspect: false }],
  ['a promoted standby wins even on the first failed check', [down('a'), up('b')], 'a', 1, { writer: 'b', suspect: false }],
  ['a writer now in recovery is lost at once', [up('a', 'reader'), up('b', 'reader')], 'a', 0, { writer: null, suspect: false, problem: /NO_WRITER/ }],
  ['two writers: neither', [up('a'), up('b')], 'a', 0, { writer: null, suspect: false, problem: /MULTIPLE_WRITERS: a, b/ }],
  ['two writers, none current: neither', [up('a'), up('b')], null, 0, { writer: null, suspect: false, problem: /MULTIPLE_WRITERS/ }],
  ['everything down', [down('a'), down('b', 'CONNECTION_FAILED')], null, 0, { writer: null, suspect: false, problem: /NO_WRITER/ }],
  ['auth failure is not a transient blip... but one check is still only a suspicion', [down('a', 'AUTH_FAILURE')], 'a', 1, { writer: 'a', suspect: true }],
])('%s', (_name, targets, current, failures, expected) => {
  const r = electWriter({ targets, current, currentFailures: failures });
  expect(r.writer).toBe(expected.writer);
  expect(r.suspect).toBe(expected.suspect);
  if (expected.problem) expect(r.problem).toMatch(expected.problem);
  else expect(r.problem).toBeUndefined();
});

test("Aurora's topology settles two writers; without it, neither is used", () => {
  expect(electWriter({ targets: [up('a'), up('b')], current: 'a', currentFailures: 0, topologyWriter: 'b' }).writer).toBe('b');
  expect(electWriter({ targets: [up('a'), up('b')], current: 'a', currentFailures: 0, topologyWriter: 'c' }).writer).toBeNull();
  expect(electWriter({ targets: [up('a'), up('b')], current: 'a', currentFailures: 0, topologyWriter: null }).writer).toBeNull();
  // The topology never makes a reader the writer.
  expect(electWriter({ targets: [up('a', 'reader')], current: null, currentFailures: 0, topologyWriter: 'a' }).writer).toBeNull();
});

test('Aurora server_id maps to its instance endpoint', () => {
  const endpoints = [
    { key: '10.0.0.1:5432', name: 'db-1.abc123.eu-west-1.rds.amazonaws.com' },
    { key: '10.0.0.2:5432', name: 'db-12.abc123.eu-west-1.rds.amazonaws.com' },
    { key: '10.0.0.3:5432', name: 'mycluster.cluster-abc123.eu-west-1.rds.amazonaws.com' },
  ];
  expect(endpointOfAuroraInstance('db-1', endpoints)).toBe('10.0.0.1:5432');
  expect(endpointOfAuroraInstance('DB-12', endpoints)).toBe('10.0.0.2:5432');
  expect(endpointOfAuroraInstance('db-3', endpoints)).toBeNull();
});
