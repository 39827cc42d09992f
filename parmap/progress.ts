/**
 * Counts finished items and reports them. Counting happens once per chunk, never per item. The
 * display for `progress: true` or a label comes with the progress display; a callback receives
 * every update.
 */
import type { ProgressInfo, ResolvedOptions } from './options.js';

export class ProgressTracker {
  private done = 0;
  private failed = 0;
  private readonly startedAt = performance.now();

  private constructor(
    private readonly report: (progress: ProgressInfo) => void,
    private readonly total: number | undefined,
  ) {}

  /** A tracker for the `progress` option, or `undefined` when nothing is to be reported. */
  static for(options: Pick<ResolvedOptions, 'progress' | 'total'>): ProgressTracker | undefined {
    if (typeof options.progress !== 'function') return undefined;
    return new ProgressTracker(options.progress, options.total);
  }

  /** Records `count` more finished items, `failures` of them failed. */
  add(count: number, failures = 0): void {
    this.done += count;
    this.failed += failures;
    this.report(this.snapshot());
  }

  private snapshot(): ProgressInfo {
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const total = this.total !== undefined && this.done > this.total ? this.done : this.total;
    const eta = total !== undefined && rate > 0 ? Math.max(0, (total - this.done) / rate) : undefined;
    return { done: this.done, total, failed: this.failed, rate, elapsed, eta };
  }
}
