// One generation in the gallery: its images (fetched with the key), what made them, a
// download per image, "Use these settings" to fill the form again, and cancel while it runs.
import { useState } from 'preact/hooks';
import type { operations } from '../../../openapi/client/index.js';
import { download, unwrap, type Generation } from '../api.js';
import { formatNumber, formatTime } from '../format.js';
import { useSession } from '../session.js';
import { AuthImage } from './AuthImage.js';
import { ErrorNotice } from './ErrorNotice.js';
import { Progress } from './Progress.js';

export type Sampler = NonNullable<operations['createGeneration']['requestBody']['content']['application/json']['sampler']>;

/** Every sampler the API takes, by its readable name (a Record: a new one fails the build until named here). */
export const SAMPLER_NAMES: Record<Sampler, string> = {
  euler: 'Euler',
  euler_a: 'Euler ancestral',
  dpmpp_2m_karras: 'DPM++ 2M Karras',
};

/** Not finished yet: worth polling, and cancelable. */
export function isActive(status: Generation['status']): boolean {
  return status === 'queued' || status === 'starting' || status === 'running';
}

/** "denoising 3 / 30", or the status while there is no progress yet. */
export function progressText(generation: Generation): string {
  const { progress } = generation;
  return progress === null ? generation.status : `${progress.phase} ${progress.step} / ${progress.total_steps}`;
}

export interface GenerationCardProps {
  generation: Generation;
  /** Fill the form with this generation's model, params and LoRAs. */
  onUse: (generation: Generation) => void;
  /** The generation changed here (canceled): the new state. */
  onChanged: (generation: Generation) => void;
}

export function GenerationCard({ generation, onUse, onChanged }: GenerationCardProps) {
  const { api, apiKey } = useSession();
  const [error, setError] = useState<unknown>(undefined);
  const [canceling, setCanceling] = useState(false);
  const { params } = generation;

  const cancel = async () => {
    setCanceling(true);
    setError(undefined);
    try {
      onChanged(await unwrap(api.POST('/v1/generations/{id}/cancel', { params: { path: { id: generation.id } } })));
    } catch (caught) {
      setError(caught); // 409: it finished meanwhile; the next refresh shows how
    } finally {
      setCanceling(false);
    }
  };

  const save = async (index: number, path: string) => {
    setError(undefined);
    try {
      await download(apiKey, path, `${generation.id}-${index}.png`);
    } catch (caught) {
      setError(caught);
    }
  };

  return (
    <li>
      <figure>
        <p class="toolbar">
          <span class={`status status-${generation.status}`}>{generation.status}</span>
          <span class="muted">{formatTime(generation.created_at)}</span>
        </p>
        {(generation.output ?? []).map((image) => {
          const filename = `${generation.id}-${image.index}.png`;
          return (
            <div class="stack" key={image.index}>
              <AuthImage path={image.content_url} alt={`${params.prompt} (seed ${image.seed})`} width={image.width} height={image.height} />
              <div class="toolbar">
                <button type="button" class="small secondary" aria-label={`Download ${filename}`} onClick={() => void save(image.index, image.content_url)}>
                  Download
                </button>
              </div>
            </div>
          );
        })}
        {isActive(generation.status) ? (
          <Progress
            label={`Progress of ${generation.id}`}
            value={generation.progress?.percent}
            max={100}
            text={generation.cancel_requested ? 'canceling' : progressText(generation)}
          />
        ) : null}
        <figcaption>
          <strong>{params.prompt}</strong>
          {params.negative_prompt === '' ? null : <> · not: {params.negative_prompt}</>}
          <br />
          {generation.model} · {params.width}×{params.height} · {params.steps} steps · {SAMPLER_NAMES[params.sampler]} · guidance{' '}
          {formatNumber(params.guidance_scale)} · {params.num_images > 1 ? `seeds ${params.seed}–${params.seed + params.num_images - 1}` : `seed ${params.seed}`}
          {generation.loras.length === 0 ? null : (
            <>
              <br />
              LoRAs: {generation.loras.map((lora) => `${lora.name} × ${formatNumber(lora.scale, 3)}`).join(', ')}
            </>
          )}
        </figcaption>
        {generation.error === null ? null : <p class="error">{generation.error.message}</p>}
        <ErrorNotice error={error} />
        <div class="toolbar">
          <button type="button" class="small secondary" onClick={() => onUse(generation)}>Use these settings</button>
          {isActive(generation.status) ? (
            <button type="button" class="small danger" onClick={cancel} disabled={canceling || generation.cancel_requested}>
              {generation.cancel_requested ? 'Canceling…' : 'Cancel'}
            </button>
          ) : null}
        </div>
      </figure>
    </li>
  );
}
