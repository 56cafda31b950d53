// An error a page caught, read out by screen readers as it appears.
import { errorMessage } from '../api.js';

export function ErrorNotice({ error, prefix }: { error: unknown; prefix?: string }) {
  if (error === undefined || error === null) return null;
  return (
    <p role="alert" class="error">
      {prefix === undefined ? '' : `${prefix}: `}
      {errorMessage(error)}
    </p>
  );
}
