// An <img> of bytes behind the API key: fetched with the Authorization header and shown
// through an object URL (the key never goes into a URL). Content the API serves is
// immutable per path (sha256 ETags), so each path is fetched once per tab.
import { useEffect, useState } from 'preact/hooks';
import { fetchBlob } from '../api.js';
import { useSession } from '../session.js';

/** Object URLs by API path; the oldest are revoked past this many. */
const MAX_CACHED = 400;
const cache = new Map<string, Promise<string>>();

function objectUrl(apiKey: string, path: string): Promise<string> {
  let url = cache.get(path);
  if (url === undefined) {
    url = fetchBlob(apiKey, path).then((blob) => URL.createObjectURL(blob));
    url.catch(() => cache.delete(path)); // a failure is retried next time
    cache.set(path, url);
    while (cache.size > MAX_CACHED) {
      const [oldest, value] = cache.entries().next().value as [string, Promise<string>];
      cache.delete(oldest);
      void value.then((stale) => URL.revokeObjectURL(stale), () => undefined);
    }
  }
  return url;
}

export interface AuthImageProps {
  /** API path of the bytes, e.g. /v1/images/img_.../content?variant=thumbnail */
  path: string;
  alt: string;
  width?: number;
  height?: number;
  class?: string;
}

export function AuthImage({ path, alt, width, height, class: className }: AuthImageProps) {
  const { apiKey } = useSession();
  const [src, setSrc] = useState<string | undefined>(undefined);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    setFailed(false);
    objectUrl(apiKey, path).then(
      (url) => live && setSrc(url),
      () => live && setFailed(true),
    );
    return () => {
      live = false;
    };
  }, [apiKey, path]);
  if (failed) return <span class={`image-missing ${className ?? ''}`} role="img" aria-label={`${alt} (could not be loaded)`}>!</span>;
  return <img src={src} alt={alt} width={width} height={height} class={className} loading="lazy" decoding="async" data-loaded={src === undefined ? 'false' : 'true'} />;
}
