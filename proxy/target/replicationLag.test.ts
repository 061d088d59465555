import { WriterHistory, parseLsn } from './replicationLag.js';

test('WAL positions read as byte counts', () => {
  expect(parseLsn('0/0')).toBe(0);
  expect(parseLsn('0/16B3748')).toBe(0x16b3748);
  expect(parseLsn('1/0')).toBe(2 ** 32);
  expect(parseLsn('16/B374D848')).toBe(0x16 * 2 ** 32 + 0xb374d848);
  expect(parseLsn(null)).toBeNull();
  expect(parseLsn('nonsense')).toBeNull();
});

test('a caught-up standby has no lag, even when the writer has been idle for long', () => {
  const h = new WriterHistory(60_000);
  h.observe(1_000, 100);
  h.observe(50_000, 100);
  expect(h.lag(50_000, 100)).toEqual({ ms: 0, bytes: 0 });
  expect(h.lag(50_000, 150)).toEqual({ ms: 0, bytes: 0 });
});

test('a standby is as late as the last time the writer was where the standby has replayed to', () => {
  const h = new WriterHistory(60_000);
  h.observe(1_000, 100);
  h.observe(2_000, 100); // idle
  h.observe(3_000, 200); // writing
  h.observe(4_000, 300);
  // Replayed to 100: the writer was last there at 2 s.
  expect(h.lag(4_000, 100)).toEqual({ ms: 2_000, bytes: 200 });
  expect(h.lag(4_000, 250)).toEqual({ ms: 1_000, bytes: 50 });
  // Paused replay while the writer goes on: the lag grows with time.
  h.observe(9_000, 900);
  expect(h.lag(9_000, 100)).toEqual({ ms: 7_000, bytes: 800 });
});

test('history is bounded; a standby behind all of it is at least that late', () => {
  const h = new WriterHistory(5_000);
  for (let t = 0; t <= 20_000; t += 1_000) h.observe(t, t);
  expect(h.lag(20_000, 0)!.ms).toBeGreaterThanOrEqual(5_000);
});

test('a new writer (its position went back) starts a new history', () => {
  const h = new WriterHistory(60_000);
  h.observe(1_000, 5_000);
  h.observe(2_000, 100);
  expect(h.lag(2_000, 100)).toEqual({ ms: 0, bytes: 0 });
  expect(h.lag(2_000, 50)).toEqual({ ms: 60_000, bytes: 50 });
});
