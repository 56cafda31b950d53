// Sign-in: the API key is checked against the API before it is kept for this tab.
import { useState } from 'preact/hooks';
import { apiClient, ApiError, unwrap } from '../api.js';
import { ErrorNotice } from '../components/ErrorNotice.js';

export function SignInPage({ onSignedIn }: { onSignedIn: (apiKey: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    const apiKey = key.trim();
    if (apiKey === '') return setError(new Error('Enter an API key.'));
    setBusy(true);
    setError(undefined);
    try {
      await unwrap(apiClient(apiKey).GET('/v1/datasets', { params: { query: { limit: 1 } } }));
      onSignedIn(apiKey);
    } catch (caught) {
      setError(
        caught instanceof ApiError && caught.status === 401
          ? new Error(`This API key was not accepted: ${caught.message}`)
          : caught,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="sign-in">
      <h1>SDXL LoRA console</h1>
      <p>Train a LoRA from a few photos of a subject, then generate images with it.</p>
      <form onSubmit={submit} aria-describedby="sign-in-help">
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={key}
          onInput={(event) => setKey(event.currentTarget.value)}
          aria-invalid={error === undefined ? undefined : 'true'}
          required
        />
        <p id="sign-in-help" class="hint">
          The service prints a key on its first start; <code>npm run create-api-key</code> makes more. The key stays in this
          tab only and goes to the API in the Authorization header.
        </p>
        <ErrorNotice error={error} />
        <button type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>
  );
}
