// The live loss chart of a run: uPlot, made once and fed new points with setData (a long
// run sends thousands; remaking the chart for each would flicker and churn), as wide as
// its container. Colours come from the page's CSS variables, so it reads in light and dark.
// Beside the training loss, the validation loss at each validation, as points, named
// "held-out loss" when the run holds photos out for it (validation_split).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { formatNumber } from '../format.js';
import { alignedLoss, type LossSeries, type ValidationPoint } from '../loss-series.js';

const HEIGHT = 240;
const STEP_TICKS = [1, 2, 5].flatMap((base) => [1, 10, 100, 1000, 10_000, 100_000].map((scale) => base * scale)).sort((a, b) => a - b);
const DARK = '(prefers-color-scheme: dark)';

function cssVariable(element: Element, name: string, fallback: string): string {
  return getComputedStyle(element).getPropertyValue(name).trim() || fallback;
}

interface ChartData {
  series: LossSeries;
  validation: readonly ValidationPoint[];
}

function dataOf({ series, validation }: ChartData): uPlot.AlignedData {
  return alignedLoss(series, validation);
}

function makePlot(container: HTMLElement, data: ChartData, validationLabel: string): uPlot {
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
        {
          label: validationLabel,
          stroke: cssVariable(container, '--ok', '#2e8b57'),
          width: 1,
          dash: [4, 4],
          points: { show: true, size: 7 },
          value,
          spanGaps: true,
        },
      ],
      // Steps are whole numbers: ticks at 1, 2, 5, 10, ... never at 12.5.
      axes: [{ ...axis('step'), incrs: STEP_TICKS }, axis('loss')],
    },
    dataOf(data),
    container,
  );
}

export interface LossChartProps {
  series: LossSeries;
  /** The validation loss of each validation that measured one. */
  validation?: readonly ValidationPoint[];
  /** Its series' name: "validation loss", or "held-out loss" over photos held out from training. */
  validationLabel?: string;
}

const NO_POINTS: readonly ValidationPoint[] = [];

export function LossChart({ series, validation = NO_POINTS, validationLabel = 'validation loss' }: LossChartProps) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef<ChartData>({ series, validation });
  latest.current = { series, validation };

  // Made on mount (and again when the colour scheme flips, for its colours); gone on unmount.
  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    plot.current = makePlot(element, latest.current, validationLabel);
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
      plot.current = makePlot(element, latest.current, validationLabel);
    };
    scheme.addEventListener('change', recolour);
    return () => {
      scheme.removeEventListener('change', recolour);
      observer.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [validationLabel]);

  useEffect(() => {
    plot.current?.setData(dataOf({ series, validation }));
  }, [series, validation]);

  const points = series.steps.length;
  const last = points - 1;
  const summary =
    points === 0
      ? 'Loss chart: no training steps reported yet'
      : `Loss chart: ${points} ${points === 1 ? 'point' : 'points'} up to step ${series.steps[last]}; ` +
        `latest loss ${formatNumber(series.loss[last])}, average of the last 50 steps ${formatNumber(series.avg[last])}` +
        (validation.length === 0 ? '' : `; ${validationLabel} ${formatNumber(validation[validation.length - 1]!.loss)} at step ${validation[validation.length - 1]!.step}`);
  return (
    <figure class="chart-figure" data-points={points} data-validation-points={validation.length} aria-label={summary}>
      {/* the canvas says nothing to a screen reader: the figure's label does */}
      <div class="chart" ref={container} aria-hidden="true" />
      <figcaption>Loss by step ({points} {points === 1 ? 'point' : 'points'})</figcaption>
    </figure>
  );
}
