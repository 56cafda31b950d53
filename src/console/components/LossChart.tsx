// The live loss chart of a run: uPlot, made once and fed new points with setData (a long
// run sends thousands; remaking the chart for each would flicker and churn), as wide as
// its container. Colours come from the page's CSS variables, so it reads in light and dark.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { formatNumber } from '../format.js';

/** Loss by step, aligned: one entry per reported step, in step order. */
export interface LossSeries {
  steps: number[];
  loss: Array<number | null>;
  /** The trainer's mean of the last 50 steps. */
  avg: Array<number | null>;
}

const HEIGHT = 240;
const STEP_TICKS = [1, 2, 5].flatMap((base) => [1, 10, 100, 1000, 10_000, 100_000].map((scale) => base * scale)).sort((a, b) => a - b);
const DARK = '(prefers-color-scheme: dark)';

function cssVariable(element: Element, name: string, fallback: string): string {
  return getComputedStyle(element).getPropertyValue(name).trim() || fallback;
}

function dataOf(series: LossSeries): uPlot.AlignedData {
  return [series.steps, series.loss, series.avg];
}

function makePlot(container: HTMLElement, series: LossSeries): uPlot {
  const text = cssVariable(container, '--muted', '#7a8491');
  const grid = cssVariable(container, '--border', '#8884');
  const axis = (label: string): uPlot.Axis => ({
    label,
    stroke: text,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1 },
  });
  const value = (_plot: uPlot, raw: number | null) => (raw === null || raw === undefined ? '—' : formatNumber(raw));
  return new uPlot(
    {
      width: Math.max(container.clientWidth, 200),
      height: HEIGHT,
      scales: { x: { time: false } },
      series: [
        { label: 'step', value: (_plot, raw) => (raw === null || raw === undefined ? '—' : String(raw)) },
        { label: 'loss', stroke: text, width: 1, value, spanGaps: true },
        { label: 'loss (avg of 50)', stroke: cssVariable(container, '--accent', '#5a73e0'), width: 2, value, spanGaps: true },
      ],
      // Steps are whole numbers: ticks at 1, 2, 5, 10, ... never at 12.5.
      axes: [{ ...axis('step'), incrs: STEP_TICKS }, axis('loss')],
    },
    dataOf(series),
    container,
  );
}

export function LossChart({ series }: { series: LossSeries }) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(series);
  latest.current = series;

  // Made on mount (and again when the colour scheme flips, for its colours); gone on unmount.
  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    plot.current = makePlot(element, latest.current);
    let width = element.clientWidth;
    const observer = new ResizeObserver(([entry]) => {
      const next = Math.floor(entry?.contentRect.width ?? 0);
      if (next > 0 && next !== width) {
        width = next;
        plot.current?.setSize({ width, height: HEIGHT });
      }
    });
    observer.observe(element);
    const scheme = matchMedia(DARK);
    const recolour = () => {
      plot.current?.destroy();
      plot.current = makePlot(element, latest.current);
    };
    scheme.addEventListener('change', recolour);
    return () => {
      scheme.removeEventListener('change', recolour);
      observer.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(dataOf(series));
  }, [series]);

  const points = series.steps.length;
  const last = points - 1;
  const summary =
    points === 0
      ? 'Loss chart: no training steps reported yet'
      : `Loss chart: ${points} ${points === 1 ? 'point' : 'points'} up to step ${series.steps[last]}; ` +
        `latest loss ${formatNumber(series.loss[last])}, average of the last 50 steps ${formatNumber(series.avg[last])}`;
  return (
    <figure class="chart-figure" data-points={points} aria-label={summary}>
      {/* the canvas says nothing to a screen reader: the figure's label does */}
      <div class="chart" ref={container} aria-hidden="true" />
      <figcaption>Loss by step ({points} {points === 1 ? 'point' : 'points'})</figcaption>
    </figure>
  );
}
