// Windowing of a long grid (a dataset's thousands of photos): rows of a fixed height, so
// which rows are on screen is arithmetic on the scroll offset, and only those (and a few
// either side) are rendered; the rest of the grid's height is empty space. Pure (no DOM),
// so test/console/grid-window.test.ts runs it under Node.

export interface GridGeometry {
  /** Height of one row, gap included, in CSS pixels. */
  rowHeight: number;
  columns: number;
  /** Items in the whole grid, loaded or not. */
  count: number;
}

/** The rows to render: [first, end), and the items in them: [start, stop). */
export interface GridWindow {
  first: number;
  end: number;
  start: number;
  stop: number;
  /** Empty space above the first rendered row and below the last, in pixels. */
  before: number;
  after: number;
}

/** Columns of at least `minWidth` that fit `width` with `gap` between them (the CSS grid's auto-fill rule); at least one. */
export function columnsFor(width: number, minWidth: number, gap: number): number {
  if (!(width > 0)) return 1;
  return Math.max(1, Math.floor((width + gap) / (minWidth + gap)));
}

export function rowCount(count: number, columns: number): number {
  return count <= 0 ? 0 : Math.ceil(count / Math.max(1, columns));
}

/**
 * The rows of the grid a viewport shows, with `overscan` rows either side.
 * `offset`: how far the viewport's top is below the grid's top (negative while the grid
 * starts lower on the screen); `viewport`: the viewport's height.
 */
export function gridWindow(geometry: GridGeometry, offset: number, viewport: number, overscan = 2): GridWindow {
  const { rowHeight, columns, count } = geometry;
  const rows = rowCount(count, columns);
  const clamp = (row: number) => Math.min(rows, Math.max(0, row));
  const bottom = offset + Math.max(0, viewport);
  const end = bottom <= 0 || rowHeight <= 0 ? clamp(overscan) : clamp(Math.ceil(bottom / rowHeight) + overscan);
  const first = Math.min(end, rowHeight <= 0 ? 0 : clamp(Math.floor(Math.max(0, offset) / rowHeight) - overscan));
  const stop = Math.min(count, end * columns);
  return {
    first,
    end,
    start: Math.min(stop, first * columns),
    stop,
    before: first * rowHeight,
    after: (rows - end) * rowHeight,
  };
}
