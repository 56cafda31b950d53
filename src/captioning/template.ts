// The template captioner: the DreamBooth instance prompt "a photo of {trigger} {class}" for
// every image, with no model call. The default when no provider key is configured.
import type { CaptionImageInput, CaptionOutcome, Captioner, CaptionSubject, NormalizedCaptions } from './captioner.js';
import { CaptionError } from './captioner.js';
import { NO_USAGE } from './pricing.js';

export const TEMPLATE_MODEL = 'template';
/** Bump when the template text changes. */
export const TEMPLATE_PROMPT_VERSION = 'template-v1';

export function templateCaption(subject: CaptionSubject): string {
  return `a photo of ${subject.trigger} ${subject.classWord}`;
}

export class TemplateCaptioner implements Captioner {
  readonly provider = 'template' as const;
  readonly model = TEMPLATE_MODEL;
  readonly promptVersion = TEMPLATE_PROMPT_VERSION;

  async caption(_image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome> {
    if (signal.aborted) throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts: 0 });
    return {
      caption: templateCaption(subject),
      model: this.model,
      promptVersion: this.promptVersion,
      usage: { ...NO_USAGE },
      costUsd: 0,
    };
  }

  /** Identity: template captions are already uniform. */
  async normalize(captions: { imageId: string; caption: string }[], _subject: CaptionSubject, signal: AbortSignal): Promise<NormalizedCaptions> {
    if (signal.aborted) throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts: 0 });
    return { captions: captions.map(({ imageId, caption }) => ({ imageId, caption })), usage: { ...NO_USAGE }, costUsd: 0 };
  }
}
