// A dataset's photos, thousands of them: cursor pages of GET /v1/datasets/{id}/images are
// loaded as the reader scrolls down to them, and only the rows on screen (and a couple
// either side) are rendered, at a fixed row height, with empty space standing in for the
// rest (grid-window.ts). The page scrolls as a whole; the grid measures where it is in it.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { unwrap, type ApiClient, type Image } from '../api.js';
import { columnsFor, gridWindow, type GridWindow } from '../grid-window.js';
import { useSession } from '../session.js';
import { ErrorNotice } from './ErrorNotice.js';
import { ImageCard } from './ImageCard.js';

/** The API's largest page. */
const PAGE = 100;
/** One row: a card (thumbnail, caption, buttons; a longer history scrolls inside it) and the gap under it. */
const ROW_HEIGHT = 440;
const GAP = 12;
/** The narrowest column (the grid fills the width with as many as fit). */
const MIN_COLUMN = 200;
const OVERSCAN_ROWS = 2;

/** What was fetched with which cursor: a refresh fetches a chunk again with the same one. */
interface Chunk {
  cursor: string | undefined;
  start: number;
  length: number;
}

interface Pages {
  images: Image[];
  chunks: Chunk[];
  /** The next page's cursor; null once the last page is in; undefined before the first. */
  next: string | null | undefined;
}

const EMPTY: Pages = { images: [], chunks: [], next: undefined };

/**
 * The dataset's images, newest first, as far down as asked for (`want`), and `refresh`
 * of a range (captions changed, photos added or deleted). One request at a time, in order.
 */
function useImagePages(api: ApiClient, datasetId: string) {
  const pages = useRef<Pages>(EMPTY);
  const [, setVersion] = useState(0);
  const [error, setError] = useState<unknown>(undefined);
  const queue = useRef<Promise<void>>(Promise.resolve());
  const wanted = useRef(0);
  const loading = useRef(false);
  const live = useRef(true);
  useEffect(() => () => void (live.current = false), []);

  const fetchPage = (cursor: string | undefined) =>
    unwrap(api.GET('/v1/datasets/{id}/images', { params: { path: { id: datasetId }, query: { limit: PAGE, ...(cursor === undefined ? {} : { cursor }) } } }));

  const publish = (next: Pages) => {
    pages.current = next;
    if (live.current) setVersion((version) => version + 1);
  };

  /** Runs tasks one after another: a refresh never interleaves with a load. */
  const serially = (task: () => Promise<void>) => {
    queue.current = queue.current.then(task).then(
      () => {
        if (live.current) setError(undefined);
      },
      (caught: unknown) => {
        if (live.current) setError(caught);
      },
    );
  };

  const loadMore = () => {
    if (loading.current) return;
    loading.current = true;
    serially(async () => {
      try {
        while (live.current && pages.current.next !== null && pages.current.images.length < wanted.current) {
          const { images, chunks, next } = pages.current;
          const cursor = next ?? undefined;
          const page = await fetchPage(cursor);
          publish({
            images: [...images, ...page.data],
            chunks: [...chunks, { cursor, start: images.length, length: page.data.length }],
            next: page.next_cursor,
          });
        }
      } finally {
        loading.current = false;
      }
    });
  };

  /** Loads pages until the first `count` images are in. */
  const want = (count: number) => {
    wanted.current = count;
    if (pages.current.next !== null && pages.current.images.length < count) loadMore();
  };

  /**
   * Fetches the chunks over [start, stop) again with their own cursors. Where a chunk comes
   * back different in length or followed by another cursor (photos added or deleted above),
   * what came after it is dropped and loads again as it is scrolled to.
   */
  const refresh = (start: number, stop: number) => {
    serially(async () => {
      let index = pages.current.chunks.findIndex((chunk) => chunk.start + chunk.length > start);
      if (index === -1) index = pages.current.chunks.length - 1; // past the end: the last page may have grown
      if (index === -1) {
        publish(EMPTY); // nothing loaded yet (an empty dataset): start over
        return;
      }
      for (let chunk = pages.current.chunks[index]; chunk !== undefined && chunk.start < Math.max(stop, start + 1); chunk = pages.current.chunks[++index]) {
        const page = await fetchPage(chunk.cursor);
        const { images, chunks, next } = pages.current;
        const followedBy = chunks[index + 1]?.cursor ?? next;
        if (page.data.length === chunk.length && page.next_cursor === followedBy) {
          publish({ ...pages.current, images: [...images.slice(0, chunk.start), ...page.data, ...images.slice(chunk.start + chunk.length)] });
          continue;
        }
        publish({
          images: [...images.slice(0, chunk.start), ...page.data],
          chunks: [...chunks.slice(0, index), { ...chunk, length: page.data.length }],
          next: page.next_cursor,
        });
        break;
      }
    });
    // After the refresh: load on to what is wanted, if the refresh dropped some of it.
    serially(async () => want(wanted.current));
  };

  return { pages: pages.current, error, want, refresh };
}

export interface ImageGridProps {
  datasetId: string;
  /** The dataset's image_count: the grid's height before every page is in. */
  count: number;
  /** Changed by the page when the photos may have changed (an upload, an import, a caption job): the rows on screen are fetched again. */
  refreshKey: number;
  onChanged: () => void;
}

export function ImageGrid({ datasetId, count, refreshKey, onChanged }: ImageGridProps) {
  const { api } = useSession();
  const { pages, error, want, refresh } = useImagePages(api, datasetId);
  // Once the last page is in, the list knows the count better than the resource fetched before it.
  const total = pages.next === null ? pages.images.length : Math.max(count, pages.images.length);

  const wrapper = useRef<HTMLDivElement>(null);
  /** Where the grid is on screen, updated on scroll and resize; a render follows only when the rows to show change. */
  const view = useRef({ width: 0, offset: 0, viewport: 0 });
  const totalRef = useRef(total);
  totalRef.current = total;
  const shown = useRef('');
  const [, setTick] = useState(0);

  const windowOf = (): GridWindow & { columns: number } => {
    const columns = columnsFor(view.current.width, MIN_COLUMN, GAP);
    return { columns, ...gridWindow({ rowHeight: ROW_HEIGHT, columns, count: totalRef.current }, view.current.offset, view.current.viewport, OVERSCAN_ROWS) };
  };
  const keyOf = (w: GridWindow & { columns: number }) => `${w.columns}:${w.first}:${w.end}`;

  useLayoutEffect(() => {
    const element = wrapper.current;
    if (element === null) return;
    let frame = 0;
    const measure = () => {
      frame = 0;
      const rect = element.getBoundingClientRect();
      view.current = { width: rect.width, offset: -rect.top, viewport: window.innerHeight };
      if (keyOf(windowOf()) !== shown.current) setTick((tick) => tick + 1);
    };
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(measure);
    };
    measure();
    window.addEventListener('scroll', schedule, { passive: true });
    window.addEventListener('resize', schedule);
    // The grid's width, and what above it grows (the upload list) and moves it down.
    const observer = new ResizeObserver(schedule);
    observer.observe(element);
    if (element.parentElement !== null) observer.observe(element.parentElement);
    return () => {
      cancelAnimationFrame(frame);
      window.removeEventListener('scroll', schedule);
      window.removeEventListener('resize', schedule);
      observer.disconnect();
    };
  }, []);

  const grid = windowOf();
  shown.current = keyOf(grid);
  const { start, stop } = grid;

  useEffect(() => want(stop), [stop]);
  const firstRefresh = useRef(refreshKey);
  useEffect(() => {
    if (refreshKey !== firstRefresh.current) refresh(start, stop);
  }, [refreshKey]);

  const cells = [];
  for (let index = start; index < stop; index++) {
    const image = pages.images[index];
    cells.push(
      image === undefined ? (
        <li key={`loading-${index}`} class="image-card placeholder" aria-busy="true" aria-setsize={total} aria-posinset={index + 1}>
          <span class="muted">Loading…</span>
        </li>
      ) : (
        // keyed by id and caption: a caption written by a job replaces the draft shown
        <ImageCard key={`${image.id}:${image.caption ?? ''}`} image={image} onChanged={onChanged} position={{ index, count: total }} />
      ),
    );
  }
  const rendered = grid.end - grid.first;
  return (
    <div ref={wrapper} class="image-window" data-images={total} data-rendered={stop - start}>
      <ErrorNotice error={error} prefix="Could not load the photos" />
      <div class="grid-spacer" aria-hidden="true" style={{ height: `${grid.before}px` }} />
      <ul
        class="image-grid windowed"
        aria-labelledby="images-heading"
        style={{
          gridTemplateColumns: `repeat(${grid.columns}, minmax(0, 1fr))`,
          gridAutoRows: `${ROW_HEIGHT - GAP}px`,
          gap: `${GAP}px`,
          marginBottom: rendered > 0 ? `${GAP}px` : '0',
        }}
      >
        {cells}
      </ul>
      <div class="grid-spacer" aria-hidden="true" style={{ height: `${grid.after}px` }} />
    </div>
  );
}
