// src/console/grid-window.ts: which rows of the dataset page's photo grid are rendered for a
// scroll offset (issue 26: thousands of photos, only the rows on screen in the page).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { columnsFor, gridWindow, rowCount } from '../../src/console/grid-window.js';

const ROW = 400;

test('columns: as many of the minimum width as fit with their gaps, at least one', () => {
  assert.equal(columnsFor(1000, 200, 12), 4, '4 × 200 + 3 × 12 = 836 fits, 5 × 200 + 4 × 12 = 1048 does not');
  assert.equal(columnsFor(1048, 200, 12), 5);
  assert.equal(columnsFor(1047, 200, 12), 4);
  assert.equal(columnsFor(150, 200, 12), 1, 'narrower than one column: still one');
  assert.equal(columnsFor(0, 200, 12), 1, 'not measured yet');
  assert.equal(rowCount(0, 4), 0);
  assert.equal(rowCount(9, 4), 3);
});

test('at the top: the rows on screen and the overscan below; the rest is space', () => {
  // 10 000 photos in 5 columns: 2000 rows; a 900 px viewport shows rows 0..2 (3 rows, the third in part).
  const window = gridWindow({ rowHeight: ROW, columns: 5, count: 10_000 }, 0, 900, 2);
  assert.deepEqual(window, { first: 0, end: 5, start: 0, stop: 25, before: 0, after: 1995 * ROW });
});

test('scrolled down: the rows around the offset, the space above and below adding up to the whole grid', () => {
  const geometry = { rowHeight: ROW, columns: 5, count: 10_000 };
  const window = gridWindow(geometry, 1000 * ROW + 150, 900, 2);
  // Rows 1000 (its lower part) to 1002 are on screen.
  assert.equal(window.first, 998);
  assert.equal(window.end, 1005);
  assert.deepEqual([window.start, window.stop], [4990, 5025]);
  assert.equal(window.before + (window.end - window.first) * ROW + window.after, rowCount(10_000, 5) * ROW);
});

test('at the end: the last row is partial, nothing past it; a grid scrolled by renders nothing', () => {
  // 61 photos in 4 columns: 16 rows, the last with one photo; rows 14 and 15 on screen.
  const window = gridWindow({ rowHeight: ROW, columns: 4, count: 61 }, 14 * ROW + 100, 900, 2);
  assert.deepEqual([window.first, window.end, window.start, window.stop, window.after], [12, 16, 48, 61, 0]);
  const past = gridWindow({ rowHeight: ROW, columns: 4, count: 61 }, 100 * ROW, 900, 2);
  assert.equal(past.stop - past.start, 0);
  assert.equal(past.before + past.after, 16 * ROW);
});

test('a grid below the fold renders its first rows only; a grid that fits renders all of it', () => {
  assert.deepEqual(gridWindow({ rowHeight: ROW, columns: 4, count: 1000 }, -5000, 900, 2), {
    first: 0, end: 2, start: 0, stop: 8, before: 0, after: 248 * ROW,
  });
  const small = gridWindow({ rowHeight: ROW, columns: 4, count: 3 }, -300, 900, 2);
  assert.deepEqual([small.start, small.stop, small.before, small.after], [0, 3, 0, 0]);
  assert.deepEqual(gridWindow({ rowHeight: ROW, columns: 4, count: 0 }, 0, 900).stop, 0);
});
