import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from './fastHistogram.js';

test('renders exactly as a prom-client Histogram with the same observations', async () => {
  const bounds = [0.001, 0.01, 0.1, 1];
  const ours = new Registry();
  const theirs = new Registry();
  const fast = new FastHistogram('x_seconds', 'help text', bounds, ours);
  const reference = new Histogram({ name: 'x_seconds', help: 'help text', buckets: bounds, registers: [theirs] });
  for (const v of [0.0005, 0.001, 0.002, 0.05, 0.5, 2, 10, 0]) {
    fast.observe(v);
    reference.observe(v);
  }
  expect(await ours.metrics()).toBe(await theirs.metrics());
});
