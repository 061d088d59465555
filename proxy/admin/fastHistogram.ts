// A Prometheus histogram without labels whose observe() is a few comparisons and two additions:
// the data path observes one per transaction, and prom-client's Histogram checks and hashes
// labels on every observation. It registers itself in a prom-client Registry, which renders it
// like any other histogram.
import type { Metric, MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

export class FastHistogram {
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    this.counts = new Float64Array(bounds.length);
    registry.registerMetric(this.asMetric());
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  /** What Prometheus would read now: cumulative bucket counts, sum and count. */
  snapshot(): { buckets: Array<[number, number]>; sum: number; count: number } {
    let acc = 0;
    return { buckets: this.bounds.map((le, i) => [le, (acc += this.counts[i]!)]), sum: this.sum, count: this.count };
  }

  private asMetric(): Metric<string> {
    const get = async (): Promise<MetricObjectWithValues<MetricValue<string>>> => {
      const s = this.snapshot();
      const values = [
        ...s.buckets.map(([le, v]) => ({ labels: { le }, value: v, metricName: `${this.name}_bucket` })),
        { labels: { le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` },
        { labels: {}, value: s.sum, metricName: `${this.name}_sum` },
        { labels: {}, value: s.count, metricName: `${this.name}_count` },
      ];
      // The shape prom-client's own Histogram.get() returns, which its Registry renders.
      return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values } as unknown as MetricObjectWithValues<MetricValue<string>>;
    };
    return {
      name: this.name,
      help: this.help,
      type: 'histogram',
      aggregator: 'sum',
      get,
      reset: () => {
        this.counts.fill(0);
        this.sum = 0;
        this.count = 0;
      },
    } as unknown as Metric<string>;
  }
}
